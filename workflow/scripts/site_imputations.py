import pandas as pd

from ipdpool.federated import write_json
from ipdpool.imputation.analysis import site_imputations
from ipdpool.logutil import logged_to

with logged_to(snakemake.log[0]) as log:
    part = pd.read_parquet(snakemake.input[0])
    released = site_imputations(part, snakemake.params.analysis, snakemake.params.mi)
    write_json(released, snakemake.output[0])
    log.info(
        "study %s: %d completed data sets per outcome", snakemake.wildcards.study, snakemake.params.mi["imputations"]
    )
