import yaml

from ipdpool.logutil import logged_to
from ipdpool.models.replication import replication_table
from ipdpool.tables import read_table, write_table

with logged_to(snakemake.log[0]) as log:
    settings = snakemake.params.replication
    truth = None
    if snakemake.input.truth:
        with open(snakemake.input.truth[0], encoding="utf-8") as handle:
            truth = yaml.safe_load(handle)["true_effects"][settings["contrast"]]
    table = replication_table(read_table(snakemake.input.one_stage), settings["contrast"], settings["term"], settings.get("published", {}), truth)
    write_table(table, snakemake.output[0])
    log.info("replication: %d outcomes", len(table))
