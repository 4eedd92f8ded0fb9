from pathlib import Path

import pandas as pd

from ipdpool.federated import table1_aggregates, write_json
from ipdpool.harmonize.schema import load_schema
from ipdpool.logutil import logged_to
from ipdpool.models.statistics import study_statistics, wants_centres

with logged_to(snakemake.log[0]) as log:
    levels = load_schema(Path(snakemake.input.schema))["variables"]["diagnosis"]["allowed"]
    for source, target in zip(snakemake.input.data, snakemake.output):
        data = pd.read_parquet(source)
        analysis = snakemake.params.analysis
        statistics = study_statistics(data, analysis, levels, centres=wants_centres(analysis))
        write_json({"statistics": statistics, "table1": table1_aggregates(data)}, target)
        log.info("study %s: statistics of %d participants", statistics["study"], statistics["n"])
