import warnings
from pathlib import Path

from ipdpool.harmonize.schema import load_schema
from ipdpool.logutil import logged_to
from ipdpool.publication import latex_of, publication_page, results_gt, table1_gt, table2_gt
from ipdpool.tables import read_table

# great_tables warns that cell styles (here: no wrapping) have no LaTeX form; the LaTeX is plain.
warnings.filterwarnings("ignore", message="Styles are not yet supported in LaTeX output")

with logged_to(snakemake.log[0]) as log:
    outcomes = load_schema(Path(snakemake.input.schema))["outcomes"]
    table1 = read_table(snakemake.input.table1)
    one_stage, two_stage = read_table(snakemake.input.one_stage), read_table(snakemake.input.two_stage)
    tables = {
        "table1": (table1_gt(table1, outcomes), [snakemake.input.table1]),
        "table2": (table2_gt(table1, outcomes), [snakemake.input.table1]),
        "results": (results_gt(one_stage, two_stage, outcomes), [snakemake.input.one_stage, snakemake.input.two_stage]),
    }
    for name, title in zip(snakemake.params.names, snakemake.params.titles):
        table, sources = tables[name]
        latex = Path(snakemake.output.latex[snakemake.params.names.index(name)])
        latex.write_text(latex_of(table), encoding="utf-8")
        page = publication_page(table, title, [latex, *map(Path, sources)])
        Path(snakemake.output.pages[snakemake.params.names.index(name)]).write_text(page, encoding="utf-8")
        log.info("%s: %s and %s", name, latex, snakemake.output.pages[snakemake.params.names.index(name)])
