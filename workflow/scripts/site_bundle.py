import json
from pathlib import Path

import pandas as pd

from ipdpool import __version__
from ipdpool.federated import (
    FLOW_COLUMNS,
    FLOW_COUNTS,
    BundleError,
    disclosure_problems,
    exact_records,
    make_bundle,
    manifest,
    sign_bundle,
    status_records,
    table1_aggregates,
    write_json,
)
from ipdpool.harmonize.pseudonym import load_key
from ipdpool.harmonize.schema import load_schema
from ipdpool.logutil import logged_to
from ipdpool.releases import ReleaseRefused, record_release, released_statistics, summary_participants
from ipdpool.tables import read_table

with logged_to(snakemake.log[0]) as log:
    analysis, disclosure = snakemake.params.analysis, snakemake.params.disclosure
    data = pd.read_parquet(snakemake.input.data)
    study = str(data["study"].iloc[0])
    levels = load_schema(Path(snakemake.input.schema))["variables"]["diagnosis"]["allowed"]
    statistics, changed, design_sets = released_statistics(
        data, analysis, levels, disclosure["nfilter_subset"], disclosure["nested"]
    )
    for key, reason in sorted(changed.items()):
        log.warning("study %s: design %s %s", study, key, reason)
    table1 = table1_aggregates(data)
    flow = exact_records(read_table(snakemake.input.flow), FLOW_COLUMNS, FLOW_COUNTS)
    status = status_records(read_table(snakemake.input.rule_log))
    try:
        problems = disclosure_problems(statistics, table1, disclosure)
        if problems:
            raise BundleError("bundle refused by disclosure control, nothing written:\n" + "\n".join(problems))
        released = record_release(
            Path(snakemake.params.ledger) / f"{study}.json",
            load_key(snakemake.config),
            study,
            {**design_sets, **summary_participants(data, analysis["outcomes"])},
            disclosure["nfilter_subset"],
            snakemake.params.release_line,
            log,
            snakemake.params.released_before,
        )
        about = manifest(
            study,
            Path(snakemake.input.rules),
            Path(snakemake.input.schema),
            analysis,
            __version__,
            released["release_line"],
            released["sequence"],
            released["released"],
        )
        imputations = (
            json.loads(Path(snakemake.input.imputations[0]).read_text(encoding="utf-8"))
            if snakemake.input.imputations
            else None
        )
        bundle = make_bundle(statistics, table1, flow, status, about, disclosure, imputations)
    except (BundleError, ReleaseRefused) as error:
        log.error("%s", error)
        raise SystemExit(1) from None
    write_json(bundle, snakemake.output.bundle)
    if snakemake.params.signing_key:
        sign_bundle(Path(snakemake.output.bundle), Path(snakemake.params.signing_key))
    log.info(
        "study %s: bundle written (release line %s, release %d; %d designs harmonized, %d withheld by the "
        "nested-subset rule); send %s and its signature to the coordinating centre",
        study,
        released["release_line"],
        released["sequence"],
        sum(r.startswith("harmonized") for r in changed.values()),
        sum(r.startswith("withheld") for r in changed.values()),
        snakemake.output.bundle,
    )
