import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ipdpool.demo.generate import build_demo

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


def copy_workflow(target: Path) -> Path:
    """The workflow, its config and the demo copied into `target` (no results yet)."""
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, target / part)
        else:
            shutil.copy2(source, target / part)
    return target


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("run"))


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def completed_run(workdir):
    result = snakemake(workdir, "--cores", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


