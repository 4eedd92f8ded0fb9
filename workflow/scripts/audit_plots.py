import csv
from pathlib import Path

from ipdpool.figures import distributions_figure, save
from ipdpool.logutil import logged_to

with logged_to(snakemake.log[0]) as log:
    figures = snakemake.params.figures
    for study, source in zip(snakemake.params.studies, snakemake.input):
        with open(source, encoding="utf-8", newline="") as handle:
            counts = list(csv.DictReader(handle, delimiter="\t"))
        stem = Path(source).parent / "distributions"
        save(distributions_figure(counts, study), stem, figures["formats"], figures["png_dpi"])
        log.info("study %s: distributions plotted", study)
