"""Meta-analysis of study estimates: fixed effect and random effects (REML, DL, PM),
Knapp-Hartung(-Sidik-Jonkman), Q-profile interval for tau^2, heterogeneity, prediction
interval and leave-one-out, returned as one result object per analysis (like metafor's rma).

statsmodels' combine_effects supplies the DerSimonian-Laird and Paule-Mandel tau^2; it
has no REML, Q-profile interval, Knapp-Hartung or prediction interval, so those are
written here, each formula with its reference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import optimize, stats
from statsmodels.stats.meta_analysis import combine_effects

METHODS = ("REML", "DL", "PM", "FE")


@dataclass
class MetaResult:
    method: str
    hksj: bool
    k: int
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    df: float  # of the interval's t distribution (inf = normal)
    p_value: float
    pi_low: float
    pi_high: float
    tau2: float
    tau2_ci_low: float
    tau2_ci_high: float
    i2: float  # percent
    h2: float
    q: float
    q_p: float
    weights: list[float] = field(default_factory=list)  # percent, in input order
    warnings: list[str] = field(default_factory=list)

    def row(self) -> dict:
        out = asdict(self)
        out.pop("weights")
        out["warnings"] = "; ".join(self.warnings)
        return out


def cochran_q(y: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    w = 1 / v
    mean = np.sum(w * y) / np.sum(w)
    return float(np.sum(w * (y - mean) ** 2)), float(mean)


def generalized_q(y: np.ndarray, v: np.ndarray, tau2: float) -> float:
    w = 1 / (v + tau2)
    mean = np.sum(w * y) / np.sum(w)
    return float(np.sum(w * (y - mean) ** 2))


def tau2_reml(y: np.ndarray, v: np.ndarray, tol: float = 1e-12, max_iter: int = 1000) -> float:
    """REML by Fisher scoring with truncation at zero (Viechtbauer 2005, eq. 12), as in metafor."""
    tau2 = max(0.0, tau2_dl(y, v))
    for _ in range(max_iter):
        w = 1 / (v + tau2)
        mean = np.sum(w * y) / np.sum(w)
        proj_trace = np.sum(w) - np.sum(w**2) / np.sum(w)  # tr(P)
        residual = y - mean
        # P y, tr(P P): P = W - W 1 1' W / sum(W)
        py = w * residual
        pp_trace = np.sum(w**2) - 2 * np.sum(w**3) / np.sum(w) + (np.sum(w**2) / np.sum(w)) ** 2
        step = (py @ py - proj_trace) / pp_trace
        new = max(0.0, tau2 + step)
        if abs(new - tau2) < tol:
            return new
        tau2 = new
    raise RuntimeError("REML estimate of tau^2 did not converge")


def tau2_dl(y: np.ndarray, v: np.ndarray) -> float:
    """DerSimonian & Laird (1986) moment estimator, truncated at zero as the estimator is
    defined (statsmodels combine_effects returns the untruncated value, which can be negative)."""
    with np.errstate(invalid="ignore", divide="ignore"):  # combine_effects also computes statistics we do not use
        return max(0.0, float(combine_effects(y, v, method_re="chi2").tau2))


def tau2_pm(y: np.ndarray, v: np.ndarray) -> float:
    """Paule & Mandel (1982): generalized Q(tau^2) = k - 1, or 0 when Q(0) < k - 1
    (statsmodels combine_effects, iterated)."""
    with np.errstate(invalid="ignore", divide="ignore"):  # combine_effects also computes statistics we do not use
        return max(0.0, float(combine_effects(y, v, method_re="iterated").tau2))


def q_profile_interval(y: np.ndarray, v: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Q-profile confidence interval for tau^2 (Viechtbauer 2007): the tau^2 values at which
    the generalized Q statistic equals the chi-square(k - 1) quantiles."""
    k = len(y)
    upper_q, lower_q = stats.chi2.ppf([1 - (1 - level) / 2, (1 - level) / 2], k - 1)

    def solve(target: float) -> float:
        if generalized_q(y, v, 0.0) <= target:
            return 0.0
        high = max(1.0, 10 * np.var(y))
        while generalized_q(y, v, high) > target:
            high *= 10
        return float(optimize.brentq(lambda t: generalized_q(y, v, t) - target, 0.0, high, xtol=1e-12))

    return solve(upper_q), solve(lower_q)


def meta_analysis(y, v, method: str = "REML", hksj: bool = False, level: float = 0.95, prediction: str = "t") -> MetaResult:
    """Inverse-variance meta-analysis of estimates y with sampling variances v.

    prediction: "t" gives the 95% prediction interval of Higgins, Thompson & Spiegelhalter
    (2009), estimate +- t(k-2) sqrt(tau^2 + se^2); "z" uses the normal quantile (metafor's default).
    """
    y, v = np.asarray(y, float), np.asarray(v, float)
    k = len(y)
    notes = []
    if method not in METHODS:
        raise ValueError(f"method {method!r} not in {METHODS}")
    if k == 0:
        raise ValueError("no studies to meta-analyse")
    if np.any(v <= 0) or np.any(~np.isfinite(v)) or np.any(~np.isfinite(y)):
        raise ValueError("every study needs a finite estimate and a positive finite variance")
    q, _ = cochran_q(y, v)
    q_p = float(stats.chi2.sf(q, k - 1)) if k > 1 else np.nan
    if k == 1:
        tau2 = 0.0
        notes.append("one study: heterogeneity cannot be estimated")
    elif method == "FE":
        tau2 = 0.0
    elif method == "REML":
        tau2 = tau2_reml(y, v)
    elif method == "DL":
        tau2 = tau2_dl(y, v)
    else:
        tau2 = tau2_pm(y, v)
    w = 1 / (v + tau2)
    estimate = float(np.sum(w * y) / np.sum(w))
    se = float(np.sqrt(1 / np.sum(w)))
    if hksj:
        if k < 2:
            notes.append("Knapp-Hartung needs at least two studies")
            se, df = np.nan, np.nan
        else:
            # Hartung & Knapp (2001); Sidik & Jonkman (2002): variance scaled by the weighted
            # residual mean square, t with k - 1 df (not truncated at 1, as metafor's test="knha").
            se = float(np.sqrt(np.sum(w * (y - estimate) ** 2) / ((k - 1) * np.sum(w))))
            df = float(k - 1)
    else:
        df = np.inf
    crit = stats.t.ppf(1 - (1 - level) / 2, df) if np.isfinite(df) else stats.norm.ppf(1 - (1 - level) / 2)
    ci = (estimate - crit * se, estimate + crit * se)
    p_value = float(2 * (stats.t.sf(abs(estimate / se), df) if np.isfinite(df) else stats.norm.sf(abs(estimate / se))))
    # Typical within-study variance s^2 and I^2, H^2 from tau^2 (Higgins & Thompson 2002, as metafor);
    # for the fixed-effect model from Q.
    if k > 1:
        wf = 1 / v
        s2 = (k - 1) * np.sum(wf) / (np.sum(wf) ** 2 - np.sum(wf**2))
        if method == "FE":
            i2, h2 = max(0.0, 100 * (q - (k - 1)) / q) if q > 0 else 0.0, q / (k - 1)
        else:
            i2, h2 = 100 * tau2 / (tau2 + s2), (tau2 + s2) / s2
        tau2_ci = q_profile_interval(y, v, level) if method != "FE" else (np.nan, np.nan)
    else:
        i2, h2, tau2_ci = np.nan, np.nan, (np.nan, np.nan)
    if method == "FE":
        pi = (np.nan, np.nan)
    elif prediction == "t":
        if k >= 3:
            spread = stats.t.ppf(1 - (1 - level) / 2, k - 2) * np.sqrt(tau2 + se**2)
            pi = (estimate - spread, estimate + spread)
        else:
            pi = (np.nan, np.nan)
            notes.append("prediction interval needs at least three studies")
    else:
        spread = stats.norm.ppf(1 - (1 - level) / 2) * np.sqrt(tau2 + se**2)
        pi = (estimate - spread, estimate + spread)
    weights = list(100 * w / np.sum(w))
    return MetaResult(method, hksj, k, estimate, se, ci[0], ci[1], df, p_value, pi[0], pi[1], tau2, tau2_ci[0], tau2_ci[1], i2, h2, q, q_p, weights, notes)


def leave_one_out(y, v, labels, method: str = "REML", hksj: bool = False) -> list[tuple[str, MetaResult]]:
    """The meta-analysis repeated without each study in turn."""
    y, v = np.asarray(y, float), np.asarray(v, float)
    out = []
    for i, label in enumerate(labels):
        keep = np.arange(len(y)) != i
        if keep.sum() >= 1:
            out.append((label, meta_analysis(y[keep], v[keep], method, hksj)))
    return out


def hedges_g(n1: float, mean1: float, sd1: float, n2: float, mean2: float, sd2: float) -> tuple[float, float]:
    """Standardized mean difference (group 1 - group 2) with small-sample correction and its
    variance (Hedges 1981; Borenstein et al. 2009, eqs 4.18-4.24)."""
    pooled = np.sqrt(((n1 - 1) * sd1**2 + (n2 - 1) * sd2**2) / (n1 + n2 - 2))
    d = (mean1 - mean2) / pooled
    correction = 1 - 3 / (4 * (n1 + n2 - 2) - 1)
    g = correction * d
    variance = correction**2 * ((n1 + n2) / (n1 * n2) + d**2 / (2 * (n1 + n2)))
    return float(g), float(variance)
