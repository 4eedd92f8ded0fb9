from pathlib import Path

from ipdpool.figures import flow_figure, status_figure
from ipdpool.logutil import logged_to
from ipdpool.tables import read_table

with logged_to(snakemake.log[0]) as log:
    flow_figure(read_table(snakemake.input.flow), Path(snakemake.output.flow).with_suffix(""))
    status_figure(read_table(snakemake.input.status), Path(snakemake.output.status).with_suffix(""))
    log.info("data figures written")
