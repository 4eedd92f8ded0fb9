import pandas as pd

from ipdpool.confounding_simulation import summarize
from ipdpool.logutil import logged_to
from ipdpool.tables import read_table, write_table

with logged_to(snakemake.log[0]) as log:
    results = pd.concat([read_table(p) for p in snakemake.input], ignore_index=True)
    summary = summarize(results, snakemake.params.scenarios)
    write_table(summary, snakemake.output[0])
    log.info("%d scenarios summarized", summary["scenario"].nunique())
