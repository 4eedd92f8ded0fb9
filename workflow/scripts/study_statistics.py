from pathlib import Path

import pandas as pd

from ipdpool.federated import table1_aggregates, write_json
from ipdpool.harmonize.schema import load_schema
from ipdpool.logutil import logged_to
from ipdpool.models.statistics import study_statistics

with logged_to(snakemake.log[0]) as log:
    levels = load_schema(Path(snakemake.input.schema))["variables"]["diagnosis"]["allowed"]
    for source, target in zip(snakemake.input.data, snakemake.output):
        data = pd.read_parquet(source)
        statistics = study_statistics(data, snakemake.params.analysis, levels)
        write_json({"statistics": statistics, "table1": table1_aggregates(data)}, target)
        log.info("study %s: statistics of %d participants", statistics["study"], statistics["n"])
