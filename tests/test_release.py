"""A release people can cite: CITATION.cff valid for the Citation File Format 1.2.0, its version the package's,
and a CHANGELOG entry for it.

The CFF is checked twice. Against the official 1.2.0 JSON Schema kept in tests/data (copied from the
cffconvert 2.0.0 wheel) with the project's own jsonschema, always; and by cffconvert itself, which pins
jsonschema 3.2 and so cannot share requirements.lock (jsonschema 4): it runs from a venv of its own, built
here from requirements-cffconvert.lock (exact pins, no resolver). Without a package index that venv
cannot be built: the test is skipped, except under CI=true where that is a failure.
"""

import json
import os
import subprocess
import sys
import tomllib

import jsonschema
import pytest
import yaml

import ipdpool


def test_citation_file_is_valid_cff_1_2_0_and_carries_the_package_version(repo_root):
    citation = yaml.safe_load((repo_root / "CITATION.cff").read_text(encoding="utf-8"))
    schema = json.loads((repo_root / "tests/data/citation-file-format-1.2.0.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    assert [error.message for error in validator.iter_errors(citation)] == []
    # The check can fail: the same file without its authors is refused.
    assert list(validator.iter_errors({k: v for k, v in citation.items() if k != "authors"}))
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    assert str(citation["version"]) == project["version"] == ipdpool.__version__


def test_changelog_describes_this_release(repo_root):
    changelog = (repo_root / "CHANGELOG.md").read_text(encoding="utf-8")
    heading = next(line for line in changelog.splitlines() if line.startswith("## "))
    assert heading.startswith(f"## {ipdpool.__version__} ")  # the newest entry is this version's


@pytest.fixture(scope="module")
def cffconvert(repo_root, tmp_path_factory):
    venv = tmp_path_factory.mktemp("cffconvert") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    lock = repo_root / "requirements-cffconvert.lock"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "--quiet",
         "--disable-pip-version-check", "--no-deps", "-r", str(lock)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if install.returncode != 0:
        message = f"cannot build the cffconvert venv from {lock.name}: {install.stderr[-500:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return venv / "bin" / "cffconvert"


def test_cffconvert_validates_the_citation_file(cffconvert, repo_root, tmp_path):
    ok = subprocess.run([cffconvert, "--validate", "-i", repo_root / "CITATION.cff"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "valid according to schema version 1.2.0" in ok.stdout
    broken = tmp_path / "CITATION.cff"
    broken.write_text((repo_root / "CITATION.cff").read_text().replace("authors:", "author:"))
    refused = subprocess.run([cffconvert, "--validate", "-i", broken], capture_output=True, text=True)
    assert refused.returncode != 0
