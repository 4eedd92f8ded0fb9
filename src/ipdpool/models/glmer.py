"""`glmer`: a logistic mixed model on any DataFrame with an lme4-style formula.

    fit = ipdpool.glmer("employed ~ ips + (1 | study)", data)                  # Laplace
    fit = ipdpool.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, nAGQ=9)
    fit.fixed          # estimate, se, z, p_value, ci_low, ci_high, odds_ratio, or_ci_low, or_ci_high
    likelihood_ratio_test(smaller, larger)                                     # as lme4's anova

The response is a 0/1 (or boolean) column, or cbind(successes, failures) of two count
expressions. Parsing follows `lmer` (ipdpool.models.api: formulaic for the fixed part, one
`(terms | group)` random part, here with at most two terms). Rows with a missing value in a
variable used are dropped and counted in the warnings, as lme4 does by default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..probabilities import chi2_sf, norm_quantile, norm_sf
from . import NotEstimable
from .formula import check_formula_text, r_power
from .glmm import BinomialData, GlmmFit, fit_glmm

MAX_RANDOM_TERMS = 2
CBIND = re.compile(r"\s*cbind\s*\((.*)\)\s*")
RANDOM_PART = re.compile(r"\(\s*([^()|]+?)\s*\|\s*([^()|]+?)\s*\)")


def split_formula(formula: str) -> tuple[str, str, str]:
    """'y ~ x + (1 + x | g)' -> ('y ~ x', '1 + x', 'g'). Parsed here, not by lmer's parser
    (models.api), which is being extended to several random parts that glmer does not fit."""
    if formula.count("~") != 1:
        raise ValueError(f"formula {formula!r} needs exactly one '~'")
    found = RANDOM_PART.findall(formula)
    if len(found) != 1:
        raise ValueError(f"formula {formula!r} needs exactly one random part '(terms | group)'; found {len(found)}")
    terms, group = found[0]
    if not re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*", group):
        raise ValueError(f"grouping factor {group!r} must be a column name")
    fixed = RANDOM_PART.sub("", formula)
    fixed = re.sub(r"\+\s*(?=\+|$)", "", re.sub(r"~\s*\+", "~ ", fixed)).strip()
    if fixed.rstrip().endswith("~"):
        fixed += " 1"
    return fixed, terms, group


def _split_arguments(text: str) -> list[str]:
    """Top-level comma split (commas inside calls stay)."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [part.strip() for part in parts + [current]]


def _expression(expr: str, frame: pd.DataFrame) -> np.ndarray:
    import formulaic

    matrix = formulaic.model_matrix(f"0 + I({expr})" if not expr.isidentifier() else f"0 + {expr}", frame)
    return np.asarray(matrix, float)[:, 0]


def response(lhs: str, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(share of successes, trials) per row, checked: counts whole and >= 0, trials > 0, or 0/1."""
    found = CBIND.fullmatch(lhs)
    if found:
        arguments = _split_arguments(found.group(1))
        if len(arguments) != 2:
            raise ValueError(f"cbind() needs two arguments (successes, failures), got {len(arguments)}")
        successes, failures = (_expression(a, frame) for a in arguments)
        for name, values in zip(arguments, (successes, failures)):
            bad = np.flatnonzero((values < 0) | (values != np.round(values)))
            if bad.size:
                raise ValueError(
                    f"{name}: {bad.size} rows are not whole non-negative counts (first at row {frame.index[bad[0]]})"
                )
        trials = successes + failures
        if (trials == 0).any():
            first = frame.index[np.flatnonzero(trials == 0)[0]]
            raise ValueError(f"{int((trials == 0).sum())} rows have no trials (first at row {first})")
        return successes / trials, trials
    values = _expression(lhs.strip(), frame)
    bad = np.flatnonzero((values != 0) & (values != 1))
    if bad.size:
        raise ValueError(
            f"response {lhs.strip()!r}: {bad.size} rows are not 0/1 (first at row {frame.index[bad[0]]}); "
            "use cbind(successes, failures) for counts"
        )
    return values, np.ones_like(values)


@dataclass
class GlmerResult:
    """A fitted logistic mixed model with Wald z inference on the log-odds and odds-ratio scales."""

    formula: str
    fit: GlmmFit = field(repr=False)  # holds the model's rows: a repr prints the fit's summary only
    level: float
    group: str
    group_levels: list
    warnings: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.fit.data.n

    @property
    def n_groups(self) -> int:
        return self.fit.data.k

    @property
    def n_agq(self) -> int:
        return self.fit.n_agq

    @property
    def theta(self) -> np.ndarray:
        return self.fit.theta

    @property
    def is_singular(self) -> bool:
        return self.fit.is_singular

    @property
    def loglik(self) -> float:
        return self.fit.loglik

    @property
    def deviance(self) -> float:
        """-2 log-likelihood (lme4's optimizer criterion; lme4's deviance() is the conditional
        sum of squared deviance residuals instead)."""
        return self.fit.objective

    @property
    def aic(self) -> float:
        return self.fit.objective + 2 * self.fit.n_parameters

    @property
    def bic(self) -> float:
        return self.fit.objective + np.log(self.n) * self.fit.n_parameters

    @property
    def fixed(self) -> pd.DataFrame:
        beta, se = self.fit.beta, np.sqrt(np.diag(self.fit.vcov))
        z = beta / se
        half = norm_quantile(0.5 + self.level / 2) * se
        frame = pd.DataFrame(
            {
                "estimate": beta,
                "se": se,
                "z": z,
                "p_value": 2 * norm_sf(np.abs(z)),
                "ci_low": beta - half,
                "ci_high": beta + half,
                "odds_ratio": np.exp(beta),
                "or_ci_low": np.exp(beta - half),
                "or_ci_high": np.exp(beta + half),
            },
            index=pd.Index(self.fit.data.names, name="term"),
        )
        return frame

    @property
    def variance_components(self) -> pd.DataFrame:
        d = self.fit.random_covariance
        sd = np.sqrt(np.diag(d))
        names = self.fit.data.random_names
        rows = [
            {"term": t, "with": "", "variance": d[i, i], "sd": sd[i], "correlation": np.nan}
            for i, t in enumerate(names)
        ]
        if len(names) == 2:
            correlation = d[1, 0] / (sd[0] * sd[1]) if sd[0] > 0 and sd[1] > 0 else np.nan
            rows.append(
                {"term": names[1], "with": names[0], "variance": d[1, 0], "sd": np.nan, "correlation": correlation}
            )
        return pd.DataFrame(rows).assign(group=self.group)

    @property
    def random_effects(self) -> pd.DataFrame:
        """Conditional modes per group (lme4's ranef)."""
        return pd.DataFrame(self.fit.random_effects, index=self.group_levels, columns=self.fit.data.random_names)

    def summary(self) -> str:
        method = "Laplace" if self.n_agq == 1 else f"adaptive Gauss-Hermite quadrature, nAGQ = {self.n_agq}"
        lines = [
            f"Generalized linear mixed model fit by maximum likelihood ({method}); family binomial, logit link",
            f"Formula: {self.formula}",
            f"n = {self.n}, groups ({self.group}) = {self.n_groups}; logLik {self.loglik:.4f}, AIC {self.aic:.4f}",
            "Random effects:", self.variance_components.to_string(index=False),
            "Fixed effects:", self.fixed.to_string(),
        ]  # fmt: skip
        if self.is_singular:
            lines.append("boundary (singular) fit")
        lines += [f"warning: {w}" for w in self.warnings + self.fit.warnings]
        return "\n".join(lines)


def likelihood_ratio_test(smaller: GlmerResult, larger: GlmerResult) -> dict:
    """Chi-squared test of nested models fitted to the same rows (lme4's anova for glmer fits)."""
    if smaller.n != larger.n or not np.array_equal(smaller.fit.data.y, larger.fit.data.y):
        raise ValueError("the two models were not fitted to the same responses: refit on the same rows")
    if smaller.n_agq != larger.n_agq:
        raise ValueError("the two models use different nAGQ: their likelihoods are not comparable")
    df = larger.fit.n_parameters - smaller.fit.n_parameters
    if df <= 0:
        raise ValueError(
            f"the larger model must have more parameters ({larger.fit.n_parameters} vs {smaller.fit.n_parameters})"
        )
    chisq = max(2 * (larger.loglik - smaller.loglik), 0.0)
    return {"chisq": chisq, "df": df, "p_value": float(chi2_sf(chisq, df))}


def glmer(
    formula: str, data: pd.DataFrame, family: str = "binomial", nAGQ: int = 1, level: float = 0.95
) -> GlmerResult:
    """Fit `response ~ fixed + (random | group)` by Laplace (nAGQ = 1) or adaptive quadrature."""
    import formulaic

    if family != "binomial":
        raise ValueError(f"family must be 'binomial' (logit link), not {family!r}")
    # lmer's guards: only lme4's usual calls are evaluated, and `^` inside a call is R's power
    # (formulaic would read it as Python's XOR)
    fixed, random_terms, group = split_formula(r_power(formula))
    lhs, rhs = fixed.split("~")
    found = CBIND.fullmatch(lhs)
    lhs_sources = _split_arguments(found.group(1)) if found else [lhs.strip()]
    for text in [rhs, random_terms, *lhs_sources]:
        check_formula_text(text)
    used = set(formulaic.Formula(rhs).required_variables) | set(formulaic.Formula(random_terms).required_variables)
    for source in lhs_sources:
        used |= set(formulaic.Formula(f"0 + I({source})").required_variables)
    used |= {group}
    missing = sorted(used - set(data.columns))
    if missing:
        raise KeyError(f"columns not in the data: {missing}")
    complete = data.dropna(subset=sorted(used))
    # formulaic treats only object and categorical columns as factors, not pandas' string dtype
    strings = [c for c in used if isinstance(complete[c].dtype, pd.StringDtype)]
    complete = complete.astype(dict.fromkeys(strings, object))
    notes = [f"{len(data) - len(complete)} rows with missing values dropped"] if len(complete) < len(data) else []
    y, trials = response(lhs, complete)
    x = formulaic.model_matrix(rhs, complete, na_action="raise")
    z = formulaic.model_matrix(random_terms, complete, na_action="raise")
    if z.shape[1] > MAX_RANDOM_TERMS:
        raise NotEstimable(f"{z.shape[1]} random-effect terms; glmer here fits at most {MAX_RANDOM_TERMS}")
    codes, levels = pd.factorize(complete[group], sort=True)
    model_data = BinomialData(
        np.asarray(x, float), np.asarray(z, float), codes, len(levels), y, trials, list(x.columns), list(z.columns)
    )
    return GlmerResult(formula, fit_glmm(model_data, nAGQ), level, group, list(levels), notes)
