"""Benchmark: end-to-end `snakemake --cores 4` on the demo from a clean results/ (target under
60 s on the 2-core reference machine, start-up included) and a no-op re-run (target under 5 s).

Usage: python bench/bench_workflow.py [--cores 4]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTS = ["Snakefile", "workflow", "config", "profiles", "resources"]


def timed(command: list[str], cwd: Path) -> float:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cores", default="4")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for part in PARTS:
            (shutil.copytree if (REPO / part).is_dir() else shutil.copy2)(REPO / part, work / part)
        command = [sys.executable, "-m", "snakemake", "--cores", args.cores]
        full = timed(command, work)
        noop = timed(command, work)
    print(f"snakemake --cores {args.cores} from a clean results/: {full:.1f} s (target < 60 s)")
    print(f"no-op re-run: {noop:.1f} s (target < 5 s)")


if __name__ == "__main__":
    main()
