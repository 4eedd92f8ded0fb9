from ipdpool.federated import read_statistics
from ipdpool.logutil import logged_to
from ipdpool.models.onestage import fit_outcome_from_statistics
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    outcome = snakemake.wildcards.outcome
    primary, sensitivity = fit_outcome_from_statistics(read_statistics(snakemake.input), outcome, snakemake.params.analysis)
    write_table(primary, snakemake.output.primary)
    write_table(sensitivity, snakemake.output.sensitivity)
    for row in primary.itertuples():
        log.info("%s %s %s: %s", outcome, row.contrast, row.term, "not estimated: " + row.warnings if row.status != "estimated" else f"{row.estimate:.3f} ({row.ci_low:.3f}, {row.ci_high:.3f})")
