import json
from pathlib import Path

import pandas as pd

from ipdpool.harmonize.schema import load_schema
from ipdpool.imputation.analysis import bundle_refusal, chunk_estimates
from ipdpool.logutil import logged_to

with logged_to(snakemake.log[0]) as log:
    settings, analysis = snakemake.params.mi, snakemake.params.analysis
    levels = load_schema(Path(snakemake.input.schema))["variables"]["diagnosis"]["allowed"]
    first = int(snakemake.wildcards.chunk) * snakemake.params.chunk_size
    imputations = range(first, min(first + snakemake.params.chunk_size, settings["imputations"]))
    held = pd.read_parquet(snakemake.input.data[0]) if snakemake.input.data else None
    bundled = {}
    for path in snakemake.input.bundled:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
        study, released = content["statistics"]["study"], content.get("imputations")
        refusal = bundle_refusal(settings, study, released)
        if refusal:
            log.error("%s", refusal)
            raise SystemExit(1)
        bundled[study] = released["outcomes"]
    tables = []
    for outcome in analysis["outcomes"]:
        released = {study: outcomes[outcome] for study, outcomes in bundled.items()}
        tables.append(chunk_estimates(held, released, outcome, analysis, settings, imputations, levels))
        log.info(
            "%s: imputations %d-%d, %d estimates", outcome, imputations.start, imputations.stop - 1, len(tables[-1])
        )
    pd.concat(tables, ignore_index=True).to_parquet(snakemake.output[0], index=False)
