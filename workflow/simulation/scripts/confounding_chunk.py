from ipdpool.confounding_simulation import run_chunk
from ipdpool.logutil import logged_to
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    params = snakemake.params
    first = int(snakemake.wildcards.chunk) * params.chunk_size
    replicates = range(first, min(first + params.chunk_size, params.replicates))
    write_table(run_chunk(params.index, params.scenario, replicates), snakemake.output[0])
    log.info("scenario %s: replicates %d-%d", params.scenario["name"], replicates.start, replicates.stop - 1)
