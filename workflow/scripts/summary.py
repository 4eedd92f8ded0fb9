from ipdpool.logutil import logged_to
from ipdpool.summary import headline_summary
from ipdpool.tables import read_table

with logged_to(snakemake.log[0]) as log:
    text = headline_summary(read_table(snakemake.input.one_stage), read_table(snakemake.input.two_stage), read_table(snakemake.input.replication))
    with open(snakemake.output[0], "w", encoding="utf-8") as handle:
        handle.write(text)
    log.info("summary written")
