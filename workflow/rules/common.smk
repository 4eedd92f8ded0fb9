from pathlib import Path

from snakemake.utils import validate

from ipdpool.aggregate import read_aggregate
from ipdpool.figures import slug
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.paths import make_private_dirs

validate(config, "../schemas/config.schema.yaml")
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
    return rules


# The aggregate-data file is checked at start-up too (every bad row listed).
read_aggregate(
    config["aggregate"]["file"],
    Path(workflow.basedir) / "workflow" / "schemas" / "aggregate.schema.yaml",
)

STUDY_RULES = {study: load_study_rules(study) for study in config["studies"]}
STUDIES = sorted(STUDY_RULES)


wildcard_constraints:
    study="|".join(STUDIES),


def raw_files(wildcards):
    rules = STUDY_RULES[wildcards.study]
    return sorted(
        {str(Path(rules["raw_dir"]) / t["file"]) for t in rules["tables"].values()}
    )


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
