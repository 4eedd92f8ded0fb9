from pathlib import Path

from ipdpool.evaluation import rules_overview, write_xlsx
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.logutil import logged_to
from ipdpool.tables import formula_safe, write_table

with logged_to(snakemake.log[0]) as log:
    rule_files = [load_rules(path, snakemake.params.rule_schema) for path in snakemake.input.rules]
    overview = rules_overview(rule_files, load_schema(Path(snakemake.input.schema)))
    write_table(overview, snakemake.output.tsv)
    write_xlsx(formula_safe(overview), snakemake.output.xlsx, "Rules")
    log.info("rules overview: %d rules of %d studies", len(overview), len(rule_files))
