from pathlib import Path

import pandas as pd

from ipdpool.harmonize.schema import load_schema
from ipdpool.imputation.analysis import tipping_estimates
from ipdpool.logutil import logged_to

with logged_to(snakemake.log[0]) as log:
    outcome, tipping = snakemake.wildcards.outcome, snakemake.params.tipping
    levels = load_schema(Path(snakemake.input.schema))["variables"]["diagnosis"]["allowed"]
    estimates = tipping_estimates(
        pd.read_parquet(snakemake.input.data), outcome, snakemake.params.analysis, snakemake.params.mi,
        tipping["groups"], tipping["deltas"], tipping["terms"], range(tipping["imputations"]), levels,
    )  # fmt: skip
    estimates.to_parquet(snakemake.output[0], index=False)
    log.info("%s: %d estimates", outcome, len(estimates))
