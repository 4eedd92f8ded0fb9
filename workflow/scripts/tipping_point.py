from pathlib import Path

import pandas as pd

from ipdpool.imputation.analysis import pool_tipping, tipping_points
from ipdpool.imputation.figure import tipping_point_figure
from ipdpool.logutil import logged_to
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    frames = [pd.read_parquet(path) for path in snakemake.input]
    pooled = pool_tipping(pd.concat(frames, ignore_index=True)) if frames else pool_tipping(pd.DataFrame())
    write_table(pooled, snakemake.output.grid)
    summary = tipping_points(pooled)
    write_table(summary, snakemake.output.summary)
    tipping_point_figure(pooled, summary, Path(snakemake.output.figure[0]).with_suffix(""), snakemake.params.figures)
    log.info("%d pooled points, %d tipping points", len(pooled), len(summary))
