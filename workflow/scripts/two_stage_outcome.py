from ipdpool.federated import read_statistics
from ipdpool.logutil import logged_to
from ipdpool.models.twostage import per_study_table_from_statistics, two_stage_tables
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    outcome = snakemake.wildcards.outcome
    estimates = per_study_table_from_statistics(read_statistics(snakemake.input), outcome, snakemake.params.analysis)
    pooled, omitted = two_stage_tables(estimates, prediction=snakemake.params.analysis["prediction_interval"])
    write_table(estimates, snakemake.output.per_study)
    write_table(pooled, snakemake.output.two_stage)
    write_table(omitted, snakemake.output.leave_one_out)
    log.info("%s: %d per-study estimates, %d pooled rows", outcome, len(estimates), len(pooled))
