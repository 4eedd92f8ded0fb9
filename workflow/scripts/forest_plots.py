from pathlib import Path

from ipdpool.figures import forest_plot, slug
from ipdpool.harmonize.schema import load_schema
from ipdpool.logutil import logged_to
from ipdpool.tables import read_table

with logged_to(snakemake.log[0]) as log:
    outcome = snakemake.wildcards.outcome
    spec = load_schema(Path(snakemake.input.schema))["outcomes"][outcome]
    per_study, two_stage, one_stage = (read_table(snakemake.input[name]) for name in ("per_study", "two_stage", "one_stage"))
    for name, term in snakemake.params.reported:
        studies = per_study[(per_study["contrast"] == name) & (per_study["term"] == term) & (per_study["status"] == "estimated")]
        reml = two_stage[(two_stage["contrast"] == name) & (two_stage["term"] == term) & (two_stage["method"] == "REML")] if len(two_stage) else two_stage
        pooled, hksj = (reml[reml["hksj"] == adjusted] for adjusted in (False, True))
        one = one_stage[(one_stage["contrast"] == name) & (one_stage["term"] == term)]
        stem = Path("results/figures/forest") / outcome / f"{name}__{slug(term)}"
        first = [frame.iloc[0] if len(frame) else None for frame in (pooled, one, hksj)]
        forest_plot(studies, first[0], first[1], outcome, term, spec, stem, hksj=first[2])
        log.info("forest plot %s", stem)
