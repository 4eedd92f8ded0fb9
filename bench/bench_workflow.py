"""Benchmark: the demo workflow end to end, `snakemake --cores 4` from a clean results/, then a no-op re-run
and a dry run (`snakemake -n`). Prints wall seconds, CPU seconds (of snakemake and every job it ran), the
number of jobs, and the cost per rule from the jobs' benchmark files (count, wall and CPU seconds), which is
what job granularity is chosen by. Targets (issue 14, idle 2-core machine): clean run <= 30 s wall and
<= 40 CPU-s; no-op re-run and dry run <= 1.5 s each. On a shared machine the CPU seconds are the figure to
compare; wall times grow with the other load.

Usage: python bench/bench_workflow.py [--cores 4]
"""

import argparse
import csv
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTS = ["Snakefile", "workflow", "config", "profiles", "resources"]


def timed(command: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall s, CPU s of the command and its children, stderr)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, done.stderr + done.stdout


def jobs_done(output: str) -> int:
    """The job count from snakemake's last 'N of M steps (100%) done' line."""
    counts = re.findall(r"(\d+) of \d+ steps \(100%\) done", output)
    return int(counts[-1]) if counts else 0


def per_rule(benchmarks: Path) -> dict[str, list[float]]:
    """Rule folder under benchmarks/ -> [jobs, wall s, CPU s] summed over its jobs' benchmark files."""
    costs: dict[str, list[float]] = {}
    for path in sorted(benchmarks.rglob("*.tsv")):
        with path.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        sums = costs.setdefault(str(path.parent.relative_to(benchmarks)), [0, 0.0, 0.0])
        sums[0], sums[1], sums[2] = sums[0] + 1, sums[1] + float(row["s"]), sums[2] + float(row["cpu_time"])
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", default="4")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for part in PARTS:
            (shutil.copytree if (REPO / part).is_dir() else shutil.copy2)(REPO / part, work / part)
        command = [sys.executable, "-m", "snakemake", "--cores", args.cores]
        full, full_cpu, output = timed(command, work)
        noop, noop_cpu, _ = timed(command, work)
        dry, dry_cpu, _ = timed([*command, "-n"], work)
        costs = per_rule(work / "benchmarks")
    clean = f"{full:.1f} s wall, {full_cpu:.1f} CPU-s, {jobs_done(output)} jobs"
    print(f"clean run, snakemake --cores {args.cores}: {clean}")
    print(f"no-op re-run: {noop:.2f} s wall, {noop_cpu:.2f} CPU-s")
    print(f"snakemake -n (after the run): {dry:.2f} s wall, {dry_cpu:.2f} CPU-s")
    print(f"\n{'benchmarks/ folder':<22} {'jobs':>4} {'wall_s':>7} {'cpu_s':>6} {'cpu_s/job':>9}")
    for rule, (jobs, wall, cpu) in sorted(costs.items(), key=lambda item: -item[1][2]):
        print(f"{rule:<22} {jobs:>4.0f} {wall:>7.1f} {cpu:>6.1f} {cpu / jobs:>9.2f}")
    jobs, wall, cpu = (sum(column) for column in zip(*costs.values()))
    print(f"{'all':<22} {jobs:>4.0f} {wall:>7.1f} {cpu:>6.1f}  (jobs only; the rest is snakemake)")


if __name__ == "__main__":
    main()
