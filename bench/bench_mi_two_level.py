"""The two-level imputation (multiple_imputation.method: two_level) at full size; figures in
docs/validation.md. (1) Its draws against R's mice.impute.2l.norm, live, on 20 clusters of
intercept-only data (where the two models coincide): posterior predictive mean and variance of
one missing row per cluster over `--draws` independent draws per side, as differences in combined
Monte Carlo SEs. (2) The simulation with known parameters (8 studies, random intercept, residual
SDs 0.5-1.5, follow-up missing at random given baseline and arm): MI minus full data per estimand
over `--replicates` replicates of m = `--imputations`, with MCSE, for two_level and, for contrast,
fixed_effects (one residual variance)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from rscript import run_r
from two_level_reference import clustered, moment_z, python_moments, r_script, simulation_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--imputations", type=int, default=5)
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--methods", default="two_level,fixed_effects")
    parser.add_argument("--no-mice", action="store_true", help="skip the mice comparison")
    arguments = parser.parse_args()
    if not arguments.no_mice:
        compare_with_mice(arguments.draws)
    for method in arguments.methods.split(","):
        start = time.perf_counter()
        summary = simulation_summary(range(arguments.replicates), arguments.imputations, method, arguments.studies)
        print(f"simulation, {method}, {arguments.studies} studies, {arguments.replicates} replicates, "
              f"m = {arguments.imputations} ({time.perf_counter() - start:.0f} s)")  # fmt: skip
        print(summary.to_string(float_format=lambda v: f"{v:.4f}"))


def compare_with_mice(draws: int) -> None:
    start = time.perf_counter()
    data = clustered(11)
    python = python_moments(data, draws, seed=12)
    reference = np.asarray(run_r(r_script(draws, 13), {"data": data}), float)
    elapsed = time.perf_counter() - start
    print(f"mice 2l.norm comparison, 20 clusters, {draws} draws per side ({elapsed:.0f} s)")
    for name, z in moment_z(python, reference).items():
        print(f"  {name:32s} z = {z:+.2f}")


if __name__ == "__main__":
    main()
