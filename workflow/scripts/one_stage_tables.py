import pandas as pd

from ipdpool.logutil import logged_to
from ipdpool.tables import read_table, write_table

with logged_to(snakemake.log[0]) as log:
    for part in ("primary", "sensitivity"):
        table = pd.concat([read_table(p) for p in snakemake.input[part]], ignore_index=True)
        write_table(table, snakemake.output[part])
        log.info("%s: %d rows", part, len(table))
