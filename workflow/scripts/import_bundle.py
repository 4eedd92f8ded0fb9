from pathlib import Path

import pandas as pd

from ipdpool import __version__
from ipdpool.federated import (
    FLOW_COLUMNS,
    STATUS_COLUMNS,
    BundleError,
    accept_release,
    read_bundle,
    refused_designs,
    verify_signature,
    write_json,
)
from ipdpool.logutil import logged_to
from ipdpool.models.statistics import BUNDLE
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    study, path = snakemake.wildcards.study, Path(snakemake.input.bundle)
    try:
        authenticity = verify_signature(path, study, snakemake.params.federated)
        bundle = read_bundle(
            path,
            study,
            Path(snakemake.input.schema),
            snakemake.params.analysis,
            __version__,
            Path(snakemake.input.bundle_schema),
        )
        settings = snakemake.params.federated
        release = accept_release(
            Path(settings["accepted_releases"]),
            study,
            bundle["manifest"],
            settings.get("minimum_release", {}).get(study, 1),
        )
    except BundleError as error:
        log.error("%s", error)
        raise SystemExit(1) from None
    log.info("study %s: %s; %s", study, authenticity, release)
    statistics = {**bundle["statistics"], "source": BUNDLE}
    refused = refused_designs(bundle, path, study, snakemake.params.analysis)
    for outcome, messages in refused.items():
        for message in messages.values():
            log.warning("%s", message)
        statistics["outcomes"].setdefault(outcome, {"n_followup": 0, "designs": {}})["refused"] = messages
    statistics["bundle"] = {
        "file": str(path),
        "authenticity": authenticity,
        "release_line": bundle["manifest"]["release_line"],
        "release_sequence": bundle["manifest"]["release_sequence"],
        "released": bundle["manifest"]["released"],
    }
    released = {"imputations": bundle["imputations"]} if "imputations" in bundle else {}
    write_json({"statistics": statistics, "table1": bundle["table1"], **released}, snakemake.output.statistics)
    write_table(pd.DataFrame(bundle["flow"], columns=FLOW_COLUMNS), snakemake.output.flow)
    write_table(pd.DataFrame(bundle["status"], columns=STATUS_COLUMNS), snakemake.output.rule_log)
    log.info("study %s: bundle accepted (%s)", study, path)
