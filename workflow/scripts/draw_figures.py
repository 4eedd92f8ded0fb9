from pathlib import Path

from ipdpool.figures import flow_figure, forest_plot, slug, status_figure
from ipdpool.harmonize.schema import load_schema
from ipdpool.logutil import logged_to
from ipdpool.tables import read_table


def rows_of(table, name, term):
    return table[(table["contrast"] == name) & (table["term"] == term)]


with logged_to(snakemake.log[0]) as log:
    params = snakemake.params
    saving = {"formats": params.figures["formats"], "dpi": params.figures["png_dpi"]}
    specs = load_schema(Path(snakemake.input.schema))["outcomes"]
    for index, outcome in enumerate(params.outcomes):
        per_study, two_stage, one_stage = (
            read_table(snakemake.input[name][index]) for name in ("per_study", "two_stage", "one_stage")
        )
        for name, term in params.reported:
            studies = rows_of(per_study, name, term)
            studies = studies[studies["status"] == "estimated"]
            reml = rows_of(two_stage, name, term) if len(two_stage) else two_stage
            reml = reml[reml["method"] == "REML"] if len(reml) else reml
            pooled, hksj = (reml[reml["hksj"] == adjusted] for adjusted in (False, True))
            first = [frame.iloc[0] if len(frame) else None for frame in (pooled, rows_of(one_stage, name, term), hksj)]
            stem = Path("results/figures/forest") / outcome / f"{name}__{slug(term)}"
            forest_plot(studies, first[0], first[1], outcome, term, specs[outcome], stem, hksj=first[2], **saving)
        log.info("forest plots of %s: %d", outcome, len(params.reported))
    flow = read_table(snakemake.input.flow)
    flow_figure(flow, Path("results/figures/participant_flow"), outcomes=specs, **saving)
    for study in params.studies:
        flow_figure(flow, Path("results/figures/flow") / study, study=study, outcomes=specs, **saving)
    status_figure(read_table(snakemake.input.status), Path("results/figures/harmonization_status"), **saving)
    log.info("participant flows (all studies and %d studies) and harmonization status drawn", len(params.studies))
