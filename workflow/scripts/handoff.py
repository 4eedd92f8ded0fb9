from pathlib import Path

import pandas as pd

from ipdpool.handoff import write_handoff
from ipdpool.harmonize.schema import load_schema
from ipdpool.logutil import logged_to

with logged_to(snakemake.log[0]) as log:
    written = write_handoff(
        pd.read_parquet(snakemake.input.data), load_schema(Path(snakemake.input.schema)), Path(snakemake.output[0])
    )
    log.info("hand-off files: %s", ", ".join(p.name for p in written))
