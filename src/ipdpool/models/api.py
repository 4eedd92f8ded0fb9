"""`lmer`: fit a linear mixed model on any DataFrame with an lme4-style formula.

    fit = ipdpool.lmer("y ~ x1 + x2 + (1 + x1 | group)", data, reml=True)
    fit.fixed                       # estimate, se, df, t, p_value, ci_low, ci_high per term
    fit.contrast({"x1": 1, "x2": -1})
    fit.anova()                     # Type III F tests per term (lmerTest's anova)
    fit.ranef()                     # conditional modes and variances (lme4's ranef(condVar = TRUE))
    fit.predict(newdata)            # group level (lme4's re.form = NULL); re_form="~0": population level
    fit.confint()                   # Wald intervals of the fixed effects
    print(fit.summary())            # lmerTest's summary layout

The fixed part is parsed by formulaic (a maintained formula library: factors, interactions,
transforms) with lme4's semantics (see formula.py: `^` inside a call is power, unused levels and
aliased columns dropped, lme4's refusals); the random part is one `(terms | group)` or `(terms || group)`
with up to three terms, or that and a random intercept of a factor nested in the group (`(1 | a/b)`,
`(terms | a) + (1 | a:b)`; nested_api.py), which is what the engine fits. Rows with a missing value in any
variable used are dropped (and counted in the warnings), as lme4 does by default.
"""

from __future__ import annotations

import dataclasses
import re
import warnings as pywarnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import NotEstimable
from .crossprod import cross_products
from .formula import (
    CONTEXT,
    FixedDesign,
    FormulaError,
    RandomPart,
    check_columns,
    check_finite,
    check_formula_text,
    check_response,
    drop_unused_levels,
    fixed_design,
    numeric_columns,
    polynomial_coded,
    prepare_columns,
    quote_dotted,
    r_power,
    rank_warning,
    required_variables,
    split_random,
)
from .lmm import DDF_METHODS, LmmFit, fit_lmm
from .results import (
    RandomEffects,
    conditional_modes,
    format_summary,
    label_strings,
    wald_intervals,
)

MAX_RANDOM_TERMS = 3


@dataclass(frozen=True)
class RandomStructure:
    """What the engine fits: one `(terms | group)`, or that and a random intercept of a factor
    nested in the group (`centre`: lme4's name of it, e.g. 'cask:batch' for `(1 | batch/cask)`)."""

    fixed: str
    study: RandomPart
    centre: str | None = None
    interaction: bool = True  # the centre factor is study:centre (else a column coded nested in study)
    centre_written_first: bool = False  # lme4 keeps the written order of two terms with as many levels


NESTED_FORMS = "one '(terms | group)', or '(1 | group/centre)' or '(terms | group) + (1 | group:centre)'"


def random_structure(formula: str, data: pd.DataFrame) -> RandomStructure:
    """The random part of `formula` as the engine fits it; anything else is refused in one sentence."""
    fixed, parts = split_random(r_power(formula))
    columns = data.columns
    if len(parts) == 1:
        return RandomStructure(fixed, parts[0])
    if len(parts) == 2:
        for centre_first, (study, centre) in ((False, parts), (True, parts[::-1])):
            factors = centre.group.split(":")
            if ":" in study.group or centre.terms.replace(" ", "") != "1" or study.group not in columns:
                continue
            if len(factors) == 2 and study.group in factors and factors[0] != factors[1]:
                return RandomStructure(fixed, study, centre.group, centre_written_first=centre_first)
            # lme4 fits (1 | centre) + (1 | study) as (1 | study) + (1 | centre): whichever is written
            # first, the factor whose levels nest in the other's is the centre.
            backwards = nests_in(data, study.group, centre.group) and not nests_in(data, centre.group, study.group)
            if len(factors) == 1 and factors[0] != study.group and not backwards:
                return RandomStructure(fixed, study, centre.group, interaction=False, centre_written_first=centre_first)
    raise NotEstimable(
        f"formula {formula!r} has {len(parts)} random parts after expanding '/' that are not a factor nested in "
        f"another with a random intercept (crossed or deeper nesting is not fitted); the engine fits {NESTED_FORMS}"
    )


def nests_in(data: pd.DataFrame, inner: str, outer: str) -> bool:
    """Whether every level of the column `inner` occurs within one level of the column `outer`."""
    if inner == outer or inner not in data.columns or outer not in data.columns:
        return False
    rows = data[[inner, outer]].dropna()
    return bool(rows.groupby(inner, observed=True)[outer].nunique().max() <= 1) if len(rows) else False


def group_labels(frame: pd.DataFrame, group: str) -> pd.Series:
    """The grouping factor's labels; an interaction a:b labels each combination (as lme4)."""
    columns = group.split(":")
    if len(columns) == 1:
        return frame[group]
    # Each factor as lme4 prints it (1.0 as "1"), so ids stored as float in new data find their centres.
    parts = [label_strings(frame[column]) for column in columns]
    return pd.Series([":".join(labels) for labels in zip(*parts)], index=frame.index, name=group, dtype=object)


@dataclass
class LmerResult:
    """A fitted model with what a reader needs: fixed effects with df-based inference,
    variance components, likelihood, singularity, sizes and warnings (like lmerTest's summary),
    and lme4's result methods (anova, ranef, predict, confint)."""

    formula: str
    fit: LmmFit
    ddf: str
    level: float
    group: str
    random_terms: list[str]
    warnings: list[str] = field(default_factory=list)
    design: FixedDesign | None = field(default=None, repr=False)
    random_spec: object = field(default=None, repr=False)  # formulaic ModelSpec of the random terms
    frame: pd.DataFrame | None = field(default=None, repr=False)  # the rows used (for anova and fitted values)
    random_variables: set = field(default_factory=set, repr=False)
    z: np.ndarray | None = field(default=None, repr=False)  # random-effect columns of the rows used
    response: np.ndarray | None = field(default=None, repr=False)
    row_index: pd.Index | None = field(default=None, repr=False)  # the data's labels of the rows used

    def __repr__(self) -> str:
        return (
            f"<LmerResult {self.fit.method} {self.formula!r}: n={self.n}, {self.group}={self.n_groups}, "
            f"{len(self.fit.names)} fixed effects, logLik {self.loglik:.4f}"
            f"{', singular' if self.is_singular else ''}; .summary() for the tables>"
        )

    @property
    def n(self) -> int:
        return self.fit.n

    @property
    def grouping_columns(self) -> set[str]:
        return set(self.group.split(":"))

    def random_blocks(self) -> list[tuple[str, list[str], np.ndarray]]:
        """(grouping factor, its terms, their covariance) per random term, as lme4 prints them."""
        return [(self.group, self.random_terms, self.fit.random_covariance)]

    def group_counts(self) -> str:
        return f"{self.group}, {self.n_groups}"

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

    # -------------------------------------------------------------- lme4's methods

    def anova(self, ddf: str | None = None) -> pd.DataFrame:
        """Type III F test of each model term, as lmerTest's anova(type = 3): columns Sum Sq,
        Mean Sq, NumDF, DenDF, F value, Pr(>F); `ddf` "satterthwaite" or "kenward_roger"
        (REML only), by default the fit's."""
        from .anova import anova_table, type3_contrasts

        ddf = self.ddf if ddf is None else ddf
        if ddf not in DDF_METHODS:
            raise ValueError(f"ddf must be one of {DDF_METHODS}, not {ddf!r}")
        return anova_table(self.fit, type3_contrasts(self.design, self.frame), ddf)

    def ranef(self) -> RandomEffects:
        """Conditional modes of the random effects and their conditional covariances, per group
        (lme4's ranef(condVar = TRUE))."""
        return conditional_modes(
            self.fit,
            self.design.x.to_numpy(float),
            self.z,
            self.response,
            group_labels(self.frame, self.group),
            self.random_terms,
        )

    def confint(self, level: float | None = None) -> pd.DataFrame:
        """Wald intervals of the fixed effects with normal quantiles, as lme4's
        confint(method = "Wald"); lme4 gives NA for the variance parameters, so they are left out."""
        return wald_intervals(self.fit, self.level if level is None else level)

    def predict(self, newdata: pd.DataFrame | None = None, re_form=None, allow_new_levels: bool = False) -> pd.Series:
        """Predicted means for the rows of `newdata` (default: the rows fitted, indexed by their
        labels in the data, as lme4's fitted()), as lme4's predict: re_form=None (default, lme4's
        NULL) adds each group's conditional modes; "~0", "NA" or a missing value (lme4's NA) gives the
        population level X beta; a formula naming some of the random terms (lme4's re.form, e.g.
        "~(1 | study)" of a `(1 | study/centre)` fit) adds only those, the others at 0. Factors of the
        new data are matched to the fit's levels by label (R's "1" for 1 or 1.0); a level not in the
        fit is refused. A group not in the fit, or a missing group, of a factor whose terms are added
        is refused, as lme4 does by default; allow_new_levels=True predicts it at the population level
        of that factor (lme4's allow.new.levels = TRUE). Rows with a missing predictor get NaN
        (lme4's na.pass)."""
        frame = self.frame if newdata is None else newdata
        index = self.row_index if newdata is None and self.row_index is not None else frame.index
        included, needed = self._included_terms(re_form)
        variables = needed | self.design.predictors
        check_columns(variables, frame)
        groups_only = self._group_only_columns() & needed
        complete = frame[sorted(variables - groups_only)].notna().all(axis=1).to_numpy()
        out = np.full(len(frame), np.nan)
        if complete.any():
            rows = prepare_columns(frame.loc[complete, sorted(variables)])
            if newdata is not None:
                rows = self._as_fitted(rows, variables, bool(included))
            x = model_matrix(self.design.spec, rows, "fixed part")[list(self.design.x.columns)]
            values = np.asarray(x, float) @ self.fit.beta
            if included:
                values += self._group_part(rows, allow_new_levels, included, needed)
            out[complete] = values
        return pd.Series(out, index=index, name="prediction")

    def _as_fitted(self, rows: pd.DataFrame, variables: set[str], random: bool) -> pd.DataFrame:
        """The new rows' factors recoded to the fit's values by label (refusing a level the fit has
        not), and a column numeric in the fit refused by name where the new data hold text."""
        specs = [self.design.spec] + ([self.random_spec] if random else [])
        factors = set().union(*(factor_columns(spec, self.frame.columns) for spec in specs)) & variables
        out = rows.copy()
        for name in sorted(factors):
            out[name] = as_fitted_levels(rows[name], self.frame[name], name)
        for name in sorted(variables - factors - self._group_only_columns()):
            out[name] = as_fitted_kind(out[name], self.frame[name], name)
        return out

    def _group_only_columns(self) -> set[str]:
        """Columns used only as grouping factors (a missing one is a missing group, not NaN)."""
        return self.grouping_columns - self.design.predictors - self.random_variables

    def _included_terms(self, re_form) -> tuple[dict[str, list[str]], set[str]]:
        """lme4's re.form: ({grouping factor: its terms whose modes a prediction adds}, the columns
        those need). A factor must be named as lme4 names it (`(1 | a/b)` makes 'b:a'), and only
        terms of the fit, each once, as lme4 requires."""
        blocks = {group: terms for group, terms, _ in self.random_blocks()}
        if re_form is None:
            return blocks, self.random_variables | self.grouping_columns
        if is_population(re_form):
            return {}, set()
        text = re.sub(r"`([A-Za-z_.][A-Za-z0-9_.]*)`", r"\1", re_form).strip() if isinstance(re_form, str) else ""
        while re.search(r"\(\s*\([^()]*\)\s*\)", text):  # lme4 reads ((1 | g)) as (1 | g)
            text = re.sub(r"\(\s*(\([^()]*\))\s*\)", r"\1", text)
        parts = split_random(r_power("y " + text))[1] if text.startswith("~") and text.count("~") == 1 else []
        if not parts:
            raise ValueError(
                f"re_form must be None (all random terms), '~0' or 'NA' (none), or random terms of the fit such "
                f"as '~(1 | {self.group})'"
            )
        included, variables = {}, set()
        for part in parts:
            names, needed = self._term_names(part, blocks)
            twice = sorted(names & included.get(part.group, set()))
            if twice:
                raise ValueError(f"re_form names the terms {twice} of {part.group!r} twice (lme4 adds them twice)")
            included.setdefault(part.group, set()).update(names)
            variables |= needed | set(part.group.split(":"))
        return {
            group: [t for t in blocks[group] if t in included[group]] for group in blocks if group in included
        }, variables

    def _term_names(self, part: RandomPart, blocks: dict[str, list[str]]) -> tuple[set[str], set[str]]:
        """(the fit's names of the terms of one re_form part, the columns they use); anything lme4
        would refuse is refused."""
        import formulaic  # imported here: only formula entry points need it

        if part.group not in blocks:
            raise ValueError(
                f"re_form names the grouping factor {part.group!r}, which is not one of the fit's "
                f"{sorted(blocks)} (lme4 refuses it too)"
            )
        terms = quote_dotted(part.terms, self.frame.columns)
        needed = required_variables(terms, self.frame.columns)
        if needed - set(self.frame.columns):
            raise ValueError(
                f"re_form's terms of {part.group!r} use {sorted(needed - set(self.frame.columns))}, which the "
                "fit's random terms do not (lme4 refuses them too)"
            )
        names = set(formulaic.model_matrix(terms, self.frame, context=CONTEXT, na_action="ignore").columns)
        unknown = sorted(names - set(blocks[part.group]))
        if unknown:
            raise ValueError(f"re_form's terms {unknown} of {part.group!r} are not in the fit (lme4 refuses them too)")
        return names, needed

    def _modes(self) -> dict[str, pd.DataFrame]:
        """Conditional modes per grouping factor (levels x terms), indexed by `_level_keys`."""
        return {self.group: self.ranef().modes}

    def _level_keys(self, rows: pd.DataFrame, group: str) -> pd.Index:
        """Each row's level of `group`, as `_modes` indexes the levels (the printed labels: the fit
        groups rows by them, as lme4)."""
        return pd.Index(label_strings(group_labels(rows, group)))

    def _random_columns(self, group: str, rows: pd.DataFrame, needed: set[str]) -> pd.DataFrame:
        """The random-effect columns of `group`'s terms for `rows`. A variable of a term that
        re_form leaves out is not read (lme4 sets it to NA): it is filled from the fit's first row
        so that the fit's model spec evaluates; its columns are not used."""
        unread = sorted(self.random_variables - needed)
        filled = rows.assign(**{name: self.frame[name].iloc[0] for name in unread}) if unread else rows
        z = model_matrix(self.random_spec, filled, f"random terms of {group!r}")
        return pd.DataFrame(np.asarray(z, float), index=rows.index, columns=self.random_terms)

    def _group_part(
        self, rows: pd.DataFrame, allow_new_levels: bool, included: dict[str, list[str]], needed: set[str]
    ) -> np.ndarray:
        """Z b over the included terms; a level not in the fit, or a missing one, has b = 0 (refused
        unless allowed)."""
        modes = self._modes()
        total, new, missing = np.zeros(len(rows)), {}, {}
        for group, terms in included.items():
            absent = rows[group.split(":")].isna().any(axis=1).to_numpy()
            position = modes[group].index.get_indexer(self._level_keys(rows, group))
            position[absent] = -1
            if absent.any():
                missing[group] = int(absent.sum())
            if ((position < 0) & ~absent).any():
                new[group] = int(((position < 0) & ~absent).sum())
            effects = np.zeros((len(rows), len(terms)))
            effects[position >= 0] = modes[group][terms].to_numpy()[position[position >= 0]]
            total += np.einsum("ij,ij->i", self._random_columns(group, rows, needed)[terms].to_numpy(), effects)
        if missing and not allow_new_levels:
            counts = ", ".join(f"{count} of {group!r}" for group, count in missing.items())
            raise ValueError(
                f"rows have a missing grouping value ({counts}): pass allow_new_levels=True to predict them at the "
                "population level of that factor (lme4 refuses them too)"
            )
        if new and not allow_new_levels:
            counts = ", ".join(f"{count} of {group!r}" for group, count in new.items())
            raise ValueError(
                f"rows have levels not in the fit ({counts}): pass allow_new_levels=True to predict them at "
                "the population level of that factor (lme4 refuses them too)"
            )
        return total

    def summary(self) -> str:
        """The fit as lmerTest's summary prints it (random effects, then fixed effects)."""
        return format_summary(self)


def is_population(re_form) -> bool:
    """lme4's re.form = NA or ~0: "NA", "~0" (any spacing), or a missing value (R's NA)."""
    if isinstance(re_form, str):
        return re.sub(r"\s", "", re_form) in ("NA", "~0")
    return re_form is pd.NA or (isinstance(re_form, float) and np.isnan(re_form))


def factor_columns(spec, columns) -> set[str]:
    """The data columns that a model spec's factors are (`k`, `C(k)`, `C(k, contr.poly)`); a factor of
    another expression is left to `model_matrix`'s check."""
    names = set()
    for factor in spec.factor_contrasts:
        expression = str(factor).strip()
        call = re.fullmatch(r"C\(\s*(`[^`]+`|[A-Za-z_.][A-Za-z0-9_.]*)\s*(,.*)?\)", expression, re.S)
        name = (call.group(1) if call else expression).strip("`")
        if name in columns:
            names.add(name)
    return names


def is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def numeric_kind(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def as_fitted_kind(given: pd.Series, fitted: pd.Series, name: str) -> pd.Series:
    """`given` as numbers (or True/False) where the fit has them, whatever its storage (a Categorical
    of numbers, an object column of bools); a row holding anything else is refused by name and count."""
    logical = pd.api.types.is_bool_dtype(fitted)
    if not (logical or numeric_kind(fitted)) or numeric_kind(given) or pd.api.types.is_bool_dtype(given):
        return given
    values = given.dropna().astype(object)
    wrong = len(values) - int(values.map(lambda v: isinstance(v, (bool, np.bool_)) if logical else is_number(v)).sum())
    if not wrong:
        return given.astype(object).astype(bool if logical else float)
    kind = "logical (True/False)" if logical else "numeric"
    raise ValueError(
        f"column {name!r} is {kind} in the fit but {wrong} rows of the new data hold something else (lme4 refuses "
        "them too)"
    )


def as_fitted_levels(given: pd.Series, fitted: pd.Series, name: str) -> pd.Series:
    """`given` as the fit's values of the factor `name`, matched by label (R matches a factor's levels
    by their text: 1, 1.0 and "1" are one level); a row with a level not in the fit is refused, as lme4
    refuses new levels. A column whose fitted values share a label is left as it is."""
    codes, values = pd.factorize(fitted)
    labels = label_strings(pd.Series(values))
    if len(set(labels)) != len(labels):
        return given
    first = np.unique(codes, return_index=True)[1]
    given_codes, given_values = pd.factorize(given)
    position = pd.Index(labels).get_indexer(label_strings(pd.Series(given_values)))
    unknown = int((position[given_codes] < 0).sum())
    if unknown:
        raise ValueError(
            f"{unknown} rows of the new data have a level of factor {name!r} that is not in the fit (lme4 refuses "
            "new levels too)"
        )
    return fitted.iloc[first[position[given_codes]]].set_axis(given.index)


def model_matrix(spec, rows: pd.DataFrame, part: str) -> pd.DataFrame:
    """The spec's model matrix of new rows; a factor value outside the fit's levels that the column
    checks could not see (a factor of an expression) is refused rather than coded as the reference."""
    from formulaic.errors import DataMismatchWarning, FactorEncodingError

    with pywarnings.catch_warnings():
        pywarnings.simplefilter("error", DataMismatchWarning)
        try:
            return spec.get_model_matrix(rows, context=CONTEXT, na_action="ignore")
        except (DataMismatchWarning, FactorEncodingError):
            raise ValueError(
                f"the new data have a value of a factor of the {part} that is not one of the fit's levels, or text "
                "where the fit has numbers"
            ) from None


def used_rows(data: pd.DataFrame, used: list[str]) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """The complete rows of the used columns with unused levels dropped, their row numbers in
    `data` (from 1) and a note on the rows dropped."""
    complete = data[used].notna().all(axis=1).to_numpy()
    frame = drop_unused_levels(prepare_columns(data.loc[complete, used].reset_index(drop=True)))
    dropped = len(data) - int(complete.sum())
    return frame, np.flatnonzero(complete) + 1, [f"{dropped} rows with missing values dropped"] if dropped else []


def check_grouping(labels: pd.Series, n: int) -> None:
    """lme4's checks of a grouping factor: more than one level, fewer levels than rows."""
    k = labels.nunique()
    if k < 2:
        raise FormulaError(f"grouping factor {labels.name!r} must have > 1 sampled level (lme4 refuses it too)")
    if k >= n:
        raise FormulaError(
            f"grouping factor {labels.name!r} has {k} levels for {n} rows: the number of levels must be < the number "
            "of observations (lme4 refuses it too)"
        )


def check_identifiable(n: int, k: int, q: int, term: str) -> None:
    if n <= k * q:
        raise FormulaError(
            f"number of observations (={n}) <= number of random effects (={k * q}) for term {term}: the "
            "random-effects parameters and the residual variance are probably unidentifiable (lme4 refuses it too)"
        )


def check_options(reml: bool, ddf: str, level: float) -> None:
    if ddf not in DDF_METHODS:
        raise ValueError(f"ddf must be one of {DDF_METHODS}, not {ddf!r}")
    if ddf == "kenward_roger" and not reml:
        raise ValueError("Kenward-Roger's method is only available for REML model fits (as lmerTest and pbkrtest)")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, not {level}")


def lmer(
    formula: str, data: pd.DataFrame, reml: bool = True, ddf: str = "satterthwaite", level: float = 0.95
) -> LmerResult:
    """Fit `y ~ fixed + (random | group)`, or a factor nested in the group (`(1 | group/centre)`,
    `(terms | group) + (1 | group:centre)`), on `data` (see the module docstring)."""
    import formulaic  # imported here: only this entry point parses formulas

    check_options(reml, ddf, level)
    structure = random_structure(formula, data)
    part = structure.study
    group = part.group
    fixed, random_terms = quote_dotted(structure.fixed, data.columns), quote_dotted(part.terms, data.columns)
    check_formula_text(fixed)
    check_formula_text(random_terms)
    if not fixed.split("~")[0].strip():
        raise FormulaError(f"formula {formula!r} needs a response left of '~'")
    used = required_variables(fixed, data.columns) | required_variables(random_terms, data.columns)
    used |= set(group.split(":")) | (set(structure.centre.split(":")) if structure.centre else set())
    check_columns(used, data)
    response = required_variables(fixed.split("~")[0], data.columns)
    frame, rows, notes = used_rows(data, sorted(used))
    for name in response:
        check_response(frame, name)
    check_finite(numeric_columns(frame, sorted(used)), rows, "column")
    labels = group_labels(frame, group)
    check_grouping(labels, len(frame))
    coded = polynomial_coded(fixed, frame)
    y, design = fixed_design(coded, frame, rows)
    if np.ptp(y) == 0:
        raise FormulaError("the response is constant over the rows used: there is no variance to model")
    if coded != fixed:  # lmerTest's Type III contrasts start from treatment coding
        design = dataclasses.replace(design, treatment_formula=fixed)
    if design.dropped:
        notes.append(rank_warning(design.dropped))
        pywarnings.warn(notes[-1], stacklevel=2)
    z = formulaic.model_matrix(random_terms, frame, na_action="ignore", context=CONTEXT)
    check_finite({name: z[name] for name in z.columns}, rows, "random-effect column")
    check_identifiable(len(frame), labels.nunique(), z.shape[1], f"({part.terms} | {group})")
    if z.shape[1] > MAX_RANDOM_TERMS:
        raise NotEstimable(f"{z.shape[1]} random-effect terms; the engine fits at most {MAX_RANDOM_TERMS}")
    random_variables = required_variables(random_terms, data.columns)
    if structure.centre is not None:
        from .nested_api import lmer_nested

        return lmer_nested(
            LmerResult(formula, None, ddf, level, group, list(z.columns), notes, design, z.model_spec, frame,
                       random_variables, np.asarray(z, float), y, data.index[rows - 1]),
            structure, part.correlated, reml,
        )  # fmt: skip
    cp = cross_products(
        design.x.to_numpy(float), np.asarray(z, float), y, labels.to_numpy(), list(design.x.columns),
        list(z.columns), random_terms=((tuple(range(z.shape[1])), part.correlated),),
    )  # fmt: skip
    fit = fit_lmm(cp, reml=reml)
    return LmerResult(
        formula, fit, ddf, level, group, list(z.columns), notes, design, z.model_spec, frame, random_variables,
        np.asarray(z, float), y, data.index[rows - 1],
    )  # fmt: skip
