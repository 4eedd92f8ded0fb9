from ipdpool.disclosure import collect_shareable
from ipdpool.logutil import logged_to

with logged_to(snakemake.log[0]) as log:
    sources = (
        list(snakemake.input.tables)
        + list(snakemake.input.audit)
        + list(snakemake.input.rules)
        + list(snakemake.input.figures)
    )
    figures = snakemake.params.figures
    written = collect_shareable(
        sources, snakemake.output[0], snakemake.params.min_count, figures["formats"], figures["png_dpi"]
    )
    log.info("shared %d files; counts below %d suppressed", len(written), snakemake.params.min_count)
