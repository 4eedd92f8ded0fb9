# One job per outcome fits both the one-stage model and the two-stage meta-analysis: each is a fraction
# of a second from the studies' statistics, while a job of its own costs interpreter start-up and imports.
from ipdpool.federated import annotate_refusals, read_statistics, refusal_notes
from ipdpool.logutil import logged_to
from ipdpool.models.onestage import fit_outcome_from_statistics
from ipdpool.models.twostage import per_study_table_from_statistics, two_stage_tables
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    outcome, analysis = snakemake.wildcards.outcome, snakemake.params.analysis
    statistics = read_statistics(snakemake.input)
    primary, sensitivity = fit_outcome_from_statistics(statistics, outcome, analysis)
    # Studies refused for a model (a design their site withheld) are named in its rows' warnings.
    notes = refusal_notes(statistics, outcome)
    primary, sensitivity = annotate_refusals(primary, notes), annotate_refusals(sensitivity, notes)
    write_table(primary, snakemake.output.primary)
    write_table(sensitivity, snakemake.output.sensitivity)
    for row in primary.itertuples():
        estimated = f"{row.estimate:.3f} ({row.ci_low:.3f}, {row.ci_high:.3f})"
        result = estimated if row.status == "estimated" else "not estimated: " + row.warnings
        log.info("%s %s %s: %s", outcome, row.contrast, row.term, result)
    estimates = per_study_table_from_statistics(statistics, outcome, analysis)
    pooled, omitted = two_stage_tables(estimates, prediction=analysis["prediction_interval"])
    pooled, omitted = annotate_refusals(pooled, notes), annotate_refusals(omitted, notes)
    write_table(estimates, snakemake.output.per_study)
    write_table(pooled, snakemake.output.two_stage)
    write_table(omitted, snakemake.output.leave_one_out)
    log.info("%s: %d per-study estimates, %d pooled rows", outcome, len(estimates), len(pooled))
