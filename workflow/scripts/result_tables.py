from pathlib import Path

import pandas as pd
import yaml

from ipdpool.harmonize.schema import load_schema
from ipdpool.logutil import logged_to
from ipdpool.models.replication import replication_table
from ipdpool.summary import headline_summary
from ipdpool.tables import read_table, write_table

with logged_to(snakemake.log[0]) as log:
    for part in ("one_stage", "sensitivity", "per_study", "two_stage", "leave_one_out"):
        frames = [read_table(path) for path in snakemake.input[part]]
        table = pd.concat([frame for frame in frames if len(frame)] or frames[:1], ignore_index=True)
        write_table(table, snakemake.output[part])
        log.info("%s: %d rows", part, len(table))
    settings = snakemake.params.replication
    truth = None
    if snakemake.input.truth:
        with open(snakemake.input.truth[0], encoding="utf-8") as handle:
            truth = yaml.safe_load(handle)["true_effects"][settings["contrast"]]
    # Later steps read the tables back, as every reader of the TSVs does (values as written).
    one_stage = read_table(snakemake.output.one_stage)
    replication = replication_table(
        one_stage, settings["contrast"], settings["term"], settings.get("published", {}), truth
    )
    write_table(replication, snakemake.output.replication)
    text = headline_summary(
        one_stage,
        read_table(snakemake.output.two_stage),
        read_table(snakemake.output.replication),
        read_table(snakemake.output.sensitivity),
        load_schema(Path(snakemake.input.schema))["outcomes"],
    )
    with open(snakemake.output.summary, "w", encoding="utf-8") as handle:
        handle.write(text)
    log.info("replication: %d outcomes; summary written", len(replication))
