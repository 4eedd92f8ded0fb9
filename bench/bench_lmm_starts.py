"""Benchmark: are the optimizer's starts enough? (issue 21, deliverable 5)

lmm._minimize_many searches from Lambda = I and, only when that optimum is on or near the
boundary, from 0.1 I and 3 I, then on the faces with as many zero diagonal elements as the
best point has, and from the starts just off the faces of the best point. Until issue 21 it
searched every face (each pattern of zero diagonal elements of Lambda, 2^q - 1 searches),
most of the time of a boundary fit, and no off-the-face start for a column without
below-diagonal elements. This
script fits generated data sets (random intercept with one or two correlated random slopes,
REML and ML; some variances 0, correlations anywhere in (-1, 1), 5 to 100 groups of 3 to 20
rows) with the engine, runs the old code's searches on the same problem, and counts the data
sets where the old searches found a lower deviance than the fit (by more than 1e-7: 0 means
the cheaper search lost nothing on these data) and those where the fit is lower.

Usage: python bench/bench_lmm_starts.py [--cases 450] [--seed 1]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import time
import warnings

import numpy as np
from scipy import optimize

from ipdpool.models.crossprod import cross_products
from ipdpool.models.lmm import _objective, diagonal_positions, fit_lmm, relative_factor, scaled_problem, theta_positions

NAMES = ["Intercept", "x1", "x2"]


def generate(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    q = int(rng.choice([2, 3]))
    k, n = int(rng.choice([5, 10, 20, 50, 100])), int(rng.choice([3, 5, 10, 20]))
    groups = np.repeat(np.arange(k), n)
    x = np.column_stack([np.ones(k * n), rng.normal(size=k * n), rng.binomial(1, 0.5, k * n)])
    sd = rng.choice([0.0, 0.05, 0.3, 1.0], size=3)
    b = rng.normal(size=(k, 3)) * sd
    correlation = rng.uniform(-1, 1)
    b[:, 1] = correlation * b[:, 0] / max(sd[0], 1e-9) * sd[1] + np.sqrt(1 - correlation**2) * b[:, 1]
    y = x @ [0.5, 0.3, -0.2] + (x * b[groups]).sum(axis=1) + rng.normal(size=k * n)
    return x, y, groups, q


def old_searches(cp, pattern, reml: bool) -> tuple[float, str]:
    """The lowest deviance of the searches of lmm._minimize_many before issue 21, and its start."""
    size, diagonal = int(pattern.sum()), diagonal_positions(pattern)
    objective = _objective(cp, pattern, reml)
    rows, columns = theta_positions(pattern)

    def search(start: np.ndarray, zero: tuple[int, ...] = ()) -> tuple[float, np.ndarray, str]:
        box = [(0.0, 0.0) if i in zero else (0.0, None) if i in diagonal else (None, None) for i in range(size)]
        found = optimize.minimize(
            objective, np.where(np.isin(np.arange(size), zero), 0.0, start), jac=True, method="L-BFGS-B",
            bounds=box, options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 2000},
        )  # fmt: skip
        return float(found.fun), found.x, f"from {np.round(start, 3).tolist()}" + (f", face {zero}" if zero else "")

    identity = np.zeros(size)
    identity[diagonal] = 1.0
    candidates = [search(identity)]
    if any(candidates[0][1][i] < 0.05 for i in diagonal) or not np.isfinite(candidates[0][0]):
        candidates += [search(0.1 * identity), search(3.0 * identity)]
        for count in range(1, len(diagonal) + 1):
            candidates += [search(identity, zero) for zero in itertools.combinations(diagonal, count)]
        value, theta, _ = min(candidates, key=lambda c: c[0])
        for position in (i for i in diagonal if theta[i] <= 0):
            below = [i for i in range(size) if columns[i] == columns[position] and rows[i] > columns[i]]
            for sign in (1.0, -1.0) if below else ():
                start = theta.copy()
                start[position] = 0.05
                start[below] = sign * np.abs(theta[below])
                candidates.append(search(start))
    value, _, start = min(candidates, key=lambda c: c[0])
    return value, start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=450)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    counts = collections.Counter({"the old searches found a lower optimum": 0, "the fit found a lower optimum": 0})
    worst = -np.inf
    seconds = 0.0
    for case in range(args.cases):
        x, y, groups, q = generate(rng)
        reml = bool(rng.integers(2))
        cp = cross_products(x, x[:, :q], y, groups, NAMES, NAMES[:q])
        start = time.process_time()
        fit = fit_lmm(cp, reml)
        seconds += time.process_time() - start
        scaled = scaled_problem(cp)
        internal_theta = fit.lam_internal[theta_positions(scaled.pattern)]
        ours = _objective(scaled.cp, scaled.pattern, reml)(internal_theta)[0]
        assert np.allclose(relative_factor(internal_theta, scaled.pattern), fit.lam_internal)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            old, found_from = old_searches(scaled.cp, scaled.pattern, reml)
        counts["data sets"] += 1
        counts["singular fits"] += fit.is_singular
        if old < ours - 1e-7:
            counts["the old searches found a lower optimum"] += 1
            print(f"case {case}: q {q}, {cp.k} groups, n {cp.n_total}, REML {reml}: fit {ours:.6f}, old {old:.6f}")
            print(f"  the old search {found_from}")
        counts["the fit found a lower optimum"] += bool(ours < old - 1e-7)
        worst = max(worst, ours - old)
    print(dict(counts))
    print(f"largest (fit - old searches) deviance: {worst:.3g} (positive: the old searches went lower)")
    print(f"fit CPU time: {seconds:.2f} s for {args.cases} fits")


if __name__ == "__main__":
    main()
