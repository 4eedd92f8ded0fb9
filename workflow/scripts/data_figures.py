from pathlib import Path

from ipdpool.figures import flow_figure, status_figure
from ipdpool.logutil import logged_to
from ipdpool.tables import read_table

with logged_to(snakemake.log[0]) as log:
    flow = read_table(snakemake.input.flow)
    flow_figure(flow, Path(snakemake.output.flow).with_suffix(""))
    for path in snakemake.output.study_flows:
        flow_figure(flow, Path(path).with_suffix(""), study=Path(path).stem)
    status_figure(read_table(snakemake.input.status), Path(snakemake.output.status).with_suffix(""))
    log.info("data figures written: pooled flow, %d study flows, status", len(snakemake.output.study_flows))
