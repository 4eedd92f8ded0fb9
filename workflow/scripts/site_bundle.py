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
from ipdpool.releases import ReleaseRefused, ledger_sets, record_release, release
from ipdpool.tables import read_table

with logged_to(snakemake.log[0]) as log:
    analysis, disclosure = snakemake.params.analysis, snakemake.params.disclosure
    data = pd.read_parquet(snakemake.input.data)
    study = str(data["study"].iloc[0])
    levels = load_schema(Path(snakemake.input.schema))["variables"]["diagnosis"]["allowed"]
    imputations = (
        json.loads(Path(snakemake.input.imputations[0]).read_text(encoding="utf-8"))
        if snakemake.input.imputations
        else None
    )
    released = release(
        data, analysis, levels, disclosure["nfilter_subset"], disclosure["nested"], imputations, disclosure
    )
    for name, reason in sorted(released.reasons.items()):
        log.warning("study %s: statistic %s %s", study, name, reason)
    flow = exact_records(read_table(snakemake.input.flow), FLOW_COLUMNS, FLOW_COUNTS)
    status = status_records(read_table(snakemake.input.rule_log))
    try:
        # the checks before anything is recorded in the ledger (make_bundle repeats them)
        problems = disclosure_problems(released.statistics, released.table1, disclosure)
        problems += disclosure_problems({"study": study, "outcomes": {}}, table1_aggregates(data), disclosure)
        if problems:
            problems = list(dict.fromkeys(problems))
            raise BundleError("bundle refused by disclosure control, nothing written:\n" + "\n".join(problems))
        recorded = record_release(
            Path(snakemake.params.ledger) / f"{study}.json",
            load_key(snakemake.config),
            study,
            ledger_sets(released.sets),
            disclosure["nfilter_subset"],
            snakemake.params.release_line,
            log,
            snakemake.params.released_before,
            released.scope,
        )
        about = manifest(
            study,
            Path(snakemake.input.rules),
            Path(snakemake.input.schema),
            analysis,
            __version__,
            recorded["release_line"],
            recorded["sequence"],
            recorded["released"],
        )
        bundle = make_bundle(
            released.statistics,
            released.table1,
            flow,
            status,
            about,
            disclosure,
            released.imputations,
            table1_aggregates(data),
        )
    except (BundleError, ReleaseRefused) as error:
        log.error("%s", error)
        raise SystemExit(1) from None
    write_json(bundle, snakemake.output.bundle)
    if snakemake.params.signing_key:
        sign_bundle(Path(snakemake.output.bundle), Path(snakemake.params.signing_key))
    log.info(
        "study %s: bundle written (release line %s, release %d; %d statistics harmonized, %d withheld by the "
        "nested-subset rule); send %s and its signature to the coordinating centre",
        study,
        recorded["release_line"],
        recorded["sequence"],
        sum(r.startswith("harmonized") for r in released.reasons.values()),
        sum(r.startswith("withheld") for r in released.reasons.values()),
        snakemake.output.bundle,
    )
