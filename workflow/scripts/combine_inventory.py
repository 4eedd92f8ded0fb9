from ipdpool.inventory import combine_inventories
from ipdpool.logutil import logged_to
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    table = combine_inventories(list(snakemake.input))
    write_table(table, snakemake.output[0])
    log.info("%d raw tables from %d studies", len(table), table["study"].nunique())
