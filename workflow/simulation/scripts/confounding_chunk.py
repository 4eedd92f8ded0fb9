from ipdpool.confounding_simulation import run_chunk
from ipdpool.logutil import logged_to
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    settings = snakemake.params.settings
    names = [s["name"] for s in settings["scenarios"]]
    index = names.index(snakemake.wildcards.scenario)
    first = int(snakemake.wildcards.chunk) * settings["chunk_size"]
    replicates = range(first, min(first + settings["chunk_size"], settings["replicates"]))
    write_table(run_chunk(index, settings["scenarios"][index], replicates), snakemake.output[0])
    log.info("scenario %s: replicates %d-%d", names[index], replicates.start, replicates.stop - 1)
