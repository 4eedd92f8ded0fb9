import json
from pathlib import Path

import pandas as pd

from ipdpool.causal import evalue_table, federated_iv_table, first_stage_forest, first_stage_table, iv_table
from ipdpool.figures import save
from ipdpool.logutil import logged_to
from ipdpool.tables import read_table, write_table

with logged_to(snakemake.log[0]) as log:
    settings = snakemake.params.causal
    tables, statistics = {}, {}
    for path in snakemake.input.statistics:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
        tables[content["statistics"]["study"]] = content["table1"]
        statistics[content["statistics"]["study"]] = content["statistics"]
    first = first_stage_table(tables, snakemake.params.nfilter_tab, settings["n_agq"], settings["level"])
    write_table(first, snakemake.output.first_stage)
    stem = Path(snakemake.output.forest[0]).with_suffix("")
    save(first_stage_forest(first), stem, formats=snakemake.params.formats, dpi=snakemake.params.dpi)
    pooled = pd.read_parquet(snakemake.input.pooled[0]) if snakemake.input.pooled else None
    arguments = (snakemake.params.outcomes, settings["level"], settings["interaction_min_f"])
    if (
        pooled is not None
        and set(pooled["study"].astype(str)) >= set(statistics)
        and not snakemake.params.released_sets
    ):
        iv = iv_table(pooled, *arguments)
    else:  # site bundles (or the participants they release): the released cross-products
        iv = federated_iv_table(statistics, *arguments)
    write_table(iv, snakemake.output.iv)
    one_stage = pd.concat([read_table(p) for p in snakemake.input.one_stage], ignore_index=True)
    write_table(evalue_table(one_stage), snakemake.output.evalues)
    log.info("first stage of %d studies; IV rows %d", len(tables), len(iv))
