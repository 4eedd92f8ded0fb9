"""`glmer`: a logistic mixed model on any DataFrame with an lme4-style formula.

    fit = ipdpool.glmer("employed ~ ips + (1 | study)", data)                  # Laplace
    fit = ipdpool.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, nAGQ=9)
    fit.fixed          # estimate, se, z, p_value, ci_low, ci_high, odds_ratio, or_ci_low, or_ci_high
    likelihood_ratio_test(smaller, larger)                                     # as lme4's anova

The response is a 0/1 (or boolean) column, or cbind(successes, failures) of two count
expressions. The formula goes through lmer's formula layer (ipdpool.models.api and formula.py:
the random part, `^` as R's power, the allowed calls, dotted names, unused levels, aliased
columns dropped, polynomial contrasts of ordered factors, lme4's refusals), here with one
`(terms | group)` of at most two terms; only the cbind() response is glmer's own. Rows with a
missing value in a variable used are dropped and counted in the warnings, as lme4 does.
"""

from __future__ import annotations

import re
import warnings as pywarnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..probabilities import chi2_sf, norm_quantile, norm_sf
from . import NotEstimable
from .api import check_grouping, check_identifiable, group_labels, used_rows
from .formula import (
    CONTEXT,
    FormulaError,
    check_columns,
    check_finite,
    check_formula_text,
    fixed_design,
    numeric_columns,
    polynomial_coded,
    quote_dotted,
    r_power,
    rank_warning,
    required_variables,
    split_random,
)
from .glmm import BinomialData, GlmmFit, fit_glmm

MAX_RANDOM_TERMS = 2
CBIND = re.compile(r"\s*cbind\s*\((.*)\)\s*")


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

    return np.asarray(formulaic.model_matrix(f"0 + I({expr})", frame, context=CONTEXT), float)[:, 0]


NOT_NUMERIC = (
    "response {name!r} is not numeric: lme4 refuses it too ('response must be numeric or factor'); "
    "code it 0/1, or make it a pandas Categorical (its first level is the failure, as in lme4's factor)"
)


def _binary_response(expr: str, frame: pd.DataFrame) -> np.ndarray:
    """A 0/1 response by lme4's rules: numbers and booleans as they are; a factor (pandas
    Categorical) is a success for every level but the first; text is refused, as lme4 does
    (formulaic would otherwise turn it into the indicator of its first sorted level)."""
    if expr in frame.columns:
        column = frame[expr]
        if isinstance(column.dtype, pd.CategoricalDtype):
            return np.where(column.isna(), np.nan, column.cat.codes > 0)
        numeric = pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
        if not numeric and pd.api.types.infer_dtype(column, skipna=True) not in ("boolean", "integer", "floating"):
            raise FormulaError(NOT_NUMERIC.format(name=expr))
    import formulaic

    matrix = formulaic.model_matrix(f"0 + I({expr})", frame, context=CONTEXT)
    if matrix.shape[1] != 1:
        raise FormulaError(NOT_NUMERIC.format(name=expr))
    return np.asarray(matrix, float)[:, 0]


def response(lhs: str, frame: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of successes, trials) per row, checked: counts whole and >= 0, trials > 0, or 0/1.
    `rows`: the data's row numbers (from 1) of the frame's rows, for messages."""
    found = CBIND.fullmatch(lhs)
    if found:
        arguments = _split_arguments(found.group(1))
        successes, failures = (_expression(a, frame) for a in arguments)
        for name, values in zip(arguments, (successes, failures)):
            check_finite({name: values}, rows, "response count")
            bad = np.flatnonzero((values < 0) | (values != np.round(values)))
            if bad.size:
                raise FormulaError(
                    f"{name}: {bad.size} rows are not whole non-negative counts (first at row {rows[bad[0]]})"
                )
        trials = successes + failures
        if (trials == 0).any():
            first = rows[np.flatnonzero(trials == 0)[0]]
            raise FormulaError(f"{int((trials == 0).sum())} rows have no trials (first at row {first})")
        return successes / trials, trials
    values = _binary_response(lhs.strip(), frame)
    check_finite({lhs.strip(): values}, rows, "response")
    bad = np.flatnonzero((values != 0) & (values != 1))
    if bad.size:
        raise FormulaError(
            f"response {lhs.strip()!r}: {bad.size} rows are not 0/1 (first at row {rows[bad[0]]}); "
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
        with np.errstate(over="ignore"):  # a separated term's odds-ratio limit is inf
            return self._fixed_frame(beta, se, z, half)

    def _fixed_frame(self, beta, se, z, half) -> pd.DataFrame:
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


def response_sources(lhs: str) -> list[str]:
    """The expressions of the response: the column (or expression), or cbind()'s two."""
    if not lhs.strip():
        raise FormulaError("the formula needs a response left of '~'")
    found = CBIND.fullmatch(lhs)
    if not found:
        return [lhs.strip()]
    arguments = _split_arguments(found.group(1))
    if len(arguments) != 2:
        raise FormulaError(f"cbind() needs two arguments (successes, failures), got {len(arguments)}")
    return arguments


def placeholder(columns) -> str:
    """A column name not in the data, for the response of the fixed design."""
    name = "glmer_response"
    while name in columns:
        name += "_"
    return name


def glmer(
    formula: str, data: pd.DataFrame, family: str = "binomial", nAGQ: int = 1, level: float = 0.95
) -> GlmerResult:
    """Fit `response ~ fixed + (random | group)` by Laplace (nAGQ = 1) or adaptive quadrature."""
    import formulaic

    if family != "binomial":
        raise ValueError(f"family must be 'binomial' (logit link), not {family!r}")
    fixed, parts = split_random(r_power(formula))
    if len(parts) != 1:
        raise NotEstimable(
            f"formula {formula!r} has {len(parts)} random parts after expanding '/'; glmer fits one '(terms | group)'"
        )
    part = parts[0]
    if not part.correlated:
        raise NotEstimable("'||' (uncorrelated random effects) is not fitted by glmer; write '|'")
    fixed, random_terms = quote_dotted(fixed, data.columns), quote_dotted(part.terms, data.columns)
    lhs, rhs = fixed.split("~", 1)
    sources = response_sources(lhs)
    for text in [rhs, random_terms, *sources]:
        check_formula_text(text)
    used = required_variables(rhs, data.columns) | required_variables(random_terms, data.columns)
    for source in sources:
        used |= required_variables(source, data.columns)
    used |= set(part.group.split(":"))
    check_columns(used, data)
    frame, rows, notes = used_rows(data, sorted(used))
    check_finite(numeric_columns(frame, sorted(used)), rows, "column")
    labels = group_labels(frame, part.group)
    check_grouping(labels, len(frame))
    y, trials = response(lhs, frame, rows)
    if np.ptp(y) == 0 and y[0] in (0, 1):
        raise FormulaError("the response is constant over the rows used (lme4 refuses it too)")
    # the fixed part through lmer's design (the response computed above stands in for the left side)
    name = placeholder(frame.columns)
    _, design = fixed_design(polynomial_coded(f"{name} ~ {rhs}", frame), frame.assign(**{name: y}), rows)
    if design.dropped:
        notes.append(rank_warning(design.dropped))
        pywarnings.warn(notes[-1], stacklevel=2)
    z = formulaic.model_matrix(random_terms, frame, na_action="ignore", context=CONTEXT)
    check_finite({column: z[column] for column in z.columns}, rows, "random-effect column")
    check_identifiable(len(frame), labels.nunique(), z.shape[1], f"({part.terms} | {part.group})")
    if z.shape[1] > MAX_RANDOM_TERMS:
        raise NotEstimable(f"{z.shape[1]} random-effect terms; glmer here fits at most {MAX_RANDOM_TERMS}")
    codes, levels = pd.factorize(labels, sort=True)
    x = design.x
    model_data = BinomialData(
        x.to_numpy(float), np.asarray(z, float), codes, len(levels), y, trials, list(x.columns), list(z.columns)
    )
    return GlmerResult(formula, fit_glmm(model_data, nAGQ), level, part.group, list(levels), notes)
