import pandas as pd

from ipdpool.logutil import logged_to
from ipdpool.tables import read_table, write_table

with logged_to(snakemake.log[0]) as log:
    for part in snakemake.output.keys():
        frames = [read_table(p) for p in snakemake.input[part]]
        table = pd.concat([f for f in frames if len(f)], ignore_index=True)
        write_table(table, snakemake.output[part])
        log.info("%s: %d rows", part, len(table))
