from pathlib import Path

import pandas as pd

from ipdpool.logutil import logged_to
from ipdpool.simulation import coverage_figure, summarize
from ipdpool.tables import read_table, write_table

with logged_to(snakemake.log[0]) as log:
    results = pd.concat([read_table(p) for p in snakemake.input], ignore_index=True)
    summary = summarize(results, snakemake.params.scenarios)
    write_table(summary, snakemake.output.summary)
    coverage_figure(summary, Path(snakemake.output.figure).with_suffix(""))
    log.info("%d replicates of %d scenarios summarized", results["replicate"].nunique(), summary["scenario"].nunique())
