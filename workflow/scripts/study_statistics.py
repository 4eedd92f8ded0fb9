from pathlib import Path

import pandas as pd

from ipdpool.federated import table1_aggregates, write_json
from ipdpool.harmonize.schema import load_schema
from ipdpool.logutil import logged_to
from ipdpool.models.statistics import study_statistics

with logged_to(snakemake.log[0]) as log:
    data = pd.read_parquet(snakemake.input.data)
    levels = load_schema(Path(snakemake.input.schema))["variables"]["diagnosis"]["allowed"]
    statistics = study_statistics(data, snakemake.params.analysis, levels)
    write_json({"statistics": statistics, "table1": table1_aggregates(data)}, snakemake.output[0])
    log.info("study %s: statistics of %d participants", statistics["study"], statistics["n"])
