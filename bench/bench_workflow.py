"""Benchmark: the demo workflow end to end, `snakemake --cores 4` from a clean results/, then no-op re-runs
and dry runs (`snakemake -n`). Prints wall seconds, CPU seconds (of snakemake and every job it ran), the
number of jobs, the share of the CPU seconds that is interpreter start-up and imports, and the cost per rule
from the jobs' benchmark files (count, wall and CPU seconds), which is what job granularity is chosen by.
Targets (issue 14, idle 2-core machine): clean run <= 30 s wall and <= 40 CPU-s; no-op re-run and dry run
<= 1.5 s each. The floor lines run the same no-op and dry run on a workflow of one shell rule: what
Snakemake itself costs in this environment, whatever the workflow. Each figure is the median of --clean
clean runs (each from an empty folder) or of --repeat no-op and dry runs: on this virtual machine one run's
CPU seconds vary by up to 20%. On a shared machine
the CPU seconds are the figure to compare; wall times grow with the other load.

The import share: each job's script is started in a fresh interpreter that only runs the script's imports
(the cheapest of three tries), times the number of jobs of its rule, over the clean run's CPU seconds.

Usage: python bench/bench_workflow.py [--cores 4] [--clean 3] [--repeat 5]
"""

import argparse
import csv
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
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


def jobs_by_rule(output: str) -> Counter:
    """Jobs run per rule, from snakemake's "rule X:" / "localrule X:" lines (the target rule `all` is no job)."""
    return Counter(name for name in re.findall(r"^(?:local)?rule (\w+):$", output, flags=re.M) if name != "all")


def rule_scripts(workflow: Path) -> dict[str, Path]:
    """Rule name -> the script it runs, from the rule files."""
    scripts = {}
    for path in sorted((workflow / "rules").glob("*.smk")):
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", path.read_text(), flags=re.M | re.S):
            found = re.search(r'script:\s*"([^"]+)"', body)
            if found:
                scripts[name] = (path.parent / found.group(1)).resolve()
    return scripts


def import_seconds(script: Path, tries: int = 3) -> float:
    """CPU seconds of a fresh interpreter that runs only the script's top-level imports, with one BLAS
    thread as Snakemake gives a one-thread job (more threads make importing numpy dearer)."""
    imports = "\n".join(line for line in script.read_text().splitlines() if re.match(r"(import|from) \S", line))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    costs = []
    for _ in range(tries):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", imports], check=True, capture_output=True, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        costs.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(costs)


def per_rule(benchmarks: Path) -> dict[str, list[float]]:
    """Rule folder under benchmarks/ -> [jobs, wall s, CPU s] summed over its jobs' benchmark files."""
    costs: dict[str, list[float]] = {}
    for path in sorted(benchmarks.rglob("*.tsv")):
        with path.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        sums = costs.setdefault(str(path.parent.relative_to(benchmarks)), [0, 0.0, 0.0])
        sums[0], sums[1], sums[2] = sums[0] + 1, sums[1] + float(row["s"]), sums[2] + float(row["cpu_time"])
    return costs


def copy_workflow(work: Path) -> Path:
    for part in PARTS:
        (shutil.copytree if (REPO / part).is_dir() else shutil.copy2)(REPO / part, work / part)
    return work


# Snakemake's own floor: the same no-op and dry run on a workflow of one shell rule, in this environment
# (Snakemake imports every installed executor plugin at start-up, the SLURM one with pandas).
TRIVIAL_WORKFLOW = """rule all:
    input:
        "done.txt",


rule touch:
    output:
        "done.txt",
    shell:
        "touch {output}"
"""


def floor_runs(command: list[str], repeat: int) -> tuple[list, list]:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "Snakefile").write_text(TRIVIAL_WORKFLOW)
        timed(command, work)
        return [timed(command, work)[:2] for _ in range(repeat)], [
            timed([*command, "-n"], work)[:2] for _ in range(repeat)
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", default="4")
    parser.add_argument("--clean", type=int, default=3, help="clean runs, each in a new folder (median printed)")
    parser.add_argument("--repeat", type=int, default=5, help="no-op and dry runs, each (median printed)")
    args = parser.parse_args()
    command = [sys.executable, "-m", "snakemake", "--cores", args.cores]
    cleans = []
    for _ in range(args.clean - 1):
        with tempfile.TemporaryDirectory() as folder:
            cleans.append(timed(command, copy_workflow(Path(folder)))[:2])
    with tempfile.TemporaryDirectory() as folder:
        work = copy_workflow(Path(folder))
        wall, cpu, output = timed(command, work)
        cleans.append((wall, cpu))
        noops = [timed(command, work)[:2] for _ in range(args.repeat)]
        dries = [timed([*command, "-n"], work)[:2] for _ in range(args.repeat)]
        costs = per_rule(work / "benchmarks")
        jobs = jobs_by_rule(output)
        scripts = rule_scripts(work / "workflow")
        imports = {rule: import_seconds(scripts[rule]) for rule in jobs}
    floor_noops, floor_dries = floor_runs(command, args.repeat)
    import_cpu = sum(count * imports[rule] for rule, count in jobs.items())
    for name, runs in (
        ("clean run", cleans),
        ("no-op re-run", noops),
        ("snakemake -n (after the run)", dries),
        ("floor: no-op of a one-rule workflow", floor_noops),
        ("floor: -n of a one-rule workflow", floor_dries),
    ):
        walls, cpus = zip(*runs)
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        each = ", ".join(f"{w:.2f}" for w in walls)
        print(f"{name}: median {wall:.2f} s wall, {cpu:.2f} CPU-s ({len(runs)} runs, wall s: {each})")
    full_cpu = statistics.median(run[1] for run in cleans)
    share = f"{import_cpu:.1f} CPU-s, {100 * import_cpu / full_cpu:.0f}% of the clean run"
    print(
        f"{sum(jobs.values())} jobs (snakemake --cores {args.cores}); their interpreter start-up and imports: {share}"
    )
    print(f"\n{'rule':<20} {'jobs':>4} {'imports CPU-s/job':>17}")
    for rule, count in sorted(jobs.items(), key=lambda item: -item[1] * imports[item[0]]):
        print(f"{rule:<20} {count:>4} {imports[rule]:>17.2f}")
    print(f"\n{'benchmarks/ folder':<22} {'jobs':>4} {'wall_s':>7} {'cpu_s':>6} {'cpu_s/job':>9}")
    for rule, (count, wall, cpu) in sorted(costs.items(), key=lambda item: -item[1][2]):
        print(f"{rule:<22} {count:>4.0f} {wall:>7.1f} {cpu:>6.1f} {cpu / count:>9.2f}")
    count, wall, cpu = (sum(column) for column in zip(*costs.values()))
    print(f"{'all':<22} {count:>4.0f} {wall:>7.1f} {cpu:>6.1f}  (the last clean run's jobs, sampled each 0.5 s)")


if __name__ == "__main__":
    main()
