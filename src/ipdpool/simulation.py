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
        rng = seed_for(scenario_index, replicate)
        data = simulate_trials(rng, scenario)
        if "missingness" in scenario:
            seed = int(np.random.SeedSequence([20261205, scenario_index, replicate]).generate_state(1)[0])
            found = missing_data_rows(rng, data, scenario, seed)
        else:
            found = replicate_rows(data, scenario["smd"])
        rows += [{"scenario": scenario["name"], "replicate": replicate, **row} for row in found]
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
            **({"missingness": str(settings[name]["missingness"]), "imputations": settings[name]["imputations"],
                "missing_share": group["missing_share"].mean(), "mean_fmi": fitted["fmi"].mean(),
                **difference_from_full_data(results, name, method)}
               if "missingness" in settings[name] else {}),
        })  # fmt: skip
    return pd.DataFrame(out)


def difference_from_full_data(results: pd.DataFrame, scenario: str, method: str) -> dict:
    """Mean over replicates of (estimate - the same replicate's full-data estimate) and its MCSE: the
    bias that the missing data add, with far less Monte Carlo error than the bias against the truth."""
    estimand = method.split(": ")[-1]
    part = results[results["scenario"] == scenario]
    by_replicate = part.pivot_table(index="replicate", columns="method", values="estimate", aggfunc="first")
    full = f"{FULL_DATA} one-stage: {estimand}"
    if full not in by_replicate or method not in by_replicate:
        return {"difference_from_full": np.nan, "difference_from_full_mcse": np.nan}
    difference = (by_replicate[method] - by_replicate[full]).dropna()
    return {"difference_from_full": difference.mean(),
            "difference_from_full_mcse": difference.std(ddof=1) / np.sqrt(len(difference))}  # fmt: skip


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


# ------------------------------------------------------------ missing follow-up scores

MISSING_ANALYSIS = {
    "outcomes": ["o"],
    "models": {
        "employed": {"terms": ["employed"], "adjust": ["baseline"], "report": {"employed": {"employed": 1}}},
        "ips": {"terms": ["ips"], "adjust": ["baseline"], "report": {"ips": {"ips": 1}}},
    },
}


FULL_DATA = "full data"


def true_effects(scenario: dict) -> dict[str, float]:
    """The estimands on complete data: the employed coefficient is the generator's smd (the model is
    the generator's); the ips coefficient of y ~ ips + baseline is, ips being independent of the
    baseline, smd x (P(employed | IPS) - P(employed | SAU)), integrated over the baseline by
    Gauss-Hermite quadrature (exact to rounding)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)
    weights = weights / weights.sum()
    logit_rate = np.log(scenario["employment_rate"] / (1 - scenario["employment_rate"]))

    def rate(ips: float) -> float:
        return float(weights @ (1 / (1 + np.exp(-(logit_rate + 0.8 * (ips - 0.5) + CONFOUNDING * nodes)))))

    return {"employed": scenario["smd"], "ips": scenario["smd"] * (rate(1) - rate(0))}


def make_missing(rng: np.random.Generator, data: pd.DataFrame, missingness: dict) -> pd.DataFrame:
    """Delete follow-up scores with logit P(missing) = intercept + baseline x o_bl_z + ips x IPS +
    employed x employed + outcome x o_fu_z (MCAR: slopes 0; MAR: outcome 0; MNAR: outcome not 0)."""
    ips = (data["arm"] == "IPS").to_numpy(float)
    logit = (
        missingness["intercept"]
        + missingness.get("baseline", 0) * data["o_bl_z"].to_numpy()
        + missingness.get("ips", 0) * ips
        + missingness.get("employed", 0) * data["employed"].to_numpy()
        + missingness.get("outcome", 0) * data["o_fu_z"].to_numpy()
    )
    out = data.copy()
    out.loc[rng.random(len(out)) < 1 / (1 + np.exp(-logit)), "o_fu_z"] = np.nan
    return out


def estimand_statistics(data: pd.DataFrame) -> dict[str, dict]:
    """The complete cases' statistics of MISSING_ANALYSIS's two models in models.statistics' layout,
    from numpy arrays (statistics_by_study's pandas steps would cost more than the fits here)."""
    complete = (
        data["o_fu_z"].notna().to_numpy() & data["o_bl_z"].notna().to_numpy() & data["employed"].notna().to_numpy()
    )
    study = data["study"].to_numpy()[complete]
    one = np.ones(int(complete.sum()))
    ips = (data["arm"].to_numpy()[complete] == "IPS").astype(float)
    employed, baseline, y = (data[c].to_numpy(float)[complete] for c in ("employed", "o_bl_z", "o_fu_z"))
    designs = {"employed": ("employed", employed), "ips": ("ips", ips)}
    out = {}
    for label in sorted(set(study)):
        rows = study == label
        entry = {}
        for name, (term, column) in designs.items():
            w = np.column_stack([one[rows], column[rows], baseline[rows], y[rows]])
            entry[f"{name}/primary"] = {
                "names": ["Intercept", term, "baseline", "y"],
                "n": int(rows.sum()),
                "products": w.T @ w,
            }
        out[str(label)] = {
            "study": str(label),
            "n": int(rows.sum()),
            "outcomes": {"o": {"n_followup": int(rows.sum()), "designs": entry}},
        }
    return out


def one_stage(data_statistics: dict, estimands) -> dict[str, dict]:
    """Random-intercept fits (REML, Satterthwaite) of the estimands' models."""
    models = MISSING_ANALYSIS["models"]
    return {name: mixed_model(data_statistics, "o", ModelSpec.from_config(name, models[name]))[0] for name in estimands}


def missing_data_rows(rng: np.random.Generator, data: pd.DataFrame, scenario: dict, seed: int) -> list[dict]:
    """Complete-case and multiple-imputation (study-stratified, m = scenario's imputations) one-stage
    estimates of the scenario's estimands (default both) on one replicate with missing follow-ups."""
    from .imputation.chained import impute
    from .imputation.pooling import rubin

    observed = make_missing(rng, data, scenario["missingness"])
    truth = true_effects(scenario)
    estimands = scenario.get("estimands", list(MISSING_ANALYSIS["models"]))
    rows = []
    # the data before deletion: the paired reference that tells MI's bias from the analysis model's
    for label, frame in ((FULL_DATA, data), ("complete-case", observed)):
        for name, row in one_stage(estimand_statistics(frame), estimands).items():
            rows.append({"method": f"{label} one-stage: {name}", "truth": truth[name],
                         **{k: row.get(k, np.nan) for k in ("estimate", "se", "ci_low", "ci_high")}})  # fmt: skip
    fits = [
        one_stage(estimand_statistics(impute(observed, "o", j, seed)), estimands)
        for j in range(scenario["imputations"])
    ]
    for name in estimands:
        estimates = [fit[name] for fit in fits]
        pooled = rubin(
            [e["estimate"] for e in estimates], [e["se"] ** 2 for e in estimates], np.mean([e["df"] for e in estimates])
        )
        interval = {"estimate": pooled.estimate, "se": pooled.se, "ci_low": pooled.ci_low, "ci_high": pooled.ci_high}
        rows.append({"method": f"MI one-stage: {name}", "truth": truth[name], **interval, "fmi": pooled.fmi})
    for row in rows:
        row["covered"] = bool(row["ci_low"] <= row["truth"] <= row["ci_high"])
        row["missing_share"] = float(observed["o_fu_z"].isna().mean())
    return rows
