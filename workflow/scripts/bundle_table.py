import pandas as pd

from ipdpool.federated import bundle_rows, read_statistics
from ipdpool.logutil import logged_to
from ipdpool.tables import write_table

COLUMNS = [
    "study",
    "file",
    "authenticity",
    "release_line",
    "release_sequence",
    "released",
    "designs_harmonized",
    "designs_refused",
    "refusals",
]

with logged_to(snakemake.log[0]) as log:
    rows = bundle_rows(read_statistics(snakemake.input))
    write_table(pd.DataFrame(rows, columns=COLUMNS), snakemake.output[0])
    log.info("%d site bundles", len(rows))
