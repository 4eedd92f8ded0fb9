"""`lmer`: fit a linear mixed model on any DataFrame with an lme4-style formula.

    fit = ipdpool.lmer("y ~ x1 + x2 + (1 + x1 | group)", data, reml=True)
    fit.fixed                       # estimate, se, df, t, p_value, ci_low, ci_high per term
    fit.contrast({"x1": 1, "x2": -1})

The fixed part is parsed by formulaic (a maintained formula library: factors, interactions,
transforms); the random part is limited to one `(terms | group)` with up to three terms,
which is what the engine fits. Rows with a missing value in any variable used are dropped
(and counted in the warnings), as lme4 does by default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import NotEstimable
from .crossprod import cross_products
from .lmm import DDF_METHODS, LmmFit, fit_lmm

RANDOM_PART = re.compile(r"\(\s*([^()|]+?)\s*\|\s*([^()|]+?)\s*\)")
MAX_RANDOM_TERMS = 3


def split_formula(formula: str) -> tuple[str, str, str]:
    """'y ~ x + (1 + x | g)' -> ('y ~ x', '1 + x', 'g')."""
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


@dataclass
class LmerResult:
    """A fitted model with what a reader needs: fixed effects with df-based inference,
    variance components, likelihood, singularity, sizes and warnings (like lmerTest's summary)."""

    formula: str
    fit: LmmFit
    ddf: str
    level: float
    group: str
    random_terms: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.fit.n

    @property
    def n_groups(self) -> int:
        return self.fit.k

    @property
    def is_singular(self) -> bool:
        return self.fit.is_singular

    @property
    def loglik(self) -> float:
        return self.fit.loglik

    @property
    def aic(self) -> float:
        return self.fit.aic

    @property
    def bic(self) -> float:
        return self.fit.bic

    @property
    def fixed(self) -> pd.DataFrame:
        rows = []
        for j, name in enumerate(self.fit.names):
            result = self.fit.contrast(np.eye(len(self.fit.names))[j], self.ddf, self.level)
            rows.append(
                {"term": name, **{k: result[k] for k in ("estimate", "se", "df", "t", "p_value", "ci_low", "ci_high")}}
            )
        return pd.DataFrame(rows).set_index("term")

    @property
    def variance_components(self) -> pd.DataFrame:
        """One row per random term (variance, SD) and per pair (covariance, correlation), then the residual."""
        d = self.fit.random_covariance
        sd = np.sqrt(np.diag(d))
        rows = [
            {"group": self.group, "term": t, "with": "", "variance": d[i, i], "sd": sd[i], "correlation": np.nan}
            for i, t in enumerate(self.random_terms)
        ]
        for i, j in zip(*np.tril_indices(len(self.random_terms), -1)):
            correlation = d[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
            rows.append(
                {
                    "group": self.group,
                    "term": self.random_terms[i],
                    "with": self.random_terms[j],
                    "variance": d[i, j],
                    "sd": np.nan,
                    "correlation": correlation,
                }
            )
        rows.append(
            {
                "group": "Residual",
                "term": "",
                "with": "",
                "variance": self.fit.sigma2,
                "sd": np.sqrt(self.fit.sigma2),
                "correlation": np.nan,
            }
        )
        return pd.DataFrame(rows)

    def contrast(self, weights, level: float | None = None) -> dict:
        """L beta for L given as {term: weight} or a vector over the fixed effects."""
        names = self.fit.names
        if isinstance(weights, dict):
            unknown = set(weights) - set(names)
            if unknown:
                raise KeyError(f"unknown fixed-effect terms {sorted(unknown)}; terms are {names}")
            vector = np.array([float(weights.get(name, 0.0)) for name in names])
        else:
            vector = np.asarray(weights, float)
            if vector.shape != (len(names),):
                raise ValueError(f"contrast needs {len(names)} weights, one per fixed effect {names}")
        return self.fit.contrast(vector, self.ddf, self.level if level is None else level)

    def summary(self) -> str:
        lines = [
            (
                f"Linear mixed model fit by {self.fit.method} "
                f"({'Satterthwaite' if self.ddf == 'satterthwaite' else 'Kenward-Roger'} df)"
            ),
            f"Formula: {self.formula}",
            (
                f"n = {self.n}, groups ({self.group}) = {self.n_groups}; "
                f"logLik {self.loglik:.4f}, AIC {self.aic:.4f}, BIC {self.bic:.4f}"
            ),
            "Random effects:", self.variance_components.to_string(index=False),
            "Fixed effects:", self.fixed.to_string(),
        ]  # fmt: skip
        if self.is_singular:
            lines.append("boundary (singular) fit: see warnings")
        lines += [f"warning: {w}" for w in self.warnings + self.fit.warnings]
        return "\n".join(lines)


def lmer(
    formula: str, data: pd.DataFrame, reml: bool = True, ddf: str = "satterthwaite", level: float = 0.95
) -> LmerResult:
    """Fit `y ~ fixed + (random | group)` on `data` (see the module docstring)."""
    import formulaic  # imported here: only this entry point parses formulas

    if ddf not in DDF_METHODS:
        raise ValueError(f"ddf must be one of {DDF_METHODS}, not {ddf!r}")
    fixed, random_terms, group = split_formula(formula)
    used = (
        set(formulaic.Formula(fixed).required_variables)
        | set(formulaic.Formula(random_terms).required_variables)
        | {group}
    )
    missing = sorted(used - set(data.columns))
    if missing:
        raise KeyError(f"columns not in the data: {missing}")
    complete = data.dropna(subset=sorted(used))
    notes = [f"{len(data) - len(complete)} rows with missing values dropped"] if len(complete) < len(data) else []
    matrices = formulaic.model_matrix(fixed, complete, na_action="raise")
    z = formulaic.model_matrix(random_terms, complete, na_action="raise")
    if z.shape[1] > MAX_RANDOM_TERMS:
        raise NotEstimable(f"{z.shape[1]} random-effect terms; the engine fits at most {MAX_RANDOM_TERMS}")
    y = np.asarray(matrices.lhs, float)[:, 0]
    x = np.asarray(matrices.rhs, float)
    cp = cross_products(
        x, np.asarray(z, float), y, complete[group].to_numpy(), list(matrices.rhs.columns), list(z.columns)
    )
    return LmerResult(formula, fit_lmm(cp, reml=reml), ddf, level, group, list(z.columns), notes)
