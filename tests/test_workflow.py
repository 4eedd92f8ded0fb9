"""The walking skeleton: `snakemake --cores N` runs end to end on the demo."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.workflow

WORKFLOW_PARTS = ["Snakefile", "workflow", "config", "profiles", "resources"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, repo_root):
    """A copy of the workflow and demo in a fresh folder (no results yet)."""
    target = tmp_path_factory.mktemp("run")
    for part in WORKFLOW_PARTS:
        source = repo_root / part
        if source.is_dir():
            shutil.copytree(source, target / part)
        else:
            shutil.copy2(source, target / part)
    return target


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def completed_run(workdir):
    result = snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


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
    for study in ["EU6", "DK", "SE", "NL", "US"]:
        assert (completed_run / "logs" / "inventory" / f"{study}.log").stat().st_size > 0
        assert (completed_run / "benchmarks" / "inventory" / f"{study}.tsv").is_file()
    assert "raw tables from 5 studies" in (completed_run / "logs" / "inventory" / "all.log").read_text()


def test_second_run_has_nothing_to_do(completed_run):
    result = snakemake(completed_run, "--cores", "2", "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_config_naming_a_missing_rule_file_fails_at_start_up(workdir, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("studies:\n  XX: config/studies/XX.yaml\n")
    result = snakemake(workdir, "--cores", "1", "--dry-run", "--configfile", str(config))
    assert result.returncode != 0
    assert "study XX: rule file config/studies/XX.yaml named in the config does not exist" in result.stderr + result.stdout
