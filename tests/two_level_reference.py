"""Shared by tests/test_imputation_two_level.py and bench/bench_mi_two_level.py: the live mice
`2l.norm` comparison and the simulation with known parameters of the two-level imputation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ipdpool.imputation.chained import impute
from ipdpool.imputation.twolevel import two_level_draw

# intercept-only data: the model of mice's 2l.norm (random intercept, one residual variance per
# cluster) is then exactly ipdpool's two-level model
CLUSTERS = 20


def clustered(seed: int, clusters: int = CLUSTERS) -> pd.DataFrame:
    """`clusters` clusters of 4-40 rows, intercepts N(1, 0.5), residual SDs 0.4-2; one missing row per cluster
    and about 20% more missing."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(4, 41, clusters)
    cluster = np.repeat(np.arange(clusters), sizes)
    sd = np.linspace(0.4, 2.0, clusters)
    y = 1 + rng.normal(0, np.sqrt(0.5), clusters)[cluster] + rng.normal(0, sd[cluster])
    first = np.r_[0, np.cumsum(sizes)[:-1]]
    missing = rng.random(len(y)) < 0.2
    missing[first] = True
    missing[first + 1] = False  # every cluster keeps an observed row
    return pd.DataFrame({"cluster": cluster + 1, "y": np.where(missing, np.nan, y)})


def python_moments(frame: pd.DataFrame, draws: int, seed: int) -> np.ndarray:
    """(draws, clusters): the imputation of each cluster's first row in `draws` independent draws."""
    rng = np.random.default_rng(seed)
    y = frame["y"].to_numpy(float)
    study = frame["cluster"].to_numpy(int) - 1
    observed = ~np.isnan(y)
    first = np.flatnonzero(np.r_[True, np.diff(study) != 0])
    x = np.ones((len(y), 1))
    out = np.empty((draws, len(first)))
    for k in range(draws):
        out[k] = two_level_draw(rng, x[observed], y[observed], study[observed], x[first], study[first])
    return out


def r_script(draws: int, seed: int) -> str:
    """mice.impute.2l.norm, `draws` calls, imputing each cluster's first row (wy)."""
    return f"""
suppressMessages(library(mice))
set.seed({seed})
ry <- !is.na(data$y)
wy <- !duplicated(data$cluster)
x <- matrix(data$cluster, ncol = 1)
out <- t(replicate({draws}, mice.impute.2l.norm(data$y, ry, x, type = -2, wy = wy)))
"""


def moment_z(python: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Differences between the two sides, in combined Monte Carlo SEs, of the posterior predictive
    mean (averaged over clusters, and per cluster) and variance of the imputed value in the
    smallest-SD, the middle and the largest-SD cluster."""
    z = {}

    def mean_and_se(draws):
        return draws.mean(axis=0), draws.std(axis=0, ddof=1) / np.sqrt(len(draws))

    def variance_and_se(draws):
        centred = draws - draws.mean(axis=0)
        variance = (centred**2).mean(axis=0)
        return variance, np.sqrt(((centred**4).mean(axis=0) - variance**2) / len(draws))

    # the average over clusters per draw: clusters share the draw's parameters, so not independent
    (a, sa), (b, sb) = mean_and_se(python.mean(axis=1)), mean_and_se(reference.mean(axis=1))
    z["mean averaged over clusters"] = (a - b) / np.hypot(sa, sb)
    for name, moment in (("mean", mean_and_se), ("variance", variance_and_se)):
        (a, sa), (b, sb) = moment(python), moment(reference)
        for label, j in (("smallest SD", 0), ("middle", len(a) // 2), ("largest SD", len(a) - 1)):
            z[f"{name} {label}"] = (a[j] - b[j]) / np.hypot(sa[j], sb[j])
    return z


# the simulation with known parameters: follow-up score with a random study intercept and residual
# SDs from 0.5 to 1.5 across studies; follow-up missing at random given baseline and arm
STUDIES = 8  # the default; the bench also runs 20
EFFECTS = {"ips": 0.3, "employed": 0.4, "baseline": 0.5, "tau2": 0.1, "employment_rate": 0.4}
TRUE_MEAN = 0.5 * EFFECTS["ips"] + EFFECTS["employment_rate"] * EFFECTS["employed"]


def simulated_trials(rng: np.random.Generator, studies: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(full data, data with follow-up missing at random) in ipdpool's analysis columns, outcome "o";
    residual SDs from 0.5 (first study) to 1.5 (last)."""
    sizes = rng.integers(40, 81, studies)
    study = np.repeat(np.arange(studies), sizes)
    residual_sd = np.linspace(0.5, 1.5, studies)
    ips = (rng.random(len(study)) < 0.5).astype(float)
    employed = (rng.random(len(study)) < EFFECTS["employment_rate"]).astype(float)
    baseline = rng.standard_normal(len(study))
    intercepts = rng.normal(0, np.sqrt(EFFECTS["tau2"]), studies)
    followup = (EFFECTS["ips"] * ips + EFFECTS["employed"] * employed + EFFECTS["baseline"] * baseline
                + intercepts[study] + rng.normal(0, residual_sd[study]))  # fmt: skip
    full = pd.DataFrame({"study": [f"S{j:02d}" for j in study], "arm": np.where(ips == 1, "IPS", "SAU"),
                         "employed": employed, "o_bl_z": baseline, "o_fu_z": followup})  # fmt: skip
    missing = rng.random(len(study)) < 1 / (1 + np.exp(-(-1.0 + 1.2 * baseline + 0.5 * ips)))
    return full, full.assign(o_fu_z=np.where(missing, np.nan, followup))


def estimands(data: pd.DataFrame) -> dict[str, float]:
    """Mean follow-up score, and its variance in the studies with the smallest and largest residual SD."""
    by_study = data.groupby("study")["o_fu_z"]
    return {"mean": data["o_fu_z"].mean(), "variance first study": by_study.var().iloc[0],
            "variance last study": by_study.var().iloc[-1]}  # fmt: skip


def replicate_differences(replicate: int, imputations: int, method: str, studies: int) -> dict[str, float]:
    """MI estimate (mean over `imputations` completed data sets) minus the full data's, per estimand,
    and the complete-case mean's difference, in one replicate."""
    rng = np.random.default_rng(np.random.SeedSequence(20261205, spawn_key=(replicate,)))
    full, observed = simulated_trials(rng, studies)
    truth = estimands(full)
    completed = [estimands(impute(observed, "o", j, seed=replicate, method=method)) for j in range(imputations)]
    out = {name: np.mean([c[name] for c in completed]) - truth[name] for name in truth}
    out["complete-case mean"] = observed["o_fu_z"].mean() - truth["mean"]
    out["full-data mean minus truth"] = truth["mean"] - TRUE_MEAN
    return out


def simulation_summary(replicates: range, imputations: int, method: str, studies: int = STUDIES) -> pd.DataFrame:
    """Mean difference from the full data per estimand with its Monte Carlo SE and z = mean / MCSE."""
    rows = pd.DataFrame([replicate_differences(r, imputations, method, studies) for r in replicates])
    summary = pd.DataFrame({"mean difference": rows.mean(), "mcse": rows.std(ddof=1) / np.sqrt(len(rows))})
    return summary.assign(z=summary["mean difference"] / summary["mcse"])
