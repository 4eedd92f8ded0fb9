import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from ipdpool.demo.generate import build_demo

# Under CI the property tests draw the same examples on every run, so a landing is decided by the
# code and not by the draw; a counterexample found elsewhere goes into the test as an @example.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return DEMO


@pytest.fixture(scope="session")
def demo():
    """The demo rebuilt in memory (latent data, raw tables and per-participant truth)."""
    return build_demo()


WORKFLOW_PARTS = ["Snakefile", "workflow", "config", "profiles", "resources"]


# Workflow runs in the tests impute m = 2 times with a three-point tipping grid: the jobs and
# tables are the same, while the configured m = 20 would add over a CPU-minute to every full run
# (the imputation itself is tested in tests/test_imputation*.py).
LIGHT_IMPUTATION = """multiple_imputation:
  imputations: 2
  chunk_size: 1
  iterations: 3
  tipping_point:
    deltas: [-1, 0, 1]
    groups: [IPS, employed]
    imputations: 2
"""


def light_imputation(config: Path) -> None:
    text = config.read_text()
    light, count = re.subn(r"^multiple_imputation:\n(?:[ #].*\n)+", LIGHT_IMPUTATION, text, flags=re.MULTILINE)
    assert count == 1, "config/config.yaml has no multiple_imputation block to lighten"
    config.write_text(light)


def copy_workflow(target: Path) -> Path:
    """The workflow, its config (imputation lightened) and the demo copied into `target` (no results yet)."""
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, target / part)
        else:
            shutil.copy2(source, target / part)
    light_imputation(target / "config" / "config.yaml")
    return target


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("run"))


def snakemake(
    workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Snakemake from this venv in `workdir`; `env` adds environment variables."""
    env = dict(os.environ, **(env or {}), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def completed_run(workdir):
    result = snakemake(workdir, "--cores", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


# CI installs Chromium and R and starts the test cluster, so there a skipped SLURM, browser
# or R reference test means a missing setup step: it fails instead. The tests of each kind
# that ran are counted into IPDPOOL_TEST_COUNTS (JSON) for .ci/run to print.
CHECKED_KINDS = ("slurm", "browser", "r_reference")
RAN = {kind: 0 for kind in CHECKED_KINDS}


def kinds_of(item) -> list[str]:
    kinds = [kind for kind in ("slurm", "browser") if item.get_closest_marker(kind)]
    if getattr(item.module, "run_r", None) is not None:  # the module calls R through tests/rscript.py
        kinds.append("r_reference")
    return kinds


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    kinds = kinds_of(item)
    if not kinds:
        return
    if report.skipped and os.environ.get("CI") == "true":
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true ({', '.join(kinds)} test): {report.longrepr}"
    elif report.when == "call":
        for kind in kinds:
            RAN[kind] += 1


def pytest_sessionfinish(session):
    path = os.environ.get("IPDPOOL_TEST_COUNTS")
    if path:
        Path(path).write_text(json.dumps(RAN) + "\n")
