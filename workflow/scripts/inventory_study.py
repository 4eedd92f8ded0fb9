from ipdpool.inventory import inventory_study
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.logutil import logged_to

with logged_to(snakemake.log[0]) as log:
    rules = load_rules(snakemake.input.rules, snakemake.params.rule_schema)
    table = inventory_study(rules)
    table.to_csv(snakemake.output[0], sep="\t", index=False, lineterminator="\n")
    log.info("study %s: %d tables read, %d rows in all", rules["study"], len(table), table["rows"].sum())
