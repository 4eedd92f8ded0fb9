"""lme4's formula semantics on top of formulaic, and lme4's refusals of data it cannot fit.

formulaic evaluates the inside of a function call (`I(x^2)`, `log(x^2)`) as Python, where `^` is
bitwise XOR; R evaluates it as power. `r_power` rewrites `^` to `**` inside function calls only,
token by token, so `(a + b)^2` (formula crossing) is left to formulaic and nothing of the user's
text is evaluated beyond what formulaic does itself.

`fixed_design` builds the fixed-effects matrix as lme4 does: unused factor levels dropped (lme4's
model frame drops them), aliased columns dropped in R's pivoted-QR order with a warning that names
them (lme4's chkRank.drop.cols, tolerance 1e-7), and one clear sentence for each input lme4 or
lmerTest refuses.
"""

from __future__ import annotations

import difflib
import keyword
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

RANK_TOLERANCE = 1e-7  # lme4's chkRank.drop.cols and R's qr() default
QUOTED = "`[^`]*`|'[^']*'|\"[^\"]*\""


class FormulaError(ValueError):
    """A formula or data that lme4 would refuse too (the message says what and where)."""


@dataclass(frozen=True)
class RandomPart:
    """One `(terms | group)` of an lme4 formula; `||` makes its terms uncorrelated."""

    terms: str
    group: str  # a column, or columns joined by ':' (a nested level: `a/b` gives a and a:b)
    correlated: bool


def _closing(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise FormulaError(f"formula {text!r} has an unbalanced '('")


def _bar(inside: str) -> int | None:
    """Position of the top-level '|' of `terms | group` (None when the parentheses only group)."""
    depth = 0
    for i, char in enumerate(inside):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "|" and depth == 0:
            return i
    return None


def nested_groups(group: str) -> list[str]:
    """lme4's `a/b/c` -> a, b:a, c:b:a (lme4's names of the terms); a plain group or an
    interaction a:b stays as it is."""
    levels = [part.strip() for part in group.split("/")]
    if not all(re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*(\s*:\s*[A-Za-z_.][A-Za-z0-9_.]*)*", p) for p in levels):
        raise FormulaError(f"grouping factor {group!r} must be column names joined by ':' or '/'")
    levels = [re.sub(r"\s*:\s*", ":", p) for p in levels]
    return [":".join(levels[i::-1]) for i in range(len(levels))]


def split_random(formula: str) -> tuple[str, list[RandomPart]]:
    """'y ~ x + (1 + x || g) + (1 | a/b)' -> ('y ~ x', [parts]); the fixed part keeps the rest."""
    if formula.count("~") != 1:
        raise FormulaError(f"formula {formula!r} needs exactly one '~'")
    parts, kept, i = [], [], 0
    while i < len(formula):
        if formula[i] != "(":
            kept.append(formula[i])
            i += 1
            continue
        end = _closing(formula, i)
        inside = formula[i + 1 : end]
        bar = _bar(inside)
        if bar is None:
            kept.append(formula[i : end + 1])
        else:
            correlated = not inside[bar + 1 :].startswith("|")
            terms, group = inside[:bar].strip(), inside[bar + (1 if correlated else 2) :].strip()
            parts += [RandomPart(terms, level, correlated) for level in nested_groups(group)]
        i = end + 1
    fixed = re.sub(r"\+\s*(?=\+|$)", "", re.sub(r"~\s*\+", "~ ", re.sub(r"\+(\s*\+)+", "+", "".join(kept))))
    fixed = re.sub(r"\s+", " ", fixed).strip()
    return (fixed + " 1" if fixed.endswith("~") else fixed), parts


def r_power(formula: str) -> str:
    """`^` -> `**` inside function calls (R's arithmetic), untouched in formula grouping."""
    out, calls = [], []  # calls: for each open parenthesis, whether it opened a function call
    quote = None
    for i, char in enumerate(formula):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"`":
            quote = char
        elif char == "(":
            before = formula[:i].rstrip()
            calls.append(bool(before) and (before[-1].isalnum() or before[-1] in "_."))
        elif char == ")" and calls:
            calls.pop()
        elif char == "^" and any(calls):
            out.append("**")
            continue
        out.append(char)
    return "".join(out)


def quote_dotted(formula: str, columns) -> str:
    """Backquote column names with a dot (R's `Informed.liking`), which formulaic would read as
    attribute access; names inside quotes or backquotes are left alone."""
    names = {str(c) for c in columns if "." in str(c)}
    if not names:
        return formula
    pieces = re.split(f"({QUOTED})", formula)
    for i in range(0, len(pieces), 2):  # even pieces are outside quotes
        pieces[i] = re.sub(
            r"(?<![A-Za-z0-9_.])[A-Za-z_.][A-Za-z0-9_.]*",
            lambda m: f"`{m.group(0)}`" if m.group(0) in names else m.group(0),
            pieces[i],
        )
    return "".join(pieces)


def required_variables(formula: str, columns) -> set[str]:
    """formulaic's required variables plus every column named in the formula: formulaic misses the
    arguments of stateful transforms (`poly(t, 2)` reports none) and reports a backquoted dotted
    name `a.b` as a."""
    import formulaic

    names = {str(c) for c in columns}
    quoted = set(re.findall(r"`([^`]*)`", formula))
    bare = re.split(QUOTED, formula)
    tokens = {t for piece in bare for t in re.findall(r"(?<![A-Za-z0-9_.])[A-Za-z_.][A-Za-z0-9_.]*", piece)}
    found = set(formulaic.Formula(formula).required_variables) - (set(CONTEXT) - names)
    prefixes = {name.split(".")[0] for name in quoted if "." in name}
    return (found - (prefixes - names)) | ((quoted | tokens) & names)


# Functions a formula may call (lme4's usual transforms); formulaic evaluates calls as Python, so
# anything else (attribute access, other calls, keywords) is refused rather than run.
ALLOWED_CALLS = frozenset(
    {"I", "log", "log2", "log10", "log1p", "exp", "expm1", "sqrt", "abs", "poly", "scale", "center", "C"}
)


# Calls formulaic does not provide itself, given to it as its evaluation context; an explicit context
# also keeps formulaic from looking names up among the calling function's local variables.
CONTEXT = {"sqrt": np.sqrt, "abs": np.abs, "log2": np.log2, "log10": np.log10, "log1p": np.log1p, "expm1": np.expm1}


def check_formula_text(formula: str) -> None:
    """Refuse what formulaic would read differently from R or run as Python beyond the allowed calls
    (run after quote_dotted: dotted column names are backquoted by then)."""
    unquoted = re.sub(r"`([^`]*)`", lambda m: m.group(1) if "." not in m.group(1) else "name", formula)
    bare = " ".join(re.split(QUOTED, unquoted))  # a backquoted name stays a name
    if "%in%" in bare:
        raise FormulaError("'%in%' is not supported (formulaic reads it as nesting, R as ':'); write a:b instead")
    if re.search(r"(?<![\w.])\.(?![\w.])", bare):
        raise FormulaError("'.' (all other columns) is not supported; name the columns")
    attribute = re.search(r"[A-Za-z_)\]]\s*\.\s*[A-Za-z_]\w*", bare)
    if attribute:
        raise FormulaError(f"attribute access {attribute.group(0)!r} is not allowed in a formula")
    for name in re.findall(r"(?<![\w.])([A-Za-z_]\w*)\s*\(", bare):
        if name not in ALLOWED_CALLS:
            raise FormulaError(
                f"function {name!r} is not supported in a formula; allowed: {', '.join(sorted(ALLOWED_CALLS))}"
            )
    for word in re.findall(r"(?<![\w.])[A-Za-z_]\w*", bare):
        if keyword.iskeyword(word) or word.startswith("__"):
            raise FormulaError(f"{word!r} is not allowed in a formula")
    if re.search(r"\[|\blambda\b", bare):
        raise FormulaError("indexing and lambdas are not allowed in a formula")


def prepare_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Column types as R would see them: pandas string columns as text (factors); an object column
    holding only numbers as numbers (R's numeric vectors have no storage type of their own).
    Dates, times and complex numbers are refused by name (lme4 refuses complex responses too)."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        categorical = isinstance(column.dtype, pd.CategoricalDtype)
        if pd.api.types.is_string_dtype(column) and not (categorical or pd.api.types.is_object_dtype(column)):
            out[name] = column.astype(object).where(column.notna(), None)
        elif pd.api.types.is_object_dtype(column):
            values = column.dropna()
            numbers = values.map(
                lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            )
            if len(values) and numbers.all():
                out[name] = pd.to_numeric(column, errors="raise").astype(float)
        elif pd.api.types.is_complex_dtype(column):
            raise FormulaError(f"column {name!r} holds complex numbers; lme4 refuses them too")
        elif pd.api.types.is_datetime64_any_dtype(column) or pd.api.types.is_timedelta64_dtype(column):
            raise FormulaError(f"column {name!r} holds dates or times; convert it to a number (e.g. years) first")
    return out


def check_columns(used: set[str], data: pd.DataFrame) -> None:
    """Refuse a variable that is not a column, naming the closest column (as R's 'object not found')."""
    for name in sorted(used - set(data.columns)):
        close = difflib.get_close_matches(name, [str(c) for c in data.columns], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise FormulaError(f"variable {name!r} of the formula is not a column of the data{hint}")


def check_response(data: pd.DataFrame, response: str) -> None:
    column = data[response]
    if not pd.api.types.is_numeric_dtype(column):  # lme4 fits a logical response as 0/1 too
        raise FormulaError(
            f"response {response!r} is not numeric ({column.dtype}): a linear mixed model needs a numeric "
            "response (lme4 refuses it too)"
        )


def first_non_finite(values: np.ndarray) -> int | None:
    bad = np.flatnonzero(~np.isfinite(values))
    return int(bad[0]) if len(bad) else None


def check_finite(columns: dict[str, np.ndarray], rows: np.ndarray, what: str) -> None:
    """Refuse +-Inf (or NaN made by a transform) in a used column, naming the column and the first
    such row (`rows`: the data's row numbers, from 1, of the rows used); never the value itself."""
    for name, values in columns.items():
        values = np.asarray(values, float)
        bad = first_non_finite(values)
        if bad is not None:
            why = (
                "lme4 would drop such rows as missing; refused here so that no row is lost unseen"
                if np.isnan(values[bad])
                else "lme4 refuses it too"
            )
            raise FormulaError(f"{what} {name!r} has a non-finite value in row {rows[bad]} of the data ({why})")


def numeric_columns(frame: pd.DataFrame, names) -> dict[str, np.ndarray]:
    return {
        name: frame[name].to_numpy(float)
        for name in names
        if pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(frame[name])
    }


def drop_unused_levels(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns keep only the levels present (lme4's model frame drops the others)."""
    out = frame.copy()
    for name in out.columns:
        if isinstance(out[name].dtype, pd.CategoricalDtype):
            out[name] = out[name].cat.remove_unused_categories()
    return out


def aliased_columns(x: np.ndarray) -> list[int]:
    """Columns that are (numerically) linear combinations of earlier columns, as R's LINPACK qr
    (dqrdc2) finds them: a column whose norm after removing the kept columns falls below
    RANK_TOLERANCE times its own norm is moved to the end, the others keep their order.

    Once the kept columns span the constant (an intercept, or a full set of dummies), a column
    is centred before it is judged: its span with them is the same, and the check no longer
    depends on an offset (R judges x + 1e8 on its uncentred norm and drops it as aliased with
    the intercept, although it keeps eight digits of variation). The ratio of norms does not
    depend on a column's scale."""
    n = x.shape[0]
    constant = np.full(n, 1 / np.sqrt(n)) if n else np.zeros(0)
    basis: list[np.ndarray] = []
    aliased = []
    constant_spanned = False
    for j in range(x.shape[1]):
        column = x[:, j] - x[:, j].mean() if constant_spanned else x[:, j].copy()
        norm = float(np.linalg.norm(column))
        residual = _residual(column, basis)
        rest = float(np.linalg.norm(residual))
        if norm == 0.0 or rest < RANK_TOLERANCE * norm:
            aliased.append(j)
            continue
        basis.append(residual / rest)
        constant_spanned = constant_spanned or np.linalg.norm(_residual(constant, basis)) < RANK_TOLERANCE
    return aliased


def _residual(column: np.ndarray, basis: list[np.ndarray]) -> np.ndarray:
    residual = column.copy()
    for _ in range(2):  # twice is enough (Kahan-Parlett) for an orthogonal residual
        for b in basis:
            residual -= (b @ residual) * b
    return residual


@dataclass(frozen=True)
class FixedDesign:
    """The fixed-effects matrix with what anova and predict need to rebuild it."""

    x: pd.DataFrame  # columns kept, named as formulaic names them
    spec: object  # formulaic ModelSpec of the right-hand side (applies to new data)
    dropped: tuple[str, ...]  # aliased columns dropped
    terms: tuple[str, ...]  # model terms, intercept excluded, in formulaic's (R's) order
    term_columns: dict  # term -> names of its kept columns
    term_variables: dict  # term -> variables (factor expressions) in it
    numeric_variables: frozenset  # variables that are numeric (not categorical)
    has_intercept: bool
    predictors: frozenset  # data columns the right-hand side uses
    treatment_formula: str | None = None  # the formula before ordered factors were polynomial-coded


def polynomial_coded(formula: str, frame: pd.DataFrame) -> str:
    """Ordered categorical columns as R codes them, with polynomial contrasts (contr.poly):
    `o` -> `C(o, contr.poly)` outside quotes (run after check_formula_text)."""
    ordered = {
        str(n) for n in frame.columns if isinstance(frame[n].dtype, pd.CategoricalDtype) and frame[n].cat.ordered
    }
    if not ordered:
        return formula
    pieces = re.split(f"({QUOTED})", formula)
    for i in range(0, len(pieces), 2):
        pieces[i] = re.sub(
            r"(?<![A-Za-z0-9_.])[A-Za-z_.][A-Za-z0-9_.]*(?![A-Za-z0-9_.(])",
            lambda m: f"C({m.group(0)}, contr.poly)" if m.group(0) in ordered else m.group(0),
            pieces[i],
        )
    for i in range(1, len(pieces), 2):  # a backquoted ordered column
        if pieces[i].startswith("`") and pieces[i][1:-1] in ordered:
            pieces[i] = f"C({pieces[i]}, contr.poly)"
    return "".join(pieces)


def fixed_design(formula: str, frame: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, FixedDesign]:
    """(y, fixed design) for `formula` ('y ~ ...', already through r_power) on complete rows
    (`rows`: their row numbers in the data, for messages)."""
    import formulaic  # only formula users pay its import

    matrices = formulaic.model_matrix(formula, frame, na_action="ignore", context=CONTEXT)
    if matrices.lhs.shape[1] != 1:
        raise FormulaError(f"the left of '~' must be one response, not {matrices.lhs.shape[1]} columns")
    check_finite({matrices.lhs.columns[0]: matrices.lhs.iloc[:, 0]}, rows, "response")
    y = np.asarray(matrices.lhs, float)[:, 0]
    x = matrices.rhs
    check_finite({name: x[name] for name in x.columns}, rows, "fixed-effect column")
    spec = x.model_spec
    dropped = [x.columns[j] for j in aliased_columns(np.asarray(x, float))]
    kept = x.drop(columns=dropped)
    terms, term_columns, term_variables = [], {}, {}
    for term, indices in spec.term_indices.items():
        if str(term) == "1":
            continue
        terms.append(str(term))
        term_columns[str(term)] = [x.columns[i] for i in indices if x.columns[i] not in dropped]
        term_variables[str(term)] = frozenset(str(f) for f in term.factors)
    categorical = {str(f) for f in spec.factor_contrasts}
    numeric = frozenset(v for vs in term_variables.values() for v in vs if v not in categorical)
    has_intercept = any(str(term) == "1" for term in spec.term_indices)
    predictors = frozenset(required_variables(formula.split("~", 1)[1], frame.columns))
    design = FixedDesign(
        kept, spec, tuple(dropped), tuple(terms), term_columns, term_variables, numeric, has_intercept, predictors
    )
    return y, design


def rank_warning(dropped: tuple[str, ...]) -> str:
    count = len(dropped)
    return (
        f"fixed-effect model matrix is rank deficient so dropping {count} column{'s' if count > 1 else ''} / "
        f"coefficient{'s' if count > 1 else ''}: {', '.join(dropped)} (lme4 drops the same)"
    )
