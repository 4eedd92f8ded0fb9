"""The Snakefile parse and `import ipdpool` stay light: every job and every dry run pays for
them, so the heavy libraries are imported only where they are used."""

import subprocess
import sys

import pytest

HEAVY = ("matplotlib", "statsmodels", "linearmodels", "scipy.stats", "pandera")

REPORT = f"""
import atexit, sys
atexit.register(lambda: print("LOADED:" + ",".join(sorted(m for m in {HEAVY!r} if m in sys.modules))))
"""


def loaded_after(code: str, cwd) -> list[str]:
    done = subprocess.run([sys.executable, "-c", REPORT + code], cwd=cwd, capture_output=True, text=True, timeout=300)
    line = [text for text in (done.stdout + done.stderr).splitlines() if text.startswith("LOADED")]
    assert line, done.stderr[-2000:]
    return [name for name in line[-1].removeprefix("LOADED:").split(",") if name]


def test_import_ipdpool_is_light(repo_root):
    assert loaded_after("import ipdpool", repo_root) == []


@pytest.mark.parametrize("snakefile", ["Snakefile", "workflow/simulation/Snakefile"])
def test_the_snakefile_parse_is_light(repo_root, snakefile):
    code = f"sys.argv = ['snakemake', '-s', {snakefile!r}, '-n', '--quiet']\nfrom snakemake.cli import main\nmain()"
    assert loaded_after(code, repo_root) == []
