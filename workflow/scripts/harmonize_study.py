from pathlib import Path

from ipdpool.evaluation import harmonization_summary
from ipdpool.harmonize.audit import distribution_counts
from ipdpool.harmonize.output import write_csv, write_parquet
from ipdpool.harmonize.pseudonym import load_key
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.harmonize.study import harmonize_study
from ipdpool.inventory import inventory_of
from ipdpool.logutil import logged_to
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    rules = load_rules(snakemake.input.rules, snakemake.params.rule_schema)
    schema = load_schema(Path(snakemake.input.schema))
    result = harmonize_study(rules, schema, load_key(snakemake.config), rules_path=Path(snakemake.input.rules))
    for warning in result.warnings:
        log.warning(warning)
    write_parquet(result.data, snakemake.output.data, result.provenance)
    write_csv(result.data, snakemake.output.csv)
    write_table(result.rule_log, snakemake.output.rule_log)
    write_table(result.flow, snakemake.output.flow)
    write_table(result.arm_counts, snakemake.output.arm_counts)
    # Raw values exist only in this job: it leaves their summary (never the values) for the evaluation.
    sources = dict(zip(result.rule_log["variable"], result.rule_log["source"]))
    write_table(
        harmonization_summary(result.study, result.data, result.before, sources, schema), snakemake.output.summary
    )
    write_table(distribution_counts(result.before, result.data), snakemake.output.distributions)
    write_table(inventory_of(rules, result.raw_tables), snakemake.output.inventory)
    for row in result.arm_counts.itertuples():
        if row.differs:
            log.warning(
                "study %s: arm %r has %s participants, published %s",
                result.study,
                row.arm_original,
                row.n,
                row.published_n,
            )
    log.info("study %s: %d participants harmonized", result.study, len(result.data))
