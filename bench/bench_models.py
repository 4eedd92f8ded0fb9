"""Benchmark: the mixed-model engine beside statsmodels MixedLM and lme4, on the same data.

Scenarios (generated once per scenario, the same arrays for every tool):
  random intercept, REML, three fixed effects (intercept, employed, baseline):
    50 x 20,000 (1M rows), 1,000 x 1,000 (1M rows), 10,000 x 100 (1M rows);
  random intercept and slope for employed, REML: 50 x 20,000 (1M rows).
Each tool runs in its own process, timed after the data are in memory. ipdpool's time
includes the cross-products, the fit and the Satterthwaite df of `employed`; its extra
memory is the peak traced by tracemalloc during that work, beside the input arrays.
statsmodels and lme4 fit only (no df); lme4 runs when Rscript is installed. Each run is
capped (--timeout, default 600 s) and reported as such when it hits the cap.

Targets on the 2-core reference machine: 1M-row random intercept with df <= 0.3 s, >= 10x
faster than statsmodels and lme4, extra memory <= 2x the input arrays; time linear in rows.

Second table (issue 21), ipdpool against lme4 only, each run in its own process on the same
data read from binary files, medians of --repeats runs (the two tools alternated): the fit
time measured inside the process, wall and CPU (REML fit only; lme4's lmer() with its default
optimizer), the import/start-up time (importing ipdpool's engine, resp. library(lme4)) and the
whole process's wall time, with the load average before and after (the machine may be shared):
  random slope (1 + employed | g) and three terms (1 + employed + baseline | g) on 200 and
  2,000 rows; random intercept on 20,000 rows (the whole process is the target there);
  and the 1M-row random-intercept fit beside its floor, one small matrix product per group
  on rows already sorted by group (one pass over the data).
Targets: every lme4 / ipdpool ratio >= 1 (ipdpool no slower), the 1M fit <= 2x the floor.

Usage: python bench/bench_models.py [--timeout 600] [--skip statsmodels,lme4] [--repeats 5] [--only lme4-table]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIOS = [
    ("intercept", 50, 20_000),
    ("intercept", 1_000, 1_000),
    ("intercept", 10_000, 100),
    ("slope", 50, 20_000),
]

GENERATE = """
import numpy as np
def generate(kind, k, n):
    rng = np.random.default_rng(20210901)
    groups = np.repeat(np.arange(k), n)
    baseline = rng.normal(size=k * n)
    employed = (rng.random(k * n) < 1 / (1 + np.exp(-0.6 * baseline))).astype(float)
    slope = rng.normal(0, 0.1, k) if kind == "slope" else np.zeros(k)
    y = np.repeat(rng.normal(0, 0.15, k), n) + 0.6 * baseline + (0.59 + slope[groups]) * employed \
+ rng.normal(0, 0.8, k * n)
    return np.column_stack([np.ones(k * n), employed, baseline]), y, groups
"""

IPDPOOL = (
    GENERATE
    + """
import json, sys, time, tracemalloc
from ipdpool.models.crossprod import cross_products
from ipdpool.models.lmm import fit_lmm
kind, k, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x, y, groups = generate(kind, k, n)
z = x[:, :2] if kind == "slope" else x[:, :1]
input_bytes = x.nbytes + y.nbytes + groups.nbytes
tracemalloc.start()
start = time.perf_counter()
fit = fit_lmm(cross_products(x, z, y, groups, ["Intercept", "employed", "baseline"], \
["Intercept", "employed"][: z.shape[1]]))
result = fit.contrast(np.array([0.0, 1.0, 0.0]))
seconds = time.perf_counter() - start
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"seconds": seconds, "extra_mib": peak / 2**20, "input_mib": input_bytes / 2**20, \
"estimate": result["estimate"], "df": result["df"]}))
"""
)

STATSMODELS = (
    GENERATE
    + """
import json, sys, time, warnings
import statsmodels.api as sm
kind, k, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x, y, groups = generate(kind, k, n)
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    fit = sm.MixedLM(y, x, groups=groups, exog_re=x[:, :2] if kind == "slope" else None).fit(reml=True)
print(json.dumps({"seconds": time.perf_counter() - start, "estimate": float(fit.fe_params[1])}))
"""
)

WRITE_FOR_R = (
    GENERATE
    + """
import sys
kind, k, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x, y, groups = generate(kind, k, n)
folder = sys.argv[4]
x[:, 1].tofile(folder + "/employed.bin"); x[:, 2].tofile(folder + "/baseline.bin")
y.tofile(folder + "/y.bin"); groups.astype("int32").tofile(folder + "/groups.bin")
"""
)

LME4 = """
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(TRUE); folder <- args[1]; kind <- args[2]; rows <- as.integer(args[3])
read <- function(name, what = "double", size = 8) readBin(file.path(folder, name), what, rows, size = size)
d <- data.frame(y = read("y.bin"), employed = read("employed.bin"), baseline = read("baseline.bin"),
                g = factor(read("groups.bin", "integer", 4)))
f <- if (kind == "slope") y ~ employed + baseline + (1 + employed | g) else y ~ employed + baseline + (1 | g)
t <- system.time(m <- lmer(f, d, REML = TRUE))[["elapsed"]]
cat(sprintf('{"seconds": %.6f, "estimate": %.10f}\\n', t, fixef(m)[["employed"]]))
"""


def run(command: list[str], timeout: float) -> dict | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


SMALL = [("slope", 20, 10), ("slope", 100, 20), ("three", 20, 10), ("three", 100, 20), ("intercept", 50, 400)]

WRITE_SMALL = (
    GENERATE
    + """
import sys
import numpy as np
kind, k, n, folder = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
x, y, groups = generate("slope" if kind != "intercept" else kind, k, n)
x[:, 1].tofile(folder + "/employed.bin"); x[:, 2].tofile(folder + "/baseline.bin")
y.tofile(folder + "/y.bin"); groups.astype("int32").tofile(folder + "/groups.bin")
"""
)

IPDPOOL_SMALL = """
import time
start = time.perf_counter()
import json, sys
import numpy as np
from ipdpool.models.crossprod import cross_products
from ipdpool.models.lmm import fit_lmm
kind, folder = sys.argv[1], sys.argv[2]
if kind != "intercept":  # the optimizer of q > 1, which lmm imports on first use: start-up, not fit
    import scipy.optimize
imported = time.perf_counter()
employed, baseline = np.fromfile(folder + "/employed.bin"), np.fromfile(folder + "/baseline.bin")
y, groups = np.fromfile(folder + "/y.bin"), np.fromfile(folder + "/groups.bin", dtype="int32")
x = np.column_stack([np.ones(len(y)), employed, baseline])
q = {"intercept": 1, "slope": 2, "three": 3}[kind]
names = ["Intercept", "employed", "baseline"]
fit_start, cpu_start = time.perf_counter(), time.process_time()
fit = fit_lmm(cross_products(x, x[:, :q], y, groups, names, names[:q]))
done, cpu = time.perf_counter(), time.process_time() - cpu_start
print(json.dumps({"fit": done - fit_start, "cpu": cpu, "startup": imported - start, "estimate": float(fit.beta[1]),
                  "deviance": fit.deviance}))
"""

LME4_SMALL = """
t0 <- proc.time()[["elapsed"]]
suppressPackageStartupMessages(library(lme4))
startup <- proc.time()[["elapsed"]] - t0
args <- commandArgs(TRUE); folder <- args[1]; kind <- args[2]; rows <- as.integer(args[3])
read <- function(name, what = "double", size = 8) readBin(file.path(folder, name), what, rows, size = size)
d <- data.frame(y = read("y.bin"), employed = read("employed.bin"), baseline = read("baseline.bin"),
                g = factor(read("groups.bin", "integer", 4)))
f <- switch(kind, intercept = y ~ employed + baseline + (1 | g), slope = y ~ employed + baseline + (1 + employed | g),
            three = y ~ employed + baseline + (1 + employed + baseline | g))
t <- system.time(m <- suppressMessages(lmer(f, d, REML = TRUE)))
cat(sprintf('{"fit": %.6f, "cpu": %.6f, "startup": %.6f, "estimate": %.10f, "deviance": %.10f}\\n', t[["elapsed"]],
            t[["user.self"]] + t[["sys.self"]], startup, fixef(m)[["employed"]], REMLcrit(m)))
"""

FLOOR = (
    GENERATE
    + """
import json, time
import numpy as np
from ipdpool.models.crossprod import cross_products
from ipdpool.models.lmm import fit_lmm
x, y, groups = generate("intercept", 50, 20_000)
w = np.column_stack([x, y])
bounds = np.flatnonzero(np.diff(groups)) + 1
starts, ends = np.r_[0, bounds], np.r_[bounds, len(groups)]
times = {"floor": [], "fit": [], "floor_cpu": [], "fit_cpu": []}
for _ in range(9):
    start, cpu = time.perf_counter(), time.process_time()
    products = [w[a:b].T @ w[a:b] for a, b in zip(starts, ends)]
    times["floor"].append(time.perf_counter() - start)
    times["floor_cpu"].append(time.process_time() - cpu)
    start, cpu = time.perf_counter(), time.process_time()
    fit_lmm(cross_products(x, x[:, :1], y, groups, ["Intercept", "employed", "baseline"], ["Intercept"]))
    times["fit"].append(time.perf_counter() - start)
    times["fit_cpu"].append(time.process_time() - cpu)
print(json.dumps({k: float(np.median(v)) for k, v in times.items()}))
"""
)


def timed(command: list[str], timeout: float) -> dict | None:
    """run() with the process's wall time added."""
    start = time.perf_counter()
    result = run(command, timeout)
    return None if result is None else {**result, "process": time.perf_counter() - start}


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def load() -> str:
    """The machine's load average (1 minute), printed beside the figures (the machine is shared)."""
    return f"{os.getloadavg()[0]:.1f}"


def lme4_table(repeats: int, timeout: float) -> None:
    """Issue 21's table: ipdpool against lme4 on small random-slope and three-term models,
    the 20,000-row random intercept (whole process) and the 1M-row fit beside its floor."""
    print(f"\nload average at start: {load()}")
    print(
        "\n| model | groups x rows | ipdpool fit s | lme4 fit s | lme4 / ipdpool (fit) | ipdpool fit CPU s "
        "| lme4 fit CPU s | lme4 / ipdpool (CPU) | ipdpool start-up s | lme4 start-up s | ipdpool process s "
        "| lme4 process s | lme4 / ipdpool (process) | REML crit. diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    names = {"slope": "random slope", "three": "three terms", "intercept": "random intercept"}
    for kind, k, n in SMALL:
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run([sys.executable, "-c", WRITE_SMALL, kind, str(k), str(n), folder], check=True)
            script = Path(folder) / "fit.R"
            script.write_text(LME4_SMALL)
            ours, theirs = [], []
            for _ in range(repeats):  # alternated, so that a change of load falls on both
                ours.append(timed([sys.executable, "-c", IPDPOOL_SMALL, kind, folder], timeout))
                theirs.append(timed(["Rscript", "--vanilla", str(script), folder, kind, str(k * n)], timeout))
        row = {}
        for tool, results in (("ours", ours), ("theirs", theirs)):
            row[tool] = {key: median([r[key] for r in results]) for key in ("fit", "cpu", "startup", "process")}
        difference = ours[0]["deviance"] - theirs[0]["deviance"]
        a, b = row["ours"], row["theirs"]
        print(
            f"| {names[kind]} | {k:,} x {n:,} | {a['fit']:.3f} | {b['fit']:.3f} | {b['fit'] / a['fit']:.2f} | "
            f"{a['cpu']:.3f} | {b['cpu']:.3f} | {b['cpu'] / a['cpu']:.2f} | {a['startup']:.2f} | "
            f"{b['startup']:.2f} | {a['process']:.2f} | {b['process']:.2f} | {b['process'] / a['process']:.2f} | "
            f"{difference:.1e} |",
            flush=True,
        )
    floor = run([sys.executable, "-c", FLOOR], timeout)
    print(
        f"\n1M-row random intercept (50 x 20,000), medians of 9: fit {floor['fit']:.4f} s "
        f"(CPU {floor['fit_cpu']:.4f} s), floor (one product per group on sorted rows) {floor['floor']:.4f} s "
        f"(CPU {floor['floor_cpu']:.4f} s), ratio {floor['fit'] / floor['floor']:.1f} "
        f"(CPU {floor['fit_cpu'] / floor['floor_cpu']:.1f}; target <= 2)"
    )
    print(f"load average at end: {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--skip", default="", help="comma-separated tools to skip: statsmodels, lme4")
    parser.add_argument("--repeats", type=int, default=5, help="runs per tool in the lme4 table (medians)")
    parser.add_argument("--only", default="", help="'lme4-table': print only issue 21's table")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if args.only == "lme4-table":
        lme4_table(args.repeats, args.timeout)
        return
    use_r = shutil.which("Rscript") is not None and "lme4" not in skip
    header = (
        "| model | groups x rows | ipdpool s | extra MiB (input MiB) | statsmodels s "
        "| lme4 s | statsmodels / ipdpool | lme4 / ipdpool |"
    )
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    for kind, k, n in SCENARIOS:
        argv = [kind, str(k), str(n)]
        ours = run([sys.executable, "-c", IPDPOOL, *argv], args.timeout)
        sm = None if "statsmodels" in skip else run([sys.executable, "-c", STATSMODELS, *argv], args.timeout)
        r = None
        if use_r:
            with tempfile.TemporaryDirectory() as folder:
                subprocess.run([sys.executable, "-c", WRITE_FOR_R, *argv, folder], check=True)
                script = Path(folder) / "fit.R"
                script.write_text(LME4)
                r = run(["Rscript", "--vanilla", str(script), folder, kind, str(k * n)], args.timeout)

        def seconds(result, tool):
            if tool in skip or (tool == "lme4" and not use_r):
                return "not run"
            return f"{result['seconds']:.2f}" if result else f"> {args.timeout:.0f}"

        def ratio(result, ours=ours):
            return f"{result['seconds'] / ours['seconds']:.0f}x" if result else "-"

        model = "random intercept" if kind == "intercept" else "random slope"
        print(
            f"| {model} | {k:,} x {n:,} | {ours['seconds']:.3f} | {ours['extra_mib']:.0f} ({ours['input_mib']:.0f}) | "
            f"{seconds(sm, 'statsmodels')} | {seconds(r, 'lme4')} | {ratio(sm)} | {ratio(r)} |",
            flush=True,
        )
        for name, other in (("statsmodels", sm), ("lme4", r)):
            if other and abs(other["estimate"] - ours["estimate"]) > 1e-4:
                print(f"  note: {name} estimate of employed {other['estimate']:.6f} vs ipdpool {ours['estimate']:.6f}")
    if use_r:
        lme4_table(args.repeats, args.timeout)


if __name__ == "__main__":
    main()
