from pathlib import Path

from ipdpool.logutil import logged_to
from ipdpool.report import landing_html, landing_rst
from ipdpool.summary import headline_table
from ipdpool.tables import read_table

with logged_to(snakemake.log[0]) as log:
    headline = headline_table(*(read_table(snakemake.input[name]) for name in ("one_stage", "two_stage", "replication")))
    Path(snakemake.output.html).write_text(landing_html(headline, Path(snakemake.input.flow)), encoding="utf-8")
    description = Path(snakemake.input.description).read_text(encoding="utf-8")
    Path(snakemake.output.rst).write_text(landing_rst(description, snakemake.output.html), encoding="utf-8")
    log.info("landing page: %d headline rows", len(headline))
