from ipdpool.harmonize.output import pooled_flow, status_matrix
from ipdpool.logutil import logged_to
from ipdpool.tables import read_table, write_table

with logged_to(snakemake.log[0]) as log:
    flows = [read_table(p) for p in snakemake.input.flows]
    write_table(pooled_flow(flows), snakemake.output.flow)
    write_table(status_matrix([read_table(p) for p in snakemake.input.rule_logs]), snakemake.output.status)
    log.info("participant flow and harmonization status of %d studies", len(flows))
