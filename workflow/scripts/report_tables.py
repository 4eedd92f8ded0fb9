from pathlib import Path

from ipdpool.harmonize.schema import load_schema
from ipdpool.logutil import logged_to
from ipdpool.report import table_page
from ipdpool.table1 import table1_display
from ipdpool.tables import read_table

with logged_to(snakemake.log[0]) as log:
    outcomes = load_schema(Path(snakemake.params.schema))["outcomes"]
    for source, target, name, title in zip(snakemake.input, snakemake.output, snakemake.params.names, snakemake.params.titles):
        # Table 1 reads as a table of characteristics by study and arm, not as tidy rows.
        frame = table1_display(read_table(source), outcomes) if name == "table1" else None
        Path(target).write_text(table_page(Path(source), title, frame), encoding="utf-8")
        log.info("%s: %s", name, target)
