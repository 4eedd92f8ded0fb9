from pathlib import Path

from ipdpool.harmonize.schema import load_schema
from ipdpool.logutil import logged_to
from ipdpool.report import landing_html, landing_rst, table_page
from ipdpool.summary import headline_table, introduction
from ipdpool.tables import read_table

with logged_to(snakemake.log[0]) as log:
    outcomes = load_schema(Path(snakemake.params.schema))["outcomes"]
    sources = dict(zip(snakemake.params.names, snakemake.input.tables))
    for source, target, name, title in zip(
        snakemake.input.tables, snakemake.output.tables, snakemake.params.names, snakemake.params.titles
    ):
        Path(target).write_text(table_page(Path(source), title), encoding="utf-8")
        log.info("%s: %s", name, target)
    one_stage, two_stage, replication, sensitivity = (
        read_table(sources[name]) for name in ("one_stage", "two_stage", "replication", "sensitivity")
    )
    headline = headline_table(one_stage, two_stage, replication, sensitivity, outcomes)
    html = snakemake.output.landing_html
    Path(html).write_text(landing_html(headline, introduction(one_stage), Path(snakemake.input.flow)), encoding="utf-8")
    description = Path(snakemake.input.description).read_text(encoding="utf-8")
    Path(snakemake.output.landing_rst).write_text(landing_rst(description, html), encoding="utf-8")
    log.info("landing page: %d headline rows", len(headline))
