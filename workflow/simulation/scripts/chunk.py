from ipdpool.logutil import logged_to
from ipdpool.simulation import run_chunk
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    names = [s["name"] for s in snakemake.params.scenarios]
    index = names.index(snakemake.wildcards.scenario)
    first = int(snakemake.wildcards.chunk) * snakemake.params.chunk_size
    replicates = range(first, min(first + snakemake.params.chunk_size, snakemake.params.replicates))
    results = run_chunk(index, snakemake.params.scenarios[index], replicates)
    write_table(results, snakemake.output[0])
    log.info("scenario %s: replicates %d-%d", names[index], replicates.start, replicates.stop - 1)
