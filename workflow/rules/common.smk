from pathlib import Path

from snakemake.utils import validate

from ipdpool.aggregate import read_aggregate
from ipdpool.harmonize.rulefile import load_rules, missing_raw_files, schema_problems
from ipdpool.labels import slug
from ipdpool.models import statistics_settings
from ipdpool.paths import (
    export_workflow_root,
    make_private_dirs,
    remove_stale_temporaries,
    sha256_of,
    shown_paths,
)
from ipdpool.yamlfile import check_files as check_yaml_files

# Snakemake reads the config with PyYAML, which keeps the last of two equal keys.
check_yaml_files(workflow.configfiles)
# Every violation, one sentence each (Snakemake's own check reports the first with the whole
# schema); Snakemake's check then fills in the defaults.
CONFIG_PROBLEMS = schema_problems(
    config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
)
if CONFIG_PROBLEMS:
    raise ValueError(
        f"config ({', '.join(shown_paths(workflow.configfiles))}): {len(CONFIG_PROBLEMS)} problem(s):\n"
        + "\n".join(f"  - {problem}" for problem in CONFIG_PROBLEMS)
    )
validate(config, "../schemas/config.schema.yaml")
export_workflow_root(workflow.basedir)
PRIVATE_DIRS = ["results/harmonized"]
STUDY_SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "study.schema.yaml"


def load_study_rules(study):
    """Every rule file is checked against the JSON Schema before any job runs."""
    path = Path(config["studies"][study])
    if not path.is_file():
        raise ValueError(
            f"study {study}: rule file {path} named in the config does not exist"
        )
    rules = load_rules(path, STUDY_SCHEMA)
    if rules["study"] != study:
        raise ValueError(
            f"study {study}: rule file {path} declares study {rules['study']!r}"
        )
    missing = missing_raw_files(rules)
    if missing:
        raise ValueError(
            f"study {study}: rule file {path} declares raw file(s) not found in raw_dir "
            f"{rules['raw_dir']}: {', '.join(missing)}"
        )
    return rules


# The aggregate-data file is checked at start-up too (every bad row listed).
read_aggregate(
    config["aggregate"]["file"],
    Path(workflow.basedir) / "workflow" / "schemas" / "aggregate.schema.yaml",
)

# Federated studies take part through a site bundle of sufficient statistics; a study listed
# both here and in `studies` (e.g. a coordinator's copy of the sites' configuration) uses its
# bundle, and its rule file is not read.
BUNDLES = config["federated"]["bundles"]
STUDY_RULES = {
    study: load_study_rules(study)
    for study in config["studies"]
    if study not in BUNDLES
}
STUDIES = sorted(STUDY_RULES)  # participant data held here
ALL_STUDIES = sorted(STUDIES + list(BUNDLES))
if not ALL_STUDIES:
    raise ValueError(
        "no studies configured: list rule files in `studies` or bundles in `federated.bundles`"
    )


wildcard_constraints:
    study="|".join(ALL_STUDIES),


def raw_files(wildcards):
    rules = STUDY_RULES[wildcards.study]
    return sorted(
        {str(Path(rules["raw_dir"]) / t["file"]) for t in rules["tables"].values()}
    )


# The SHA-256 of each raw file and of the study's rule file is a parameter of the jobs that
# read them. Snakemake re-runs a job whose parameters changed, so replaced content re-runs it
# whatever the timestamps say (Snakemake has no checksum trigger for inputs).
# Only files inside raw_dir are hashed: a path pointing elsewhere stops the job instead.
def input_checksums(wildcards):
    raw_dir = Path(STUDY_RULES[wildcards.study]["raw_dir"]).resolve()
    paths = [config["studies"][wildcards.study]]
    for path in raw_files(wildcards):
        if Path(path).resolve().is_relative_to(raw_dir):
            paths.append(path)
    return {path: sha256_of(path) for path in paths if Path(path).is_file()}


# A key file is an input so that a new key re-runs harmonization (a key from the
# environment cannot be tracked; force a re-run after changing it).
KEY_FILES = (
    [config["pseudonym"]["key_file"]]
    if config.get("pseudonym", {}).get("key_file")
    else []
)

OUTCOMES = config["analysis"]["outcomes"]
# (model, reported contrast) pairs: one forest plot each per outcome.
REPORTED = [
    (name, term)
    for name, model in config["analysis"]["models"].items()
    for term in model["report"]
]


wildcard_constraints:
    outcome="|".join(OUTCOMES),


# Every figure is written in each configured format; the first is the one the report shows.
FIGURE_FORMATS = config["figures"]["formats"]
FIGURE = FIGURE_FORMATS[0]


def figure_files(stem, **in_report):
    """A figure's files, one per format; with report arguments, the first one is in the report."""
    paths = [f"{stem}.{suffix}" for suffix in FIGURE_FORMATS]
    return [report(paths[0], **in_report), *paths[1:]] if in_report else paths


def one_of(names):
    """Wildcard pattern matching exactly these names (none: matches nothing)."""
    return "|".join(names) if names else "(?!)"


# Per-study sufficient statistics: computed here for held data, taken from bundles otherwise.
STATISTICS = expand("results/statistics/{study}.json", study=ALL_STUDIES)
# With federated.disclosure.apply_to_pooled_ipd the pooled-IPD run computes each study's
# statistics as a site bundle would release them (nested-subset rule), so both routes analyse the
# same participants; its multiple imputation then uses each study's released completed data sets.
SAME_SETS = bool(STUDIES) and config["federated"]["disclosure"].get(
    "apply_to_pooled_ipd", False
)
