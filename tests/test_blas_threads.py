"""BLAS threads per job: the workflow declares no BLAS settings of its own because Snakemake sets
OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS to each job's `threads` for `script:` rules
(locally and inside SLURM jobs, which run Snakemake too). Checked here, so that an upgrade that drops
it fails a test instead of letting every job start one BLAS thread per core."""

from pathlib import Path

from conftest import snakemake

SNAKEFILE = """
rule all:
    input:
        "one.txt",
        "two.txt",


rule env:
    output:
        "{name}.txt",
    threads: lambda wildcards: 2 if wildcards.name == "two" else 1
    script:
        "env.py"
"""

SCRIPT = """
import os
from pathlib import Path

names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
Path(snakemake.output[0]).write_text(" ".join(os.environ.get(name, "-") for name in names))
"""


def test_script_jobs_get_blas_threads_from_threads(tmp_path: Path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "env.py").write_text(SCRIPT)
    result = snakemake(tmp_path, "--cores", "2", env={"OMP_NUM_THREADS": "7", "OPENBLAS_NUM_THREADS": "7"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "one.txt").read_text() == "1 1 1"
    assert (tmp_path / "two.txt").read_text() == "2 2 2"
