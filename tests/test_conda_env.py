"""workflow/envs/ipdpool.yaml (for `snakemake --sdm conda`) installs the lock file's pins and
the package from any conda prefix.

No conda here, so the pip section is handled as conda does it: written line by line into
a requirements file inside the prefix (Snakemake copies the environment file there) and
read by pip from that folder. pip's own parser reads it; installing it into a fresh venv
(done once by hand, see the README) takes minutes, too long for every test run.
"""

import os
import subprocess
import sys

import yaml
from conftest import REPO
from pip._internal.network.session import PipSession
from pip._internal.req.req_file import parse_requirements

ENV_FILE = REPO / "workflow" / "envs" / "ipdpool.yaml"


def lock_pins() -> set[str]:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    return {line.strip().lower() for line in lines if line.strip() and not line.startswith("#")}


def test_the_pip_section_reads_as_the_lock_and_the_package_from_a_prefix_outside_the_repository(tmp_path, monkeypatch):
    dependencies = yaml.safe_load(ENV_FILE.read_text())["dependencies"]
    specs = next(entry["pip"] for entry in dependencies if isinstance(entry, dict))
    prefix = tmp_path / "elsewhere" / "conda"
    prefix.mkdir(parents=True)
    requirements = prefix / "condaenv.abc123.requirements.txt"
    requirements.write_text("\n".join(specs))
    monkeypatch.chdir(prefix)
    monkeypatch.setenv("IPDPOOL_ROOT", str(REPO))
    parsed = list(parse_requirements(str(requirements), session=PipSession()))
    pins = {entry.requirement.lower() for entry in parsed if not entry.is_editable}
    editable = [entry.requirement for entry in parsed if entry.is_editable]
    assert pins == lock_pins()
    assert editable == [str(REPO)]


def test_the_workflow_tells_pip_where_it_is():
    report = (
        "import atexit, os, sys; atexit.register(lambda: print('IPDPOOL_ROOT=' + os.environ.get('IPDPOOL_ROOT', '')))"
    )
    code = f"{report}; from snakemake.cli import main; sys.argv = ['snakemake', '--list-rules']; main()"
    env = {key: value for key, value in os.environ.items() if key != "IPDPOOL_ROOT"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"IPDPOOL_ROOT={REPO}" in result.stdout.splitlines()
