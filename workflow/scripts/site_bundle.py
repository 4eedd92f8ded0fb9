import json
from pathlib import Path

from ipdpool import __version__
from ipdpool.federated import FLOW_COLUMNS, STATUS_COLUMNS, BundleError, make_bundle, manifest, write_json
from ipdpool.logutil import logged_to
from ipdpool.tables import read_table

with logged_to(snakemake.log[0]) as log:
    content = json.loads(Path(snakemake.input.statistics).read_text(encoding="utf-8"))
    study = content["statistics"]["study"]
    flow = read_table(snakemake.input.flow)[FLOW_COLUMNS].to_dict("records")
    status = read_table(snakemake.input.rule_log)[STATUS_COLUMNS].to_dict("records")
    about = manifest(
        study, Path(snakemake.input.rules), Path(snakemake.input.schema), snakemake.params.analysis, __version__
    )
    try:
        imputations = (
            json.loads(Path(snakemake.input.imputations[0]).read_text(encoding="utf-8"))
            if snakemake.input.imputations
            else None
        )
        bundle = make_bundle(
            content["statistics"], content["table1"], flow, status, about, snakemake.params.disclosure, imputations
        )
    except BundleError as error:
        log.error("%s", error)
        raise SystemExit(1) from None
    write_json(bundle, snakemake.output[0])
    log.info("study %s: bundle written; send %s to the coordinating centre", study, snakemake.output[0])
