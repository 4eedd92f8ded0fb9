"""The effect of working on an outcome, with randomization to IPS as its instrument (2SLS).

Per outcome (SD units: the harmonized z-scores), with E = employed during follow-up and
Z = randomized to IPS:
    y = beta E + gamma baseline + study fixed effects + e,   E instrumented by Z.
beta is the effect of working for those whom IPS got into work (compliers), under the
assumptions stated in the report: randomization (Z independent of potential outcomes),
relevance (Z moves E: the first stage), exclusion (IPS acts on the outcome only through
work; the demo's truth has no direct IPS effect) and monotonicity (no one works because they
were NOT offered IPS).

Everything classical is a function of the cross-products of [y, E, Z, baseline, study
dummies], which are sums over studies, so the federated fit from per-study sums equals the
pooled run exactly (`crossproducts`, `two_sls`). Heteroskedasticity-robust SEs (HC1 here:
AER/sandwich's vcovHC type "HC1", linearmodels' cov_type="robust" with debiased=True) sum
u_i^2 xhat_i xhat_i' with u_i = y_i - W_i beta: a polynomial of degree 4 in each row's
variables, so they too are exact from per-study fourth-order moment sums, which are not
released here: the robust figures need participant data.

Diagnostics:
- first-stage F (classical: AER's "Weak instruments" test) and the effective F of Montiel Olea
  & Pflueger (2013, J Bus Econ Stat 31(3):358-369); with one instrument the effective F is the
  heteroskedasticity-robust first-stage Wald statistic (Andrews, Stock & Sun 2019, Annu Rev
  Econ 11:727-753, section 5);
- the Anderson-Rubin (1949) confidence set: the beta0 for which Z has no (HC1) effect in the
  regression of y - beta0 E on Z and the controls. With one instrument the test statistic is
  (rho - beta0 pi)^2 / (v_rr - 2 beta0 v_rp + beta0^2 v_pp), from the reduced-form and
  first-stage coefficients and their joint HC1 covariance, so the set is where a quadratic is
  <= 0: an interval, the line outside an interval, or everything (weak instrument);
- Durbin-Wu-Hausman (AER's "Wu-Hausman"): the F test of the first-stage residual added to the
  OLS regression (control function).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ..probabilities import chi2_quantile, norm_quantile, t_quantile, t_sf

Y, E, Z = "y", "employed", "ips"


def design(frame: pd.DataFrame, outcome: str, by_study: bool = True) -> pd.DataFrame:
    """Rows complete for the outcome: columns y, employed, ips, baseline and one dummy per study
    (or an intercept when the frame holds one study)."""
    used = frame[["study", "arm", "employed", f"{outcome}_fu_z", f"{outcome}_bl_z"]].dropna()
    out = pd.DataFrame(
        {
            Y: used[f"{outcome}_fu_z"].to_numpy(float),
            E: used["employed"].to_numpy(float),
            Z: (used["arm"] == "IPS").to_numpy(float),
            "baseline": used[f"{outcome}_bl_z"].to_numpy(float),
        }
    )
    studies = sorted(used["study"].unique())
    if by_study and len(studies) > 1:
        for study in studies:
            out[f"study[{study}]"] = (used["study"] == study).to_numpy(float)
    else:
        out["intercept"] = 1.0
    return out


def crossproducts(matrix: pd.DataFrame) -> tuple[np.ndarray, int, list[str]]:
    values = matrix.to_numpy(float)
    return values.T @ values, len(values), list(matrix.columns)


@dataclass
class ClassicalFit:
    beta: np.ndarray  # over W = [employed, controls]
    vcov: np.ndarray
    rss: float
    n: int
    k: int
    names: list[str]


def two_sls(cp: np.ndarray, n: int, names: list[str]) -> ClassicalFit:
    """2SLS with classical covariance (sigma^2 = RSS / (n - k), as AER's ivreg) from the
    cross-products of the columns [y, employed, ips, controls...]."""
    iy, iw, iz = 0, [1] + list(range(3, len(names))), [2] + list(range(3, len(names)))
    zz, zw, zy = cp[np.ix_(iz, iz)], cp[np.ix_(iz, iw)], cp[iz, iy]
    projected = zw.T @ np.linalg.solve(zz, zw)
    beta = np.linalg.solve(projected, zw.T @ np.linalg.solve(zz, zy))
    ww, wy = cp[np.ix_(iw, iw)], cp[iw, iy]
    rss = float(cp[iy, iy] - 2 * beta @ wy + beta @ ww @ beta)
    k = len(iw)
    return ClassicalFit(beta, rss / (n - k) * np.linalg.inv(projected), rss, n, k, [names[i] for i in iw])


def ols(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients, classical covariance, HC1 covariance and residuals."""
    n, k = x.shape
    xtx_inv = np.linalg.inv(x.T @ x)
    coef = xtx_inv @ (x.T @ y)
    resid = y - x @ coef
    classical = resid @ resid / (n - k) * xtx_inv
    meat = (x * resid[:, None] ** 2).T @ x
    return coef, classical, n / (n - k) * xtx_inv @ meat @ xtx_inv, resid


def hc1_2sls(matrix: pd.DataFrame, fit: ClassicalFit) -> np.ndarray:
    w = matrix[fit.names].to_numpy(float)
    z = matrix[[Z] + fit.names[1:]].to_numpy(float)
    xhat = z @ np.linalg.lstsq(z, w, rcond=None)[0]
    resid = matrix[Y].to_numpy(float) - w @ fit.beta
    bread = np.linalg.inv(xhat.T @ xhat)
    meat = (xhat * resid[:, None] ** 2).T @ xhat
    return fit.n / (fit.n - fit.k) * bread @ meat @ bread


def anderson_rubin(matrix: pd.DataFrame, level: float) -> tuple[float, float, str]:
    """The HC1 Anderson-Rubin confidence set for beta (see the module docstring)."""
    controls = [c for c in matrix.columns if c not in (Y, E, Z)]
    x = matrix[[Z] + controls].to_numpy(float)
    n, k = x.shape
    xtx_inv = np.linalg.inv(x.T @ x)
    rho_coef = xtx_inv @ (x.T @ matrix[Y].to_numpy(float))
    pi_coef = xtx_inv @ (x.T @ matrix[E].to_numpy(float))
    e_r = matrix[Y].to_numpy(float) - x @ rho_coef
    e_p = matrix[E].to_numpy(float) - x @ pi_coef
    row = (xtx_inv @ x.T)[0]  # the instrument's coefficient is row @ response
    scale = n / (n - k)
    v_rr, v_pp, v_rp = (scale * np.sum(row**2 * a * b) for a, b in ((e_r, e_r), (e_p, e_p), (e_r, e_p)))
    rho, pi = rho_coef[0], pi_coef[0]
    c = chi2_quantile(level, 1)
    # (rho - b pi)^2 - c (v_rr - 2 b v_rp + b^2 v_pp) <= 0  <=>  qa b^2 + qb b + qc <= 0
    qa, qb, qc = pi**2 - c * v_pp, -2 * (rho * pi - c * v_rp), rho**2 - c * v_rr
    disc = qb**2 - 4 * qa * qc
    if qa > 0 and disc >= 0:
        roots = sorted(((-qb - np.sqrt(disc)) / (2 * qa), (-qb + np.sqrt(disc)) / (2 * qa)))
        return roots[0], roots[1], "interval"
    if qa < 0 and disc > 0:
        roots = sorted(((-qb - np.sqrt(disc)) / (2 * qa), (-qb + np.sqrt(disc)) / (2 * qa)))
        return roots[0], roots[1], "outside"  # (-inf, low] and [high, inf)
    return -np.inf, np.inf, "unbounded"


@dataclass
class IvResult:
    outcome: str
    scope: str  # "pooled" or the study
    n: int
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    se_robust: float
    ci_low_robust: float
    ci_high_robust: float
    first_stage: float  # IPS -> employment, risk difference adjusted for the controls
    first_stage_f: float
    effective_f: float
    ar_low: float
    ar_high: float
    ar_kind: str
    wu_hausman_f: float
    wu_hausman_p: float
    ols_estimate: float
    ols_ci_low: float
    ols_ci_high: float
    notes: list[str] = field(default_factory=list)

    def as_row(self) -> dict:
        row = asdict(self)
        row["notes"] = "; ".join(self.notes)
        return row


def iv_analysis(matrix: pd.DataFrame, outcome: str, scope: str, level: float = 0.95) -> IvResult:
    cp, n, names = crossproducts(matrix)
    fit = two_sls(cp, n, names)
    t_crit = t_quantile(0.5 + level / 2, n - fit.k)
    z_crit = norm_quantile(0.5 + level / 2)
    estimate, se = float(fit.beta[0]), float(np.sqrt(fit.vcov[0, 0]))
    se_robust = float(np.sqrt(hc1_2sls(matrix, fit)[0, 0]))
    controls = fit.names[1:]
    first_x = matrix[[Z] + controls].to_numpy(float)
    pi, pi_classical, pi_robust, first_resid = ols(matrix[E].to_numpy(float), first_x)
    ols_x = matrix[[E] + controls].to_numpy(float)
    obs, obs_classical, _, _ = ols(matrix[Y].to_numpy(float), ols_x)
    augmented = np.column_stack([ols_x, first_resid])
    cf, cf_classical, _, _ = ols(matrix[Y].to_numpy(float), augmented)
    wu = float(cf[-1] ** 2 / cf_classical[-1, -1])
    ar_low, ar_high, ar_kind = anderson_rubin(matrix, level)
    obs_se = float(np.sqrt(obs_classical[0, 0]))
    notes = []
    first_f = float(pi[0] ** 2 / pi_classical[0, 0])
    if first_f < 10:
        notes.append(f"weak first stage (F = {first_f:.1f} < 10): read the Anderson-Rubin interval")
    return IvResult(
        outcome=outcome,
        scope=scope,
        n=n,
        estimate=estimate,
        se=se,
        ci_low=estimate - t_crit * se,
        ci_high=estimate + t_crit * se,
        se_robust=se_robust,
        ci_low_robust=estimate - z_crit * se_robust,
        ci_high_robust=estimate + z_crit * se_robust,
        first_stage=float(pi[0]),
        first_stage_f=first_f,
        effective_f=float(pi[0] ** 2 / pi_robust[0, 0]),
        ar_low=float(ar_low),
        ar_high=float(ar_high),
        ar_kind=ar_kind,
        wu_hausman_f=wu,
        wu_hausman_p=float(2 * t_sf(np.sqrt(wu), n - augmented.shape[1])),
        ols_estimate=float(obs[0]),
        ols_ci_low=float(obs[0] - t_quantile(0.5 + level / 2, n - ols_x.shape[1]) * obs_se),
        ols_ci_high=float(obs[0] + t_quantile(0.5 + level / 2, n - ols_x.shape[1]) * obs_se),
        notes=notes,
    )


def iv_by_study_and_pooled(pooled: pd.DataFrame, outcome: str, level: float = 0.95) -> list[IvResult]:
    """One result per study with the outcome, then the pooled fit with study fixed effects."""
    results = []
    studies = sorted(pooled.loc[pooled[f"{outcome}_fu_z"].notna(), "study"].unique())
    for study in studies:
        matrix = design(pooled[pooled["study"] == study], outcome)
        results.append(iv_analysis(matrix, outcome, study, level))
    results.append(iv_analysis(design(pooled, outcome), outcome, "pooled", level))
    return results


def federated_two_sls(study_crossproducts: dict[str, tuple[np.ndarray, int]]) -> ClassicalFit:
    """The pooled 2SLS with study fixed effects from each study's cross-products of
    [y, employed, ips, baseline, 1] alone: the pooled cross-product matrix of
    [y, employed, ips, baseline, study dummies] is assembled from them exactly."""
    studies = sorted(study_crossproducts)
    base = 4
    size = base + len(studies)
    total, n = np.zeros((size, size)), 0
    for j, study in enumerate(studies):
        cp, count = study_crossproducts[study]
        index = list(range(base)) + [base + j]
        total[np.ix_(index, index)] += cp
        n += count
    names = [Y, E, Z, "baseline"] + [f"study[{s}]" for s in studies]
    return two_sls(total, n, names)
