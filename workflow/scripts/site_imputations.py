from pathlib import Path

import pandas as pd

from ipdpool.federated import write_json
from ipdpool.harmonize.schema import load_schema
from ipdpool.imputation.analysis import site_imputations
from ipdpool.logutil import logged_to

with logged_to(snakemake.log[0]) as log:
    part = pd.read_parquet(snakemake.input.data)
    levels = load_schema(Path(snakemake.input.schema))["variables"]["diagnosis"]["allowed"]
    released = site_imputations(part, snakemake.params.analysis, snakemake.params.mi, levels)
    write_json(released, snakemake.output[0])
    log.info(
        "study %s: %d completed data sets per outcome", snakemake.wildcards.study, snakemake.params.mi["imputations"]
    )
