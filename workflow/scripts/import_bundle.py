from pathlib import Path

import pandas as pd

from ipdpool import __version__
from ipdpool.federated import FLOW_COLUMNS, STATUS_COLUMNS, BundleError, read_bundle, write_json
from ipdpool.logutil import logged_to
from ipdpool.models.statistics import BUNDLE
from ipdpool.tables import write_table

with logged_to(snakemake.log[0]) as log:
    study = snakemake.wildcards.study
    try:
        bundle = read_bundle(
            Path(snakemake.input.bundle), study, Path(snakemake.input.schema), snakemake.params.analysis, __version__
        )
    except BundleError as error:
        log.error("%s", error)
        raise SystemExit(1) from None
    statistics = {**bundle["statistics"], "source": BUNDLE}
    released = {"imputations": bundle["imputations"]} if "imputations" in bundle else {}
    write_json({"statistics": statistics, "table1": bundle["table1"], **released}, snakemake.output.statistics)
    write_table(pd.DataFrame(bundle["flow"], columns=FLOW_COLUMNS), snakemake.output.flow)
    write_table(pd.DataFrame(bundle["status"], columns=STATUS_COLUMNS), snakemake.output.rule_log)
    log.info("study %s: bundle accepted (%s)", study, snakemake.input.bundle)
