"""The simulation study: scenarios as configured, reproducible replicates whatever the
chunking, performance measures against known truth, and the same workflow locally and on
the test SLURM cluster."""

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, snakemake

from ipdpool.simulation import run_chunk, seed_for, simulate_trials, summarize

SCENARIO = {
    "name": "s",
    "studies": 6,
    "participants": [30, 90],
    "tau2": 0.1,
    "employment_rate": 0.25,
    "smd": 0.3,
    "attrition": 0.2,
}


def test_simulated_trials_follow_the_scenario():
    data = pd.concat([simulate_trials(seed_for(0, r), SCENARIO) for r in range(40)], ignore_index=True)
    sizes = data.groupby(["study"]).size() / 40
    assert data["study"].nunique() == 6 and sizes.between(30, 90).all()
    assert abs(data["o_fu_z"].isna().mean() - 0.2) < 0.02
    assert abs(data["employed"].mean() - 0.25) < 0.05  # the logit intercept sets the rate, give or take the covariates
    assert set(data["arm"]) == {"IPS", "SAU"}


def test_replicates_do_not_depend_on_the_chunking():
    whole = run_chunk(0, SCENARIO, range(0, 4))
    parts = pd.concat([run_chunk(0, SCENARIO, range(0, 2)), run_chunk(0, SCENARIO, range(2, 4))], ignore_index=True)
    pd.testing.assert_frame_equal(whole, parts)
    assert not whole.equals(run_chunk(1, SCENARIO, range(0, 4)))  # another scenario, other draws


def test_performance_measures_recover_known_values():
    """Estimates drawn with known bias 0.1 and SD 0.2, intervals covering with probability 0.9:
    each measure within 4 of its own Monte Carlo SEs of the truth."""
    rng = np.random.default_rng(3)
    n = 4000
    estimate = 0.5 + 0.1 + rng.normal(0, 0.2, n)
    covered = rng.random(n) < 0.9
    results = pd.DataFrame(
        {
            "scenario": "s",
            "method": "m",
            "replicate": range(n),
            "truth": 0.5,
            "estimate": estimate,
            "se": 0.2,
            "covered": covered,
        }
    )
    row = summarize(results, [{**SCENARIO, "smd": 0.5}]).iloc[0]
    assert abs(row["bias"] - 0.1) < 4 * row["bias_mcse"]
    assert abs(row["empirical_se"] - 0.2) < 4 * row["empirical_se_mcse"]
    assert abs(row["coverage"] - 0.9) < 4 * row["coverage_mcse"]
    assert row["replicates"] == row["estimated"] == n


SLURM = shutil.which("sinfo") is not None and subprocess.run(["sinfo"], capture_output=True).returncode == 0
needs_slurm = pytest.mark.skipif(not SLURM, reason="no SLURM cluster running (.ci/slurm/start starts one)")
# The user profile (account and partition from the environment) with the test cluster's layer.
SLURM_PROFILES = ["--profile", str(REPO / "profiles" / "slurm"), "--profile", str(REPO / ".ci" / "slurm" / "profile")]
SLURM_SITE = {"SBATCH_ACCOUNT": "root", "SBATCH_PARTITION": "main"}

TINY = {
    "replicates": 4,
    "chunk_size": 2,
    "scenarios": [
        {
            "name": "five",
            "studies": 5,
            "participants": [40, 80],
            "tau2": 0.05,
            "employment_rate": 0.4,
            "smd": 0.4,
            "attrition": 0.1,
        },
        {
            "name": "three",
            "studies": 3,
            "participants": 50,
            "tau2": 0.0,
            "employment_rate": 0.3,
            "smd": 0.2,
            "attrition": 0.0,
        },
    ],
}


def simulation_workdir(path):
    for part in ("workflow", "config", "profiles"):
        shutil.copytree(REPO / part, path / part)
    (path / "config" / "simulation.yaml").write_text(yaml.safe_dump(TINY))
    return path


@pytest.mark.workflow
def test_the_simulation_workflow_runs_locally_in_chunks(tmp_path):
    workdir = simulation_workdir(tmp_path)
    done = snakemake(workdir, "-s", "workflow/simulation/Snakefile", "--cores", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((workdir / "results" / "simulation" / "chunks").glob("*/*.tsv"))) == 4
    summary = pd.read_csv(workdir / "results" / "simulation" / "summary.tsv", sep="\t")
    assert len(summary) == 2 * 4 and (summary["replicates"] == 4).all()
    assert (workdir / "results" / "simulation" / "coverage.png").stat().st_size > 0


@pytest.mark.slurm
@needs_slurm
def test_the_same_simulation_workflow_runs_on_the_test_cluster(tmp_path):
    local, cluster = simulation_workdir(tmp_path / "local"), simulation_workdir(tmp_path / "cluster")
    assert snakemake(local, "-s", "workflow/simulation/Snakefile", "--cores", "2").returncode == 0
    done = snakemake(cluster, "-s", "workflow/simulation/Snakefile", *SLURM_PROFILES, env=SLURM_SITE)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "submitted with SLURM jobid" in done.stdout + done.stderr
    for name in ("summary.tsv",):
        assert (cluster / "results" / "simulation" / name).read_bytes() == (
            local / "results" / "simulation" / name
        ).read_bytes()
