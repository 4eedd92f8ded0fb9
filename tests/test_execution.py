"""Execution: byte-identical results whatever the cores, after a killed run, and on SLURM."""

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_workflow, snakemake

pytestmark = pytest.mark.workflow

RESULT_GLOBS = ["results/tables/*.tsv", "results/summary.md", "results/harmonized/*.csv", "results/audit/*.tsv", "results/audit/*/*.tsv"]


def result_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for pattern in RESULT_GLOBS for p in sorted(root.glob(pattern))}


def assert_identical(run: Path, reference: Path) -> None:
    ours, theirs = result_files(run), result_files(reference)
    assert sorted(ours) == sorted(theirs) and len(ours) >= 30
    differing = [name for name in ours if ours[name] != theirs[name]]
    assert differing == []


def test_a_killed_single_core_run_restarts_and_equals_an_uninterrupted_four_core_run(tmp_path, completed_run):
    workdir = copy_workflow(tmp_path)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [sys.executable, "-m", "snakemake", "--cores", "1"]
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (workdir / "results" / "harmonized" / "pooled.parquet").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, "the run finished before it could be interrupted"
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (workdir / "results" / "summary.md").exists()  # it really stopped midway
    result = snakemake(workdir, "--cores", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_identical(workdir, completed_run)


SLURM = shutil.which("sinfo") is not None and subprocess.run(["sinfo"], capture_output=True).returncode == 0


@pytest.mark.slurm
@pytest.mark.skipif(not SLURM, reason="no SLURM cluster running (.ci/slurm/start starts one)")
def test_the_slurm_profile_runs_every_job_on_slurm_with_identical_results(tmp_path, completed_run):
    workdir = copy_workflow(tmp_path)
    started = (dt.datetime.now() - dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S")
    result = snakemake(workdir, "--profile", "profiles/slurm")
    assert result.returncode == 0, result.stderr[-3000:]
    accounting = subprocess.run(["sacct", "-X", "-n", "-P", "-S", started, "-o", "JobName,State,Comment"], capture_output=True, text=True, check=True).stdout
    states = [line.split("|")[1] for line in accounting.splitlines() if line]
    # every non-local job: 5 studies x (inventory, harmonize, plots) + 8 outcomes x (one-stage, two-stage, forests) + aggregate + data figures
    assert len(states) >= 5 * 3 + 8 * 3 + 2 and set(states) == {"COMPLETED"}, accounting
    assert "Job" in result.stderr + result.stdout and "slurm" in (result.stderr + result.stdout).lower()
    assert_identical(workdir, completed_run)
