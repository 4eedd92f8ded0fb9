"""Benchmark: one-stage model fits.

1. All primary models (8 outcomes x 3 models) on the harmonized demo.
2. One random-intercept model on 100 studies x 10,000 participants (1,000,000 rows),
   simulated from the demo's latent model (generator scaled up), in a fresh process.
Targets on the 2-core reference machine: (1) under 5 s; (2) under 5 s and 2 GiB.

Usage: python bench/bench_models.py [--pooled results/harmonized/pooled.parquet]
"""

import argparse
import json
import subprocess
import sys
import time

import pandas as pd
import yaml

from ipdpool.models.onestage import ModelSpec, primary

LARGE = """
import json, resource, time
import numpy as np
from ipdpool.models.lmm import fit_random_intercept
rng = np.random.default_rng(1)
k, n = 100, 10_000
groups = np.repeat(np.arange(k), n)
baseline = rng.normal(size=k * n)
employed = (rng.random(k * n) < 1 / (1 + np.exp(-0.6 * baseline))).astype(float)
y = np.repeat(rng.normal(0, 0.15, k), n) + 0.6 * baseline + 0.59 * employed + rng.normal(0, 0.8, k * n)
x = np.column_stack([np.ones(k * n), employed, baseline])
start = time.perf_counter()
fit = fit_random_intercept(x, y, groups, ["Intercept", "employed", "baseline"])
row = fit.estimate(np.array([0.0, 1.0, 0.0]))
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "estimate": row["estimate"], "df": row["df"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pooled", default="results/harmonized/pooled.parquet")
    parser.add_argument("--config", default="config/config.yaml")
    args = parser.parse_args()
    analysis = yaml.safe_load(open(args.config, encoding="utf-8"))["analysis"]
    data = pd.read_parquet(args.pooled)
    start = time.perf_counter()
    fits = 0
    for outcome in analysis["outcomes"]:
        for name, spec in analysis["models"].items():
            rows = primary(data, outcome, ModelSpec.from_config(name, spec))
            fits += rows[0]["status"] == "estimated"
    print(f"demo primary models: {fits} fits in {time.perf_counter() - start:.2f} s")
    out = subprocess.run([sys.executable, "-c", LARGE], check=True, capture_output=True, text=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"random intercept, 100 studies x 10,000 rows: {figures['seconds']:.2f} s, peak {figures['peak_mib']:.0f} MiB (employed {figures['estimate']:.3f}, df {figures['df']:.0f})")


if __name__ == "__main__":
    main()
