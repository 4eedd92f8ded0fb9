"""Simulation study of the pooled models: scenarios with known truth, replicates in chunks.

Each replicate draws trials from the model the analysis assumes (random study intercepts,
a baseline-adjusted effect of employment), with the scenario's number of studies, study
sizes, between-study variance, employment rate, effect size and attrition, and estimates
the effect of employment by
  - the one-stage mixed model (REML) with Satterthwaite and with Kenward-Roger t intervals,
  - the two-stage REML meta-analysis of per-study OLS estimates, with z and Knapp-Hartung
    intervals.
summarize() gives bias, empirical SE, mean model SE and 95% CI coverage per scenario and
method, each with its Monte Carlo SE (Morris, White & Crowther 2019, Stat Med 38:2074).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .meta import meta_analysis
from .models.onestage import mixed_model
from .models.statistics import ModelSpec, statistics_by_study
from .models.twostage import per_study_table_from_statistics

METHODS = ("one-stage Satterthwaite", "one-stage Kenward-Roger", "two-stage REML z", "two-stage REML Knapp-Hartung")
MODEL = ModelSpec("employed", ("employed",), ("baseline",), {"employed": {"employed": 1}})
ANALYSIS = {
    "outcomes": ["o"],
    "models": {"employed": {"terms": ["employed"], "adjust": ["baseline"], "report": {"employed": {"employed": 1}}}},
}
SCENARIO_KEYS = ("studies", "participants", "tau2", "employment_rate", "smd", "attrition")
STABILITY, RESIDUAL_SD, CONFOUNDING = 0.6, 0.8, 0.5  # baseline -> follow-up, error SD, baseline -> employment


def seed_for(scenario_index: int, replicate: int) -> np.random.Generator:
    """Independent, reproducible streams per scenario and replicate, whatever the chunking."""
    return np.random.default_rng(np.random.SeedSequence([20210901, scenario_index, replicate]))


def simulate_trials(rng: np.random.Generator, scenario: dict) -> pd.DataFrame:
    """One replicate's pooled data: `studies` trials of `participants` each ([low, high] draws a
    size per trial), 1:1 randomized; employment more likely with IPS and a better baseline."""
    low, high = (
        (scenario["participants"], scenario["participants"])
        if np.isscalar(scenario["participants"])
        else scenario["participants"]
    )
    sizes = rng.integers(low, high + 1, scenario["studies"])
    study = np.repeat([f"S{i:02d}" for i in range(scenario["studies"])], sizes)
    n = len(study)
    ips = rng.permutation(np.arange(n) % 2)
    baseline = rng.normal(size=n)
    logit_rate = np.log(scenario["employment_rate"] / (1 - scenario["employment_rate"]))
    employed = rng.random(n) < 1 / (1 + np.exp(-(logit_rate + 0.8 * (ips - 0.5) + CONFOUNDING * baseline)))
    intercepts = rng.normal(0, np.sqrt(scenario["tau2"]), scenario["studies"])
    followup = (
        np.repeat(intercepts, sizes) + STABILITY * baseline + scenario["smd"] * employed + rng.normal(0, RESIDUAL_SD, n)
    )
    followup[rng.random(n) < scenario["attrition"]] = np.nan
    return pd.DataFrame(
        {
            "study": study,
            "arm": np.where(ips == 1, "IPS", "SAU"),
            "employed": employed.astype(float),
            "o_bl_z": baseline,
            "o_fu_z": followup,
        }
    )


def replicate_rows(data: pd.DataFrame, truth: float) -> list[dict]:
    statistics = statistics_by_study(data, ANALYSIS)
    rows = []
    for method, ddf in (("one-stage Satterthwaite", "satterthwaite"), ("one-stage Kenward-Roger", "kenward_roger")):
        row = mixed_model(statistics, "o", MODEL, ddf=ddf)[0]
        rows.append({"method": method, **{k: row.get(k, np.nan) for k in ("estimate", "se", "ci_low", "ci_high")}})
    studies = per_study_table_from_statistics(statistics, "o", ANALYSIS)
    studies = studies[studies["status"] == "estimated"]
    y, v = studies["estimate"].to_numpy(float), studies["se"].to_numpy(float) ** 2
    for method, hksj in (("two-stage REML z", False), ("two-stage REML Knapp-Hartung", True)):
        result = meta_analysis(y, v, "REML", hksj) if len(y) else None
        values = (result.estimate, result.se, result.ci_low, result.ci_high) if result else (np.nan,) * 4
        rows.append({"method": method, **dict(zip(("estimate", "se", "ci_low", "ci_high"), values))})
    for row in rows:
        row["truth"] = truth
        row["covered"] = bool(row["ci_low"] <= truth <= row["ci_high"]) if np.isfinite(row["ci_low"]) else np.nan
    return rows


def run_chunk(scenario_index: int, scenario: dict, replicates: range) -> pd.DataFrame:
    rows = []
    for replicate in replicates:
        data = simulate_trials(seed_for(scenario_index, replicate), scenario)
        rows += [
            {"scenario": scenario["name"], "replicate": replicate, **row}
            for row in replicate_rows(data, scenario["smd"])
        ]
    return pd.DataFrame(rows)


def summarize(results: pd.DataFrame, scenarios: list[dict]) -> pd.DataFrame:
    """Performance per scenario and method with Monte Carlo SEs (Morris et al. 2019, table 6)."""
    out = []
    settings = {s["name"]: s for s in scenarios}
    for (name, method), group in results.groupby(["scenario", "method"], sort=False):
        fitted = group.dropna(subset=["estimate", "se"])
        n = len(fitted)
        error = fitted["estimate"] - fitted["truth"]
        empirical = fitted["estimate"].std(ddof=1)
        coverage = fitted["covered"].astype(float).mean()
        out.append({
            "scenario": name, **{k: str(settings[name][k]) for k in SCENARIO_KEYS}, "method": method,
            "replicates": len(group), "estimated": n, "bias": error.mean(), "bias_mcse": empirical / np.sqrt(n),
            "empirical_se": empirical, "empirical_se_mcse": empirical / np.sqrt(2 * (n - 1)),
            "mean_model_se": fitted["se"].mean(), "coverage": coverage,
            "coverage_mcse": np.sqrt(coverage * (1 - coverage) / n),
        })  # fmt: skip
    return pd.DataFrame(out)


def wilson_interval(p: np.ndarray, n: np.ndarray, z: float = 1.959963984540054) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion p of n (Wilson 1927): within [0, 1] by construction."""
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)  # 0 and 1 exactly, not -1e-17


def coverage_figure(summary: pd.DataFrame, stem) -> None:
    from .figures import save  # matplotlib only here

    save(coverage_plot(summary), stem, formats=("png", "svg"))  # the simulation workflow declares both


def coverage_plot(summary: pd.DataFrame):
    """95% CI coverage per scenario and method with Wilson 95% intervals (within [0, 1], unlike
    +-2 MCSE near full coverage), against the nominal 0.95."""
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(summary["scenario"]))
    methods = list(dict.fromkeys(summary["method"]))
    figure, axis = plt.subplots(figsize=(7.5, 1.2 + 0.55 * len(scenarios) * len(methods) / 2))
    for j, method in enumerate(methods):
        part = summary[summary["method"] == method].set_index("scenario").reindex(scenarios)
        y = np.arange(len(scenarios)) + (j - (len(methods) - 1) / 2) * 0.18
        low, high = wilson_interval(part["coverage"].to_numpy(float), part["estimated"].to_numpy(float))
        bars = np.vstack([part["coverage"] - low, high - part["coverage"]])
        axis.errorbar(part["coverage"], y, xerr=bars, fmt="o", ms=4, capsize=2, label=method)
    axis.axvline(0.95, color="grey", lw=1, ls="--")
    axis.set_yticks(np.arange(len(scenarios)), scenarios)
    axis.invert_yaxis()
    axis.set_xlabel("coverage of the 95% confidence interval (bars: 95% Wilson interval)")
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)  # below: never over a marker
    figure.tight_layout()
    return figure
