from ipdpool.aggregate import aggregate_analyses, read_aggregate
from ipdpool.federated import read_statistics
from ipdpool.logutil import logged_to
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    rows = read_aggregate(snakemake.input.aggregate, snakemake.input.schema)
    trials, pooled = aggregate_analyses(rows, read_statistics(snakemake.input.statistics), snakemake.params.prediction)
    write_table(trials, snakemake.output.trials)
    write_table(pooled, snakemake.output.meta)
    log.info("aggregate data: %d trial rows, %d pooled rows", len(trials), len(pooled))
