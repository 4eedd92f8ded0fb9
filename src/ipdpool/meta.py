"""Meta-analysis of study estimates: fixed effect and random effects (REML, DL, PM),
Knapp-Hartung(-Sidik-Jonkman), Q-profile interval for tau^2, heterogeneity, prediction
interval and leave-one-out, returned as one result object per analysis (like metafor's rma).

The formulas and the edge cases (one study, identical estimates) follow metafor's rma.uni
(Viechtbauer 2010); tests/test_meta_metafor.py compares them with metafor live. Iterations
and root searches work on tau^2 in units of the studies' typical sampling variance with
relative tolerances, so results are equivariant to the scale of the estimates: y * c with
v * c^2 gives c times the estimates, SEs and intervals and c^2 times tau^2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import optimize

from .probabilities import chi2_quantile, chi2_sf, norm_quantile, norm_sf, t_quantile, t_sf

METHODS = ("REML", "DL", "PM", "FE")
# "higgins": Higgins, Thompson & Spiegelhalter (2009), t(k - 2); "metafor": predict.rma's default,
# normal quantile, or t(k - 1) with Knapp-Hartung.
PREDICTION_INTERVALS = ("higgins", "metafor")
EPS = np.finfo(float).eps


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
    pi_df: float  # of the prediction interval's t distribution (inf = normal, nan = no interval)
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


def typical_variance(v: np.ndarray) -> float:
    """Harmonic mean of the sampling variances: the unit of tau^2 in every iteration and root
    search (dominated by the precise studies, which carry the weight)."""
    return float(1 / np.mean(1 / v))


def cochran_q(y: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    w = 1 / v
    mean = np.sum(w * y) / np.sum(w)
    return float(np.sum(w * (y - mean) ** 2)), float(mean)


def generalized_q(y: np.ndarray, v: np.ndarray, tau2: float) -> float:
    w = 1 / (v + tau2)
    mean = np.sum(w * y) / np.sum(w)
    return float(np.sum(w * (y - mean) ** 2))


def tau2_dl(y: np.ndarray, v: np.ndarray) -> float:
    """DerSimonian & Laird (1986) moment estimator, truncated at zero."""
    w = 1 / v
    q, _ = cochran_q(y, v)
    return max(0.0, float((q - (len(y) - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w))))


def tau2_where_q_equals(y: np.ndarray, v: np.ndarray, target: float) -> float:
    """The tau^2 >= 0 at which the generalized Q statistic, decreasing in tau^2, equals target
    (0 when Q(0) <= target). Solved in units of the typical variance to double precision."""
    if generalized_q(y, v, 0.0) <= target:
        return 0.0
    unit = typical_variance(v)

    def excess(t: float) -> float:
        return generalized_q(y, v, t * unit) - target

    high = 1.0
    while excess(high) > 0:
        high *= 10
    # below 1e-14 typical variances tau^2 changes no result
    return unit * optimize.brentq(excess, 0.0, high, xtol=1e-14, rtol=4 * EPS)


def tau2_pm(y: np.ndarray, v: np.ndarray) -> float:
    """Paule & Mandel (1982): the root of generalized Q(tau^2) = k - 1, or 0 when Q(0) <= k - 1."""
    return tau2_where_q_equals(y, v, len(y) - 1)


def reml_score(y: np.ndarray, v: np.ndarray, tau2: float) -> float:
    """Twice the derivative of the restricted log-likelihood in tau^2: y'PPy - tr(P), with
    P = W - w w' / sum(w) (Viechtbauer 2005); positive below the REML estimate, negative above."""
    w = 1 / (v + tau2)
    total = np.sum(w)
    py = w * (y - np.sum(w * y) / total)  # P y, from the centred estimates to keep digits
    return float(py @ py - (total - np.sum(w**2) / total))


def reml_information(v: np.ndarray, tau2: float) -> float:
    """tr(PP): twice the expected information about tau^2, the Fisher scoring denominator."""
    w = 1 / (v + tau2)
    total = np.sum(w)
    return float(np.sum(w**2) - 2 * np.sum(w**3) / total + (np.sum(w**2) / total) ** 2)


def bracket_reml_maximum(y: np.ndarray, v: np.ndarray, tau2: float, unit: float) -> tuple[float, float]:
    """An interval around tau2 with the REML score >= 0 at its lower end (unless that end is 0) and
    <= 0 at its upper end, widened tenfold from 1e-8 typical variances on each side."""
    low = high = tau2
    width = 1e-8 * (tau2 + unit)
    while low > 0 and reml_score(y, v, low) < 0:
        low, width = max(0.0, low - width), 10 * width
    width = 1e-8 * (tau2 + unit)
    while reml_score(y, v, high) > 0:
        high, width = high + width, 10 * width
    return low, high


def tau2_reml(y: np.ndarray, v: np.ndarray, max_steps: int = 100) -> float:
    """REML as metafor: Fisher scoring from the Hedges estimate max(0, var(y) - mean(v)), kept
    at tau^2 >= 0 (truncated; metafor halves the step). Fisher scoring converges only linearly,
    slowly for some data, so it just leads to the maximum; the root of the REML score there is
    then bracketed and solved to double precision: exact, with no stopping rule tied to scale."""
    unit = typical_variance(v)
    tau2 = max(0.0, float(np.var(y, ddof=1) - np.mean(v)))
    for _ in range(max_steps):
        previous, tau2 = tau2, max(0.0, tau2 + reml_score(y, v, tau2) / reml_information(v, tau2))
        if abs(tau2 - previous) <= 1e-8 * (tau2 + unit):
            break
    low, high = bracket_reml_maximum(y, v, tau2, unit)
    if reml_score(y, v, low) < 0:  # low = 0: the restricted likelihood falls from tau^2 = 0
        return 0.0
    return float(optimize.brentq(lambda t: reml_score(y, v, t), low, high, xtol=1e-14 * unit, rtol=4 * EPS))


def estimate_tau2(y: np.ndarray, v: np.ndarray, method: str) -> float:
    if method == "FE" or len(y) == 1:
        return 0.0
    return {"REML": tau2_reml, "DL": tau2_dl, "PM": tau2_pm}[method](y, v)


def q_profile_interval(y: np.ndarray, v: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Q-profile confidence interval for tau^2 (Viechtbauer 2007): the tau^2 values at which
    the generalized Q statistic equals the chi-square(k - 1) quantiles."""
    upper_q, lower_q = chi2_quantile(np.array([1 - (1 - level) / 2, (1 - level) / 2]), len(y) - 1)
    return tau2_where_q_equals(y, v, upper_q), tau2_where_q_equals(y, v, lower_q)


def knapp_hartung_se(y: np.ndarray, w: np.ndarray, estimate: float) -> float:
    """Hartung & Knapp (2001); Sidik & Jonkman (2002): 1 / sum(w) scaled by the weighted residual
    mean square, not truncated at 1 (metafor's test="knha"). As in metafor, a weighted residual sum
    of squares (scale-free) at or below machine epsilon counts as 0: identical estimates, SE 0."""
    rss = float(np.sum(w * (y - estimate) ** 2))
    scale = 0.0 if rss <= EPS else rss / (len(y) - 1)
    return float(np.sqrt(scale / np.sum(w)))


def heterogeneity(y: np.ndarray, v: np.ndarray, tau2: float, fixed: bool) -> tuple[float, float, float, float]:
    """Q, its p-value, I^2 (%) and H^2 as metafor: from Q for the fixed-effect model, from tau^2
    and the typical within-study variance otherwise (Higgins & Thompson 2002); with one study
    Q = 0, p = 1, I^2 = 0 and H^2 = 1."""
    k = len(y)
    if k == 1:
        return 0.0, 1.0, 0.0, 1.0
    q, _ = cochran_q(y, v)
    q_p = float(chi2_sf(q, k - 1))
    if fixed:
        return q, q_p, max(0.0, 100 * (q - (k - 1)) / q) if q > 0 else 0.0, q / (k - 1)
    w = 1 / v
    s2 = (k - 1) / (np.sum(w) - np.sum(w**2) / np.sum(w))
    return q, q_p, float(100 * tau2 / (s2 + tau2)), float(tau2 / s2 + 1)


def two_sided_quantile(level: float, df: float) -> float:
    upper = 1 - (1 - level) / 2
    return float(t_quantile(upper, df) if np.isfinite(df) else norm_quantile(upper))


def prediction_df(k: int, hksj: bool, convention: str) -> float:
    """Degrees of freedom of the prediction interval's t quantile (inf = normal, nan = none)."""
    if convention == "higgins":
        return float(k - 2) if k >= 3 else np.nan
    return float(k - 1) if hksj and k > 1 else np.inf


def meta_analysis(
    y, v, method: str = "REML", hksj: bool = False, level: float = 0.95, prediction: str = "higgins"
) -> MetaResult:
    """Inverse-variance meta-analysis of estimates y with sampling variances v.

    prediction: "higgins" gives the prediction interval of Higgins, Thompson & Spiegelhalter
    (2009), estimate +- t(k-2) sqrt(tau^2 + se^2), none for fewer than three studies;
    "metafor" that of metafor's predict(): the normal quantile, t(k-1) with Knapp-Hartung.
    """
    y, v = np.asarray(y, float), np.asarray(v, float)
    k = len(y)
    notes = []
    if method not in METHODS:
        raise ValueError(f"method {method!r} not in {METHODS}")
    if prediction not in PREDICTION_INTERVALS:
        raise ValueError(f"prediction interval {prediction!r} not in {PREDICTION_INTERVALS}")
    if k == 0:
        raise ValueError("no studies to meta-analyse")
    if np.any(v <= 0) or np.any(~np.isfinite(v)) or np.any(~np.isfinite(y)):
        raise ValueError("every study needs a finite estimate and a positive finite variance")
    tau2 = estimate_tau2(y, v, method)
    w = 1 / (v + tau2)
    estimate = float(np.sum(w * y) / np.sum(w))
    se, df = float(np.sqrt(1 / np.sum(w))), np.inf
    if k == 1:
        notes.append("one study: heterogeneity cannot be estimated")
        if hksj:
            notes.append("Knapp-Hartung needs two studies: normal interval, as metafor")
    elif hksj:
        se, df = knapp_hartung_se(y, w, estimate), float(k - 1)
        if se == 0:
            notes.append("Knapp-Hartung: identical estimates give SE 0, as metafor")
    crit = two_sided_quantile(level, df)
    with np.errstate(divide="ignore", invalid="ignore"):  # SE 0: p = 0 (nan for estimate 0), as metafor
        z = np.abs(np.float64(estimate) / se)
    p_value = float(2 * (t_sf(z, df) if np.isfinite(df) else norm_sf(z)))
    q, q_p, i2, h2 = heterogeneity(y, v, tau2, method == "FE")
    tau2_ci = q_profile_interval(y, v, level) if k > 1 and method != "FE" else (np.nan, np.nan)
    pi_df = np.nan if method == "FE" else prediction_df(k, hksj, prediction)
    if method != "FE" and np.isnan(pi_df):
        notes.append("prediction interval needs at least three studies")
    spread = np.nan if np.isnan(pi_df) else two_sided_quantile(level, pi_df) * float(np.sqrt(tau2 + se**2))
    return MetaResult(
        method=method,
        hksj=hksj,
        k=k,
        estimate=estimate,
        se=se,
        ci_low=estimate - crit * se,
        ci_high=estimate + crit * se,
        df=df,
        p_value=p_value,
        pi_low=estimate - spread,
        pi_high=estimate + spread,
        pi_df=pi_df,
        tau2=tau2,
        tau2_ci_low=tau2_ci[0],
        tau2_ci_high=tau2_ci[1],
        i2=i2,
        h2=h2,
        q=q,
        q_p=q_p,
        weights=list(100 * w / np.sum(w)),
        warnings=notes,
    )


def leave_one_out(
    y, v, labels, method: str = "REML", hksj: bool = False, prediction: str = "higgins"
) -> list[tuple[str, MetaResult]]:
    """The meta-analysis repeated without each study in turn."""
    y, v = np.asarray(y, float), np.asarray(v, float)
    out = []
    for i, label in enumerate(labels):
        keep = np.arange(len(y)) != i
        if keep.sum() >= 1:
            out.append((label, meta_analysis(y[keep], v[keep], method, hksj, prediction=prediction)))
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
