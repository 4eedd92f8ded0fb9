"""Snakemake's linter, snakefmt and ruff: the workflow and the code follow the conventions
(ruff's rules and line length are set in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("snakefile", ["Snakefile", "workflow/simulation/Snakefile"])
def test_snakemake_lint_reports_nothing(repo_root, snakefile):
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", snakefile, "--lint"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_snakefmt_check_passes(repo_root):
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "workflow"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_passes(repo_root, command):
    result = subprocess.run(
        [str(BIN / "ruff"), *command, "."], cwd=repo_root, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr
