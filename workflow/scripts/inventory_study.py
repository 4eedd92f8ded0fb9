from ipdpool.inventory import inventory_study
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.logutil import logged_to
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    rules = load_rules(snakemake.input.rules, snakemake.params.rule_schema)
    table = inventory_study(rules)
    write_table(table, snakemake.output[0])
    log.info("study %s: %d tables read, %d rows in all", rules["study"], len(table), table["rows"].sum())
