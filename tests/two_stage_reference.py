"""Shared by tests/test_imputation_two_stage.py and bench/bench_mi_two_stage.py: the simulation with
known parameters of the two-stage imputation (multiple_imputation.method: two_stage).

8 studies of 150 participants (1:1 IPS:SAU). Each study's follow-up model has its own coefficients
(intercept, IPS, employed, IPS x employed, baseline) drawn from N(MEAN, PSI); the residual SD is
0.8 everywhere. The last 2 studies never measured the follow-up score, and they differ from the
others: baseline scores 0.8 SD higher, and more employment, more so under IPS (logit 0.3 + 1.7 IPS
against -1.5 + 1.0 IPS). Elsewhere the follow-up is missing at random given baseline and arm
(about 30%), and baseline and employment are missing completely at random (5% each).

Estimand: the IPS effect of the one-stage model `ips` (follow-up ~ IPS + baseline, random study
intercept) in the 8 studies' populations. IPS is randomized 1:1 within studies and independent of
baseline, so that model's IPS coefficient is the average over studies (equal sizes, one residual
variance) of each study's total IPS effect
  b_ips + p1 (b_employed + b_ips:employed) - p0 b_employed,
p1 and p0 its employment probabilities under IPS and SAU: a function of the drawn coefficients,
known in each replicate. The never-measuring studies' effects are larger (more IPS-driven
employment), so the complete-case estimate, from the 6 measuring studies, is biased downwards.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ipdpool.imputation.analysis import completed_statistics, one_stage_rows
from ipdpool.imputation.chained import impute
from ipdpool.imputation.pooling import rubin, t_quantile

STUDIES, SIZE, NEVER_MEASURED = 8, 150, 2
MEAN = np.array([0.0, 0.2, 0.5, 0.2, 0.5])  # intercept, ips, employed, ips:employed, baseline
PSI = np.diag([0.04, 0.01, 0.02, 0.01, 0.01])
RESIDUAL_SD = 0.8
EMPLOYMENT_LOGIT = {"measured": (-1.5, 1.0), "never": (0.3, 1.7)}  # (SAU, IPS increment)
ANALYSIS = {"models": {"ips": {"terms": ["ips"], "adjust": ["baseline"], "report": {"ips": {"ips": 1}}}}}


def simulated(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """(full data, observed data, true IPS effect) in ipdpool's analysis columns, outcome "o"."""
    study = np.repeat(np.arange(STUDIES), SIZE)
    never = study >= STUDIES - NEVER_MEASURED
    ips = np.tile(np.repeat([1.0, 0.0], SIZE // 2), STUDIES)
    coefficients = rng.multivariate_normal(MEAN, PSI, STUDIES)
    baseline = rng.standard_normal(len(study)) + 0.8 * never
    sau, increment = (np.where(never, *(EMPLOYMENT_LOGIT[k][i] for k in ("never", "measured"))) for i in (0, 1))
    employed = (rng.random(len(study)) < 1 / (1 + np.exp(-(sau + increment * ips)))).astype(float)
    x = np.column_stack([np.ones(len(study)), ips, employed, ips * employed, baseline])
    followup = np.einsum("ij,ij->i", x, coefficients[study]) + RESIDUAL_SD * rng.standard_normal(len(study))
    full = pd.DataFrame({"study": [f"S{j}" for j in study], "arm": np.where(ips == 1, "IPS", "SAU"),
                         "employed": employed, "o_bl_z": baseline, "o_fu_z": followup})  # fmt: skip
    dropout = rng.random(len(study)) < 1 / (1 + np.exp(-(-1.0 + 0.8 * baseline + 0.5 * ips)))
    observed = full.assign(
        o_fu_z=np.where(dropout | never, np.nan, followup),
        o_bl_z=np.where(rng.random(len(study)) < 0.05, np.nan, baseline),
        employed=np.where(rng.random(len(study)) < 0.05, np.nan, employed),
    )
    return full, observed, true_effect(coefficients)


def true_effect(coefficients: np.ndarray) -> float:
    """The average over studies of each study's total IPS effect (see the module's docstring)."""
    effects = []
    for j, (_, b_ips, b_employed, b_interaction, _) in enumerate(coefficients):
        sau, increment = EMPLOYMENT_LOGIT["never" if j >= STUDIES - NEVER_MEASURED else "measured"]
        p0, p1 = 1 / (1 + np.exp(-sau)), 1 / (1 + np.exp(-(sau + increment)))
        effects.append(b_ips + p1 * (b_employed + b_interaction) - p0 * b_employed)
    return float(np.mean(effects))


def ips_effect(data: pd.DataFrame) -> tuple[float, float, float]:
    """(estimate, SE, df) of the one-stage `ips` model on complete cases of `data`."""
    (row,) = one_stage_rows(completed_statistics(data, "o", ANALYSIS), "o", ANALYSIS)
    return float(row["estimate"]), float(row["se"]), float(row["df"])


def replicate(number: int, imputations: int) -> dict[str, float]:
    """One replicate: the MI (two_stage), complete-case and full-data estimates, their CIs' coverage of
    the true effect, and the truth."""
    rng = np.random.default_rng(np.random.SeedSequence(20261205, spawn_key=(number, 25)))
    full, observed, truth = simulated(rng)
    fits = [ips_effect(impute(observed, "o", j, seed=number, method="two_stage")) for j in range(imputations)]
    pooled = rubin([f[0] for f in fits], [f[1] ** 2 for f in fits], float(np.mean([f[2] for f in fits])))
    out = {"truth": truth, "mi": pooled.estimate, "mi_covers": pooled.ci_low <= truth <= pooled.ci_high}
    for name, data in (("complete_case", observed), ("full", full)):
        estimate, se, df = ips_effect(data)
        out[name], out[f"{name}_covers"] = estimate, abs(estimate - truth) <= se * t_quantile(0.975, df)
    return out


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method: bias (estimate - truth) with its MCSE and z, empirical SE, coverage with its MCSE."""
    out = {}
    for name in ("mi", "complete_case", "full"):
        error = rows[name] - rows["truth"]
        coverage = rows[f"{name}_covers"].astype(float).mean()
        out[name] = {"bias": error.mean(), "bias_mcse": error.std(ddof=1) / np.sqrt(len(rows)),
                     "empirical_se": rows[name].std(ddof=1), "coverage": coverage,
                     "coverage_mcse": np.sqrt(coverage * (1 - coverage) / len(rows))}  # fmt: skip
    table = pd.DataFrame(out).T
    return table.assign(bias_z=table["bias"] / table["bias_mcse"])
