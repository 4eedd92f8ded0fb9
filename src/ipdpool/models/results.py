"""Result methods of `lmer` that need more than the fixed effects: conditional modes of the random
effects, Wald intervals and lmerTest's summary layout.

The conditional modes are lme4's (Bates et al. 2015, section 3):
b_g = Lambda (Lambda' Z_g'Z_g Lambda + I)^-1 Lambda' Z_g'(y_g - X_g beta), and their conditional
covariance sigma2 Lambda (Lambda' Z_g'Z_g Lambda + I)^-1 Lambda' is what lme4's
ranef(condVar = TRUE) reports (conditional on beta and the variance parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..probabilities import norm_quantile
from .lmm import LmmFit


@dataclass(frozen=True)
class RandomEffects:
    """modes: groups x random terms; cond_var: (groups, terms, terms) conditional covariances."""

    group: str
    modes: pd.DataFrame
    cond_var: np.ndarray

    @property
    def cond_sd(self) -> pd.DataFrame:
        """Conditional standard deviations (the square roots of cond_var's diagonals)."""
        sd = np.sqrt(np.diagonal(self.cond_var, axis1=1, axis2=2))
        return pd.DataFrame(sd, index=self.modes.index, columns=self.modes.columns)


def label_strings(labels: pd.Series) -> list[str]:
    """Group labels as text, integral numbers without a decimal part whatever their dtype
    (R's as.character(1.0) is "1"), so new data with ids stored as float find their groups; a
    categorical column's values are labelled as its categories are (a Categorical of 1.0 is "1")."""
    labels = pd.Series(labels)
    if isinstance(labels.dtype, pd.CategoricalDtype):
        categories = label_strings(pd.Series(labels.cat.categories))
        return [categories[code] if code >= 0 else "nan" for code in labels.cat.codes.to_numpy()]
    if pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels):
        return [str(int(v)) if np.isfinite(v) and v == round(v) else str(v) for v in labels.to_numpy(float)]
    return [str(v) for v in labels]


def conditional_modes(
    fit: LmmFit, x: np.ndarray, z: np.ndarray, y: np.ndarray, groups: pd.Series, terms: list[str]
) -> RandomEffects:
    """From the rows (X, Z, y, group) and the fit's beta, sigma2 and random-effect covariance D:
    with G = D / sigma2 = Lambda Lambda', A_g = Lambda (Lambda' M_g Lambda + I)^-1 Lambda'
    = G (I + M_g G)^-1 (push-through identity, no inverse of a possibly singular D), M_g = Z_g'Z_g.
    Residuals y - X beta are formed per row, so no cross-product cancels digits."""
    codes, labels = pd.factorize(groups, sort=True)
    k, q = len(labels), z.shape[1]
    residual = y - x @ fit.beta
    ztr = np.column_stack([np.bincount(codes, weights=z[:, i] * residual, minlength=k) for i in range(q)])
    ztz = np.empty((k, q, q))
    for i in range(q):
        for j in range(i, q):
            ztz[:, i, j] = ztz[:, j, i] = np.bincount(codes, weights=z[:, i] * z[:, j], minlength=k)
    g = fit.random_covariance / fit.sigma2
    a = g @ np.linalg.inv(np.eye(q) + ztz @ g)
    modes = np.einsum("kqr,kr->kq", a, ztr)
    index = pd.Index(label_strings(pd.Series(labels)), name=groups.name)
    return RandomEffects(str(groups.name), pd.DataFrame(modes, index=index, columns=list(terms)), fit.sigma2 * a)


def wald_intervals(fit: LmmFit, level: float) -> pd.DataFrame:
    """lme4's confint(method = "Wald"): estimate -+ z se with se from vcov (no df adjustment)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, not {level}")
    se = np.sqrt(np.diag(fit.vcov))
    z = norm_quantile(0.5 + level / 2)
    low, high = f"{100 * (1 - level) / 2:g} %", f"{100 * (1 + level) / 2:g} %"
    return pd.DataFrame({low: fit.beta - z * se, high: fit.beta + z * se}, index=pd.Index(fit.names, name="term"))


# ------------------------------------------------------------------ summary


def significance(p: float) -> str:
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "." if p < 0.1 else ""


def format_p(p: float) -> str:
    return "< 2e-16" if p < 2e-16 else f"{p:.3g}"


def random_effects_table(result) -> str:
    """Groups / Name / Variance / Std.Dev. / Corr, blank (never NaN) where a cell does not apply."""
    rows = [["Groups", "Name", "Variance", "Std.Dev.", "Corr"]]
    for group, terms, covariance in result.random_blocks():
        sd = np.sqrt(np.diag(covariance))
        for i, term in enumerate(terms):
            correlations = [
                f"{covariance[i, j] / (sd[i] * sd[j]):.2f}" if sd[i] > 0 and sd[j] > 0 else "" for j in range(i)
            ]
            rows.append(
                [group if i == 0 else "", term, f"{covariance[i, i]:.4g}", f"{sd[i]:.4g}", " ".join(correlations)]
            )
    sigma2 = result.fit.sigma2
    rows.append(["Residual", "", f"{sigma2:.4g}", f"{np.sqrt(sigma2):.4g}", ""])
    widths = [max(len(row[c]) for row in rows) for c in range(5)]
    return "\n".join(
        " " + " ".join(cell.ljust(w) if c < 2 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ).rstrip()


def fixed_effects_table(result) -> str:
    fixed = result.fixed
    table = pd.DataFrame(
        {
            "Estimate": fixed["estimate"].map(lambda v: f"{v:.4g}"),
            "Std. Error": fixed["se"].map(lambda v: f"{v:.4g}"),
            "df": fixed["df"].map(lambda v: f"{v:.4g}"),
            "t value": fixed["t"].map(lambda v: f"{v:.3f}"),
            "Pr(>|t|)": fixed["p_value"].map(format_p),
            "": fixed["p_value"].map(significance),
        },
        index=fixed.index.rename(None),
    )
    return table.to_string()


def scaled_residuals(result) -> str:
    """Quantiles of (y - X beta - Z b) / sigma, as lme4's summary (R's quantile type 7)."""
    residuals = (result.response - result.predict().to_numpy()) / np.sqrt(result.fit.sigma2)
    values = np.quantile(residuals, [0, 0.25, 0.5, 0.75, 1])
    names = ["Min", "1Q", "Median", "3Q", "Max"]
    cells = [f"{v:.4f}" for v in values]
    widths = [max(len(a), len(b)) for a, b in zip(names, cells)]
    return "\n".join(" ".join(c.rjust(w) for c, w in zip(row, widths)) for row in (names, cells))


def format_summary(result) -> str:
    fit = result.fit
    method = "Satterthwaite" if result.ddf == "satterthwaite" else "Kenward-Roger"
    lines = [
        f"Linear mixed model fit by {fit.method}. t-tests use {method}'s method",
        f"Formula: {result.formula}",
        "",
        f"REML criterion at convergence: {fit.deviance:.1f}"
        if fit.reml
        else "     AIC      BIC   logLik deviance\n"
        + f"{result.aic:8.1f} {result.bic:8.1f} {result.loglik:8.1f} {fit.deviance:8.1f}",
        "",
        "Scaled residuals:",
        scaled_residuals(result),
        "",
        "Random effects:",
        random_effects_table(result),
        f"Number of obs: {result.n}, groups:  {result.group_counts()}",
        "",
        "Fixed effects:",
        fixed_effects_table(result),
        "---",
        "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1",
    ]
    if result.is_singular:
        lines.append("boundary (singular) fit: see help('isSingular')")
    lines += [f"warning: {w}" for w in result.warnings + fit.warnings]
    return "\n".join(lines)
