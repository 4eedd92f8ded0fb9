"""The walking skeleton: `snakemake --cores N` runs end to end on the demo."""

import hashlib
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, snakemake

pytestmark = pytest.mark.workflow


def test_inventory_lists_every_declared_raw_table_with_its_checksum(completed_run):
    inventory = pd.read_csv(completed_run / "results" / "raw_inventory.tsv", sep="\t", keep_default_na=False)
    config = yaml.safe_load((completed_run / "config" / "config.yaml").read_text())
    declared = []
    for study, rule_file in config["studies"].items():
        rules = yaml.safe_load((completed_run / rule_file).read_text(encoding="utf-8"))
        declared += [(study, name, Path(rules["raw_dir"]) / spec["file"]) for name, spec in rules["tables"].items()]
    assert sorted((s, t) for s, t, _ in declared) == sorted(zip(inventory["study"], inventory["table"]))
    for study, table, path in declared:
        row = inventory[(inventory["study"] == study) & (inventory["table"] == table)].iloc[0]
        assert row["sha256"] == hashlib.sha256((completed_run / path).read_bytes()).hexdigest()
    assert inventory.set_index(["study", "table"]).loc[("EU6", "baseline"), "rows"] == 312


def test_every_job_wrote_a_log_and_a_benchmark(completed_run):
    logs = {p.relative_to(completed_run / "logs").with_suffix("") for p in (completed_run / "logs").rglob("*.log")}
    benchmarks = {
        p.relative_to(completed_run / "benchmarks").with_suffix("")
        for p in (completed_run / "benchmarks").rglob("*.tsv")
    }
    assert benchmarks == logs and len(logs) >= 20  # every job's log beside its benchmark (same name)
    assert all((completed_run / "logs" / f"{job}.log").stat().st_size > 0 for job in logs)
    assert "raw inventory: 13 tables of 5 studies" in (completed_run / "logs" / "harmonize" / "pool.log").read_text()


def raw_identifiers(workdir: Path) -> set[str]:
    """Every value of the demo's direct-identifier columns, as it appears in the raw files."""
    from ipdpool.demo.generate import build_demo

    columns = {
        "name",
        "hospno",
        "navn",
        "cpr",
        "bemærkning",
        "Namn",
        "Personnummer",
        "naam",
        "bsn",
        "ssn",
        "dob",
        "notes",
        "staff_notes",
    }
    found = set()
    for export in build_demo().exports.values():
        for raw in export.files:
            for frame in raw.sheets.values():
                for column in columns & set(frame.columns):
                    found |= {
                        v.isoformat() if hasattr(v, "isoformat") else str(v)
                        for v in frame[column]
                        if v is not None and len(str(v).strip()) >= 6
                    }
    return found


def output_text(path: Path) -> str:
    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_csv(index=False)
    return path.read_bytes().decode("utf-8", errors="replace")


def test_no_direct_identifier_reaches_results_or_logs(completed_run):
    identifiers = raw_identifiers(completed_run)
    assert len(identifiers) > 2000  # names, national ids, birth dates, notes: the scan has something to find
    leaked = []
    for folder in ("results", "logs"):
        for path in (completed_run / folder).rglob("*"):
            if path.is_file():
                text = output_text(path)
                leaked += [(str(path), value) for value in identifiers if value in text and stands_alone(value, text)]
    assert leaked == []


def stands_alone(value: str, text: str) -> bool:
    """Whether `value` occurs in `text` as a token of its own: a 9-digit national id can occur among
    the digits of a released float (103.18590556869016), which is no leak."""

    def glued(edge: str, neighbour: str) -> bool:  # digits run on into digits, letters into letters
        return bool(neighbour) and (edge.isdigit() and neighbour.isdigit() or edge.isalpha() and neighbour.isalpha())

    for match in re.finditer(re.escape(value), text):
        before, after = text[match.start() - 1 : match.start()], text[match.end() : match.end() + 1]
        if not glued(value[0], before) and not glued(value[-1], after):
            return True
    return False


def test_harmonized_outputs_for_every_study_and_the_pool(completed_run):
    pooled = pd.read_parquet(completed_run / "results" / "harmonized" / "pooled.parquet")
    assert len(pooled) == 312 + 720 + 120 + 151 + 204
    assert pooled["participant_id"].is_unique
    assert pooled.groupby("study").size().to_dict() == {"DK": 720, "EU6": 312, "NL": 151, "SE": 120, "US": 204}
    csv = pd.read_csv(completed_run / "results" / "harmonized" / "pooled.csv")
    assert list(csv.columns) == list(pooled.columns) and len(csv) == len(pooled)
    for study in ["EU6", "DK", "SE", "NL", "US"]:
        path = completed_run / "results" / "harmonized" / f"{study}.parquet"
        assert path.stat().st_mode & 0o777 == 0o600  # participant-level: owner only
        for table in ("rule_log", "flow", "arm_counts"):
            assert (completed_run / "results" / "audit" / study / f"{table}.tsv").stat().st_size > 0
        assert (completed_run / "results" / "audit" / study / "distributions.svg").read_text().startswith("<?xml")
    status = pd.read_csv(completed_run / "results" / "audit" / "status_matrix.tsv", sep="\t").set_index("study")
    assert status.loc["EU6", "self_esteem_bl"] == "not_collected" and status.loc["SE", "self_esteem_bl"] == "harmonized"
    flow = pd.read_csv(completed_run / "results" / "audit" / "flow.tsv", sep="\t")
    assert flow.query("study == 'all' and stage == 'randomized participants'")["total"].item() == len(pooled)
    codebook = pd.read_csv(completed_run / "results" / "harmonized" / "codebook.tsv", sep="\t")
    assert list(codebook["column"]) == list(pooled.columns)


def test_one_stage_tables_and_the_headline_replication(completed_run):
    tables = completed_run / "results" / "tables"
    one_stage = pd.read_csv(tables / "one_stage.tsv", sep="\t")
    assert len(one_stage) == 8 * (1 + 1 + 4)  # outcomes x reported contrasts of the three models
    assert (one_stage["status"] == "estimated").all()
    sensitivity = pd.read_csv(tables / "sensitivity.tsv", sep="\t")
    assert {
        "study_fixed_effect",
        "within_between",
        "random_slope_employed",
        "ml",
        "unadjusted",
        "covariates",
        "centre_within_study",
        "leave_out_DK",
    } <= set(sensitivity["variant"])
    # The demo's centres: DK 3, EU6 6, NL 4; SE and US name one site each.
    nested = sensitivity[sensitivity["variant"] == "centre_within_study"]
    assert len(nested) == len(one_stage) and (nested["status"] == "estimated").all()
    assert nested["warnings"].str.contains("centres per study: ").all()
    assert nested["warnings"].str.contains("EU6 6").any() and not nested["warnings"].str.contains("one centre").any()
    replication = pd.read_csv(tables / "replication.tsv", sep="\t").set_index("outcome")
    # The demo was generated to match the published SMDs: each headline estimate lies in its published CI.
    for outcome in ("negative_symptoms", "functioning", "quality_of_life"):
        assert replication.loc[outcome, "within_published_ci"] == True  # noqa: E712
    assert replication["true_smd"].notna().all()


def test_two_stage_aggregate_figures_and_summary(completed_run):
    tables = completed_run / "results" / "tables"
    per_study = pd.read_csv(tables / "per_study.tsv", sep="\t")
    assert {"study", "outcome", "contrast", "estimate", "se", "ci_low", "ci_high", "n", "df"} <= set(per_study.columns)
    two_stage = pd.read_csv(tables / "two_stage.tsv", sep="\t")
    assert set(two_stage["method"]) == {"REML", "DL", "PM", "FE"} and set(two_stage["hksj"]) == {True, False}
    assert len(pd.read_csv(tables / "leave_one_out.tsv", sep="\t")) > 0
    aggregate = pd.read_csv(tables / "aggregate_meta.tsv", sep="\t")
    assert set(aggregate["analysis"]) == {"aggregate_only", "ipd_where_available"}
    figures = completed_run / "results" / "figures"
    for outcome in ("functioning", "anxiety"):
        for stem in ("employed__employed", "ips__ips", "ips_x_employed__ips_x_employed"):
            assert (figures / "forest" / outcome / f"{stem}.svg").read_text().startswith("<?xml")
            assert not (figures / "forest" / outcome / f"{stem}.png").exists()  # SVG only, as config.yaml says
    assert (figures / "participant_flow.svg").is_file() and (figures / "harmonization_status.svg").is_file()
    summary = (completed_run / "results" / "summary.md").read_text()
    assert "| Functioning | 5 | 1141 |" in summary and "0.59 (0.42, 0.77)" in summary
    assert "(REML; inference: t (Satterthwaite))" in summary  # the demo's analysis.ddf


def test_changing_one_rule_file_reruns_only_that_study(completed_run):
    rule_file = completed_run / "config" / "studies" / "SE.yaml"
    original, stamp = rule_file.read_text(encoding="utf-8"), rule_file.stat()
    rule_file.write_text(original + "\n", encoding="utf-8")
    result = snakemake(completed_run, "--cores", "1", "--dry-run")
    assert result.returncode == 0, result.stderr[-2000:]
    planned = result.stdout
    assert "study: SE" in planned or "study=SE" in planned
    for other in ("EU6", "DK", "NL", "US"):
        assert f"study: {other}" not in planned and f"study={other}" not in planned
    assert "rule pool:" in planned or "pool" in planned
    # Undo the edit, time stamp included, rather than re-running the whole workflow for the
    # tests that share the completed run.
    rule_file.write_text(original, encoding="utf-8")
    os.utime(rule_file, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    restored = snakemake(completed_run, "--cores", "1", "--dry-run")
    assert "Nothing to be done" in restored.stdout + restored.stderr


@pytest.mark.parametrize(
    ("setting", "refitted"),
    [
        ("analysis:\n  ddf: kenward_roger\n", {"outcome_models"}),
        # the aggregate-data meta-analysis has prediction intervals too
        ("analysis:\n  prediction_interval: metafor\n", {"outcome_models", "aggregate_meta"}),
    ],
)
def test_a_change_of_inference_settings_refits_the_models_only(completed_run, tmp_path, setting, refitted):
    (tmp_path / "setting.yaml").write_text(setting)
    result = snakemake(completed_run, "--dry-run", "--configfile", "config/config.yaml", str(tmp_path / "setting.yaml"))
    assert result.returncode == 0, result.stderr[-2000:]
    planned = set(re.findall(r"^(?:local)?rule (\w+):$", result.stdout, flags=re.M))
    assert refitted <= planned
    upstream = {"harmonize_study", "study_statistics", "table1", "aggregate_meta", "pool", "audit_plots"}
    assert not planned & (upstream - refitted), planned


def test_second_run_has_nothing_to_do(completed_run):
    result = snakemake(completed_run, "--cores", "2", "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_mistyped_config_key_fails_at_start_up_naming_key_and_place(tmp_path):
    workdir = copy_workflow(tmp_path)
    config = workdir / "config" / "config.yaml"
    config.write_text(config.read_text().replace("  min_studies: 2", "  min_studys: 2"))
    result = snakemake(workdir, "--cores", "1", "--dry-run")
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert (
        "config (config/config.yaml): 1 problem(s):\n"
        "  - analysis: unknown key `min_studys` (did you mean `min_studies`?); allowed keys: outcomes, min_studies,"
    ) in output
    assert "$schema" not in output and "description" not in output  # the schema itself is not dumped


def test_every_config_violation_is_listed_once_per_file(tmp_path):
    workdir = copy_workflow(tmp_path)
    (workdir / "extra.yaml").write_text("figures:\n  formats: [jpg]\ndisclosure:\n  min_count: -1\n")
    result = snakemake(workdir, "--dry-run", "--configfile", "config/config.yaml", "extra.yaml")
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "config (config/config.yaml, extra.yaml): 2 problem(s):" in output
    assert "  - disclosure.min_count: " in output
    assert "  - figures.formats.0: 'jpg' is not allowed (did you mean `png`?); allowed values: svg, png" in output


def test_a_config_naming_a_missing_rule_file_fails_at_start_up(workdir, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("studies:\n  XX: config/studies/XX.yaml\n")
    result = snakemake(workdir, "--cores", "1", "--dry-run", "--configfile", str(config))
    assert result.returncode != 0
    assert (
        "study XX: rule file config/studies/XX.yaml named in the config does not exist" in result.stderr + result.stdout
    )
