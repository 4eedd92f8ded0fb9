"""Execution: byte-identical results whatever the cores, after a killed run, and on SLURM."""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.workflow

RESULT_GLOBS = [
    "results/tables/*.tsv",
    "results/summary.md",
    "results/harmonized/*.csv",
    "results/audit/*.tsv",
    "results/audit/*/*.tsv",
]


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
    process = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
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
needs_slurm = pytest.mark.skipif(not SLURM, reason="no SLURM cluster running (.ci/slurm/start starts one)")
# The user profile, with account and partition from the environment as the README tells
# users, and the test cluster's layer (quick status polling) on top.
SLURM_PROFILES = ["--profile", str(REPO / "profiles" / "slurm"), "--profile", str(REPO / ".ci" / "slurm" / "profile")]
SLURM_SITE = {"SBATCH_ACCOUNT": "root", "SBATCH_PARTITION": "main"}
SUBMITTED = re.compile(r"Job \S+ has been submitted with SLURM jobid (\d+)")


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    command = ["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobIdRaw,State"]
    accounting = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return dict(line.split("|")[:2] for line in accounting.splitlines() if line)


@pytest.mark.slurm
@needs_slurm
def test_the_user_slurm_profile_runs_the_demo_in_a_dozen_submissions_with_identical_results(tmp_path, completed_run):
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, *SLURM_PROFILES, env=SLURM_SITE, timeout=1200)  # 3-4 min on an idle 2-core CI machine
    assert result.returncode == 0, result.stderr[-3000:]
    job_ids = SUBMITTED.findall(result.stderr)
    # Studies and outcomes are grouped (profiles/slurm): about a dozen submissions, not 45.
    assert 8 <= len(job_ids) <= 14, result.stderr[-3000:]
    assert set(slurm_states(job_ids).values()) == {"COMPLETED"}
    assert " -A root" in result.stderr or "slurm_account=root" in result.stderr
    assert not list(workdir.glob("slurm-*.out"))  # job logs go to logs/slurm/, never the working directory
    assert_identical(workdir, completed_run)


FAILING_WORKFLOW = """
rule all:
    input:
        "cancelled.txt",
        "stepd_killed.txt",
        "timed_out.txt",


rule cancelled:
    output:
        "cancelled.txt",
    shell:
        "sleep {config[sleep]} && touch {output}"


rule stepd_killed:
    output:
        "stepd_killed.txt",
    resources:
        runtime=1,
    shell:
        "sleep {config[sleep]} && touch {output}"


rule timed_out:
    output:
        "timed_out.txt",
    resources:
        runtime=1,
    shell:
        "sleep {config[sleep]} && touch {output}"
"""


def processes() -> list[tuple[int, int, str]]:
    listing = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True, check=True).stdout
    return [
        (int(pid), int(ppid), args)
        for pid, ppid, args in (line.split(None, 2) for line in listing.splitlines() if len(line.split(None, 2)) == 3)
    ]


def stepd_pids(job_id: str) -> list[int]:
    """PIDs of the slurmstepd processes serving the job's batch script and its steps."""
    return [pid for pid, _, args in processes() if args.startswith(f"slurmstepd: [{job_id}.")]


def descendants(pids: list[int]) -> list[int]:
    found, children = set(pids), {}
    for pid, ppid, _ in processes():
        children.setdefault(ppid, []).append(pid)
    stack = list(pids)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return sorted(found - set(pids))


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slurm
@needs_slurm
def test_cancelled_killed_and_timed_out_slurm_jobs_fail_the_run_fast_and_a_rerun_completes(tmp_path):
    (tmp_path / "Snakefile").write_text(FAILING_WORKFLOW)
    log = tmp_path / "snakemake.log"
    env = dict(os.environ, **SLURM_SITE, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [
        sys.executable,
        "-m",
        "snakemake",
        *SLURM_PROFILES,
        "--retries",
        "0",
        "--keep-going",
        "--config",
        "sleep=600",
    ]
    orphans: list[int] = []
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        text = lambda: log.read_text()  # noqa: E731
        wait_for(lambda: len(SUBMITTED.findall(text())) == 3, 120, "three submissions")
        # "Job 1 has been submitted with SLURM jobid 13 (log: .../logs/slurm/rule_cancelled/13.log)."
        jobs = {rule: job_id for job_id, rule in re.findall(r"SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", text())}
        assert sorted(jobs) == ["cancelled", "stepd_killed", "timed_out"], text()

        def running(rule: str) -> bool:
            return slurm_states([jobs[rule]]).get(jobs[rule]) == "RUNNING"

        def failure_reported(rule: str) -> bool:
            return re.search(rf"Error in rule {rule}:(?:(?!\nError in rule ).)*{jobs[rule]}", text(), re.S) is not None

        # Two of the three jobs fit on the 2-CPU test node at once; each is hit once it runs.
        wait_for(lambda: running("cancelled"), 120, "the job to cancel running")
        subprocess.run(["scancel", jobs["cancelled"]], check=True)
        cancelled_at = time.monotonic()
        wait_for(lambda: failure_reported("cancelled"), 60, "the cancelled job reported as failed")
        assert time.monotonic() - cancelled_at < 60  # a polling interval or two of the test cluster's layer

        wait_for(lambda: running("stepd_killed"), 120, "the job whose slurmstepd is killed running")
        pids = wait_for(lambda: stepd_pids(jobs["stepd_killed"]), 30, "the job's slurmstepd")
        orphans = descendants(pids)  # the job's processes outlive their slurmstepd; ended below
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        # SLURM keeps such a job RUNNING (it no longer hears from it) until its time limit,
        # then records TIMEOUT: the runtime bounds how long a lost job goes unnoticed.
        wait_for(lambda: failure_reported("stepd_killed"), 240, "the job with a killed slurmstepd reported as failed")

        wait_for(lambda: failure_reported("timed_out"), 240, "the job over its runtime reported as failed")
        # Snakemake exits when the plugin's polling thread next wakes up. Plugin 2.8.0 lengthens its
        # polling interval by 10 s after every check in which no job completed (a failure does not
        # count), up to 180 s: after three failures it slept 61 s in one CI run.
        assert process.wait(timeout=200) != 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    states = slurm_states(list(jobs.values()))
    assert states[jobs["cancelled"]].startswith("CANCELLED"), states
    assert states[jobs["stepd_killed"]] == states[jobs["timed_out"]] == "TIMEOUT", states
    assert not any((tmp_path / f"{rule}.txt").exists() for rule in jobs)

    rerun = subprocess.run(
        [*command[:-1], "sleep=1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert all((tmp_path / f"{rule}.txt").exists() for rule in jobs)
