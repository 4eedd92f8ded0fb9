"""Simulation of the causal analysis: an unmeasured trait confounds work and outcome, and
randomization to IPS is the instrument.

Per replicate, `studies` trials of `participants`, 1:1 randomized. With U ~ N(0, 1) unmeasured,
    baseline = 0.5 U + N(0, 1)                              (measured, partly reflects U)
    P(employed) = expit(logit(p_arm) + confounding * U),     p_arm = employment_sau / employment_ips
    y = study intercept + smd * employed + 0.5 baseline + confounding * U + N(0, residual_sd^2)
so the effect of working is smd for everyone (hence also for compliers), the regression of y on
work and baseline is biased by U (for confounding > 0), and IPS acts only through work. Each
replicate gives the observational estimate (OLS with baseline and study fixed effects), the 2SLS
estimate with its classical Wald interval, and the Anderson-Rubin set (models.iv). Performance
with Monte Carlo SEs as simulation.summarize (Morris, White & Crowther 2019). The just-identified
2SLS estimator has no finite mean, so under a weak instrument bias is reported as the median.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .models.iv import design, iv_analysis

SCENARIO_KEYS = ("studies", "participants", "employment_sau", "employment_ips", "confounding", "residual_sd", "smd")
METHODS = ("observational (OLS)", "IV Wald", "IV Anderson-Rubin")


def seed_for(scenario_index: int, replicate: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([26, scenario_index, replicate]))


def simulate(rng: np.random.Generator, scenario: dict) -> pd.DataFrame:
    k, m = scenario["studies"], scenario["participants"]
    n = k * m
    study = np.repeat([f"S{i:02d}" for i in range(k)], m)
    ips = np.concatenate([rng.permutation(np.arange(m) % 2) for _ in range(k)])
    trait = rng.normal(size=n)
    baseline = 0.5 * trait + rng.normal(size=n)
    rate = np.where(ips == 1, scenario["employment_ips"], scenario["employment_sau"])
    logit = np.log(rate / (1 - rate)) + scenario["confounding"] * trait
    employed = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    intercepts = np.repeat(rng.normal(0, 0.2, k), m)
    y = (
        intercepts
        + scenario["smd"] * employed
        + 0.5 * baseline
        + scenario["confounding"] * trait
        + rng.normal(0, scenario["residual_sd"], n)
    )
    return pd.DataFrame(
        {"study": study, "arm": np.where(ips == 1, "IPS", "SAU"), "employed": employed, "o_bl_z": baseline, "o_fu_z": y}
    )


def replicate_rows(data: pd.DataFrame, truth: float) -> list[dict]:
    result = iv_analysis(design(data, "o"), "o", "pooled")
    ols_se = (result.ols_ci_high - result.ols_ci_low) / 2 / 1.96  # for the table only (t ~ normal here)
    rows = [
        {"method": METHODS[0], "estimate": result.ols_estimate, "se": ols_se,
         "ci_low": result.ols_ci_low, "ci_high": result.ols_ci_high},
        {"method": METHODS[1], "estimate": result.estimate, "se": result.se,
         "ci_low": result.ci_low, "ci_high": result.ci_high},
    ]  # fmt: skip
    if result.ar_kind == "interval":
        covered = result.ar_low <= truth <= result.ar_high
    elif result.ar_kind == "outside":
        covered = truth <= result.ar_low or truth >= result.ar_high
    else:  # unbounded (an empty set cannot occur with one instrument: AR(rho / pi) = 0)
        covered = result.ar_kind == "unbounded"
    rows.append(
        {"method": METHODS[2], "estimate": result.estimate, "se": result.se, "ci_low": result.ar_low,
         "ci_high": result.ar_high, "ar_kind": result.ar_kind, "covered": covered}
    )  # fmt: skip
    for row in rows:
        row["truth"] = truth
        row.setdefault("covered", bool(row["ci_low"] <= truth <= row["ci_high"]))
        row["first_stage_f"] = result.first_stage_f
    return rows


def run_chunk(scenario_index: int, scenario: dict, replicates: range) -> pd.DataFrame:
    rows = []
    for replicate in replicates:
        data = simulate(seed_for(scenario_index, replicate), scenario)
        rows += [
            {"scenario": scenario["name"], "replicate": replicate, **row}
            for row in replicate_rows(data, scenario["smd"])
        ]
    return pd.DataFrame(rows)


def summarize(results: pd.DataFrame, scenarios: list[dict]) -> pd.DataFrame:
    """Bias (mean and median), coverage and their Monte Carlo SEs per scenario and method."""
    out = []
    settings = {s["name"]: s for s in scenarios}
    for (name, method), group in results.groupby(["scenario", "method"], sort=False):
        n = len(group)
        error = group["estimate"] - group["truth"]
        empirical = group["estimate"].std(ddof=1)
        coverage = group["covered"].astype(float).mean()
        out.append({
            "scenario": name, **{k: str(settings[name][k]) for k in SCENARIO_KEYS}, "method": method,
            "replicates": n, "mean_first_stage_f": group["first_stage_f"].mean(),
            "bias": error.mean(), "bias_mcse": empirical / np.sqrt(n), "median_bias": error.median(),
            "empirical_se": empirical, "coverage": coverage, "coverage_mcse": np.sqrt(coverage * (1 - coverage) / n),
        })  # fmt: skip
    return pd.DataFrame(out)
