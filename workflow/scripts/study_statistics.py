import json
from pathlib import Path

import pandas as pd

from ipdpool.federated import table1_aggregates, write_json
from ipdpool.harmonize.schema import load_schema
from ipdpool.logutil import logged_to
from ipdpool.models.statistics import study_statistics, wants_centres
from ipdpool.releases import release

with logged_to(snakemake.log[0]) as log:
    levels = load_schema(Path(snakemake.input.schema))["variables"]["diagnosis"]["allowed"]
    disclosure = snakemake.params.disclosure
    imputations = dict(zip(snakemake.input.data, snakemake.input.imputations))
    for source, target in zip(snakemake.input.data, snakemake.output):
        data = pd.read_parquet(source)
        analysis = snakemake.params.analysis
        if disclosure is None:
            statistics = study_statistics(data, analysis, levels, centres=wants_centres(analysis))
            write_json({"statistics": statistics, "table1": table1_aggregates(data)}, target)
        else:
            # the participants (and per-centre blocks) a site bundle would release
            # (federated.disclosure.apply_to_pooled_ipd), by the same code
            released = release(
                data,
                analysis,
                levels,
                disclosure["nfilter_subset"],
                disclosure["nested"],
                json.loads(Path(imputations[source]).read_text(encoding="utf-8")) if source in imputations else None,
                disclosure,
            )
            statistics = released.statistics
            content = {"statistics": statistics, "table1": released.table1}
            write_json({**content, "imputations": released.imputations} if released.imputations else content, target)
            log.info(
                "study %s: %d released statistics harmonized or withheld by the nested-subset rule",
                statistics["study"],
                len(released.reasons),
            )
        log.info("study %s: statistics of %d participants", statistics["study"], statistics["n"])
