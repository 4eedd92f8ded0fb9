from pathlib import Path

import pandas as pd

from ipdpool.evaluation import rules_overview, write_xlsx
from ipdpool.handoff import write_handoff
from ipdpool.harmonize.output import codebook, pool, reconcile, write_csv, write_parquet
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.inventory import combine_inventories
from ipdpool.logutil import logged_to
from ipdpool.tables import formula_safe, read_table, write_table

with logged_to(snakemake.log[0]) as log:
    schema = load_schema(Path(snakemake.input.schema))
    pooled, provenance = pool(list(snakemake.input.data), schema)
    study_rules = {}
    for path in snakemake.input.rules:
        rules = load_rules(path, snakemake.params.rule_schema)
        study_rules[rules["study"]] = rules
    flows = [read_table(p) for p in snakemake.input.flows]
    accounting = reconcile(pd.concat(flows, ignore_index=True), pooled)
    write_parquet(pooled, snakemake.output.data, provenance)
    write_csv(pooled, snakemake.output.csv)
    write_table(codebook(schema, pooled, study_rules), snakemake.output.codebook)
    write_table(accounting, snakemake.output.reconciliation)
    write_table(
        pd.concat([read_table(p) for p in snakemake.input.summaries], ignore_index=True), snakemake.output.summary
    )
    inventory = combine_inventories(list(snakemake.input.inventories))
    write_table(inventory, snakemake.output.inventory)
    log.info("raw inventory: %d tables of %d studies", len(inventory), inventory["study"].nunique())
    overview = rules_overview(list(study_rules.values()), schema)
    write_table(overview, snakemake.output.rules_tsv)
    write_xlsx(formula_safe(overview), snakemake.output.rules_xlsx, "Rules")
    log.info("rules overview: %d rules of %d studies", len(overview), len(study_rules))
    # From the file as written, as anyone reading the pooled data gets it.
    written = write_handoff(pd.read_parquet(snakemake.output.data), schema, Path(snakemake.output.handoff))
    log.info("hand-off files: %s", ", ".join(p.name for p in written))
    log.info("pooled %d participants from %d studies", len(pooled), pooled["study"].nunique())
