import json
from pathlib import Path

from ipdpool.logutil import logged_to
from ipdpool.table1 import table1_table
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    contents = [json.loads(Path(p).read_text(encoding="utf-8")) for p in snakemake.input]
    aggregates = {
        c["statistics"]["study"]: c["table1"] for c in sorted(contents, key=lambda c: c["statistics"]["study"])
    }
    write_table(table1_table(aggregates), snakemake.output[0])
    log.info("Table 1 of %d studies", len(aggregates))
