import csv
from pathlib import Path

from ipdpool.figures import distributions_figure, save
from ipdpool.logutil import logged_to

with logged_to(snakemake.log[0]) as log:
    study = snakemake.wildcards.study
    with open(snakemake.input[0], encoding="utf-8", newline="") as handle:
        counts = list(csv.DictReader(handle, delimiter="\t"))
    figures = snakemake.params.figures
    save(
        distributions_figure(counts, study),
        Path(snakemake.output[0]).with_suffix(""),
        figures["formats"],
        figures["png_dpi"],
    )
    log.info("study %s: distributions plotted", study)
