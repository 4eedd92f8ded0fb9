"""Rubin's rules for one scalar estimate over m completed data sets, with Barnard-Rubin df.

As mice::pool (and mitml::testEstimates with df.com): qbar, ubar (within), b (between),
t = ubar + (1 + 1/m) b, riv = (1 + 1/m) b / ubar, lambda = (1 + 1/m) b / t, and the
Barnard & Rubin (1999) df  nu = nu_old nu_obs / (nu_old + nu_obs), with
nu_old = (m - 1) / lambda^2 and nu_obs = (nu_com + 1) / (nu_com + 3) nu_com (1 - lambda);
fmi = (riv + 2 / (nu + 3)) / (riv + 1). mice floors lambda at 1e-4 in the df (so that b = 0
gives a finite nu_old); the same is done here, and the tests compare both live in R.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..probabilities import t_quantile, t_sf

LAMBDA_FLOOR = 1e-4  # mice's barnard.rubin()


@dataclass(frozen=True)
class Pooled:
    estimate: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    p_value: float
    within: float  # ubar
    between: float  # b
    riv: float  # relative increase in variance due to nonresponse
    lambda_: float  # proportion of total variance due to missingness
    fmi: float  # fraction of missing information
    m: int
    df_complete: float

    def row(self) -> dict:
        return {
            "estimate": self.estimate, "se": self.se, "ci_low": self.ci_low, "ci_high": self.ci_high,
            "df": self.df, "p_value": self.p_value, "within_variance": self.within,
            "between_variance": self.between, "riv": self.riv, "lambda": self.lambda_, "fmi": self.fmi,
            "m": self.m, "df_complete": self.df_complete,
        }  # fmt: skip


def barnard_rubin(m: int, lambda_: float, df_complete: float) -> float:
    """Barnard & Rubin (1999) df; df_complete = inf gives Rubin's (1987) large-sample df."""
    lam = max(lambda_, LAMBDA_FLOOR)
    df_old = (m - 1) / lam**2
    if np.isinf(df_complete):
        return df_old
    df_obs = (df_complete + 1) / (df_complete + 3) * df_complete * (1 - lam)
    return df_old * df_obs / (df_old + df_obs)


def rubin(estimates, variances, df_complete: float = np.inf, level: float = 0.95) -> Pooled:
    """Pool m estimates and their squared SEs; df_complete is the complete-data df."""
    q, u = np.asarray(estimates, float), np.asarray(variances, float)
    m = len(q)
    if m < 2 or len(u) != m:
        raise ValueError(f"Rubin's rules need at least 2 completed data sets with one variance each (got {m})")
    if not (np.isfinite(q).all() and np.isfinite(u).all()):
        raise ValueError("Rubin's rules need finite estimates and variances in every completed data set")
    if (u < 0).any() or u.mean() == 0:
        # mice's pool.scalar returns NaN (riv = b / 0) here and mitml NaN standard errors: refused instead
        raise ValueError(
            "Rubin's rules need a positive within-imputation variance: the completed data sets' variances are "
            + ("negative in some" if (u < 0).any() else "0 in all (an estimate without sampling error)")
        )
    qbar, ubar, b = float(q.mean()), float(u.mean()), float(q.var(ddof=1))
    total = ubar + (1 + 1 / m) * b
    riv = (1 + 1 / m) * b / ubar
    lambda_ = (1 + 1 / m) * b / total
    df = barnard_rubin(m, lambda_, df_complete)
    fmi = (riv + 2 / (df + 3)) / (riv + 1)
    se = float(np.sqrt(total))
    crit = t_quantile(1 - (1 - level) / 2, df)
    p_value = float(2 * t_sf(abs(qbar) / se, df)) if se > 0 else np.nan
    return Pooled(qbar, se, df, qbar - crit * se, qbar + crit * se, p_value, ubar, b, riv, lambda_, fmi, m, df_complete)
