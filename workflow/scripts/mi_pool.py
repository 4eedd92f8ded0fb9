import pandas as pd

from ipdpool.imputation.analysis import pool_estimates
from ipdpool.logutil import logged_to
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    estimates = pd.concat([pd.read_parquet(path) for path in snakemake.input], ignore_index=True)
    pooled = pool_estimates(estimates)
    write_table(pooled, snakemake.output[0])
    log.info("%d pooled rows from %d completed data sets", len(pooled), estimates["imputation"].nunique())
