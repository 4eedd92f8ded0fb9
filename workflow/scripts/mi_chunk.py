import json
from pathlib import Path

import pandas as pd

from ipdpool.imputation.analysis import chunk_estimates, imputation_settings
from ipdpool.logutil import logged_to

with logged_to(snakemake.log[0]) as log:
    outcome, settings = snakemake.wildcards.outcome, snakemake.params.mi
    first = int(snakemake.wildcards.chunk) * snakemake.params.chunk_size
    imputations = range(first, min(first + snakemake.params.chunk_size, settings["imputations"]))
    held = pd.read_parquet(snakemake.input.data[0]) if snakemake.input.data else None
    bundled = {}
    for path in snakemake.input.bundled:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
        study, released = content["statistics"]["study"], content.get("imputations")
        if released is None or released["settings"] != imputation_settings(settings):
            log.error(
                "study %s: its bundle carries no completed data sets made with this run's multiple_imputation "
                "settings (%s); the site must write its bundle with multiple_imputation.in_bundles: true and "
                "the same settings",
                study,
                imputation_settings(settings),
            )
            raise SystemExit(1)
        bundled[study] = released["outcomes"][outcome]
    estimates = chunk_estimates(held, bundled, outcome, snakemake.params.analysis, settings, imputations)
    estimates.to_parquet(snakemake.output[0], index=False)
    log.info("%s: imputations %d-%d, %d estimates", outcome, imputations.start, imputations.stop - 1, len(estimates))
