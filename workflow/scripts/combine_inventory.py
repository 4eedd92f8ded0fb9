from ipdpool.inventory import combine_inventories
from ipdpool.logutil import logged_to

with logged_to(snakemake.log[0]) as log:
    table = combine_inventories(list(snakemake.input))
    table.to_csv(snakemake.output[0], sep="\t", index=False, lineterminator="\n")
    log.info("%d raw tables from %d studies", len(table), table["study"].nunique())
