"""lme4's formula semantics and refusals, checked live against lme4 on the same data.

- `I(t^2)` on an integer column is a power (formulaic alone evaluates it as XOR), also inside
  other calls (`log(x^2)`); `poly(t, 2)` equals R's orthogonal polynomial column for column,
  sign included; `log(x)` as R's.
- An unused factor level is dropped; aliased columns are dropped, the same ones as lme4, with a
  warning that names them.
- What lme4/lmerTest refuse is refused with one sentence naming the column (and row), never
  printing the value: a non-numeric response, one group, an infinite value, log(0),
  Kenward-Roger with ML, an unknown column (with the closest name).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from rscript import LME4_TIGHT, run_r

import ipdpool
from ipdpool.models import NotEstimable
from ipdpool.models.formula import FormulaError, RandomPart, aliased_columns, r_power, split_random


def make_data() -> pd.DataFrame:
    rng = np.random.default_rng(2112)
    groups = np.repeat([f"g{i}" for i in range(8)], 7)
    t = np.tile(np.arange(7), 8)  # integer: XOR and power differ
    x = rng.uniform(0.5, 4.0, len(t))
    f = rng.choice(["a", "b", "c"], len(t))
    effect = rng.normal(0, 1, 8)[np.repeat(np.arange(8), 7)]
    y = 1 + 0.3 * t - 0.05 * t**2 + np.log(x) + (f == "b") + effect + rng.normal(0, 0.5, len(t))
    data = pd.DataFrame({"g": groups, "t": t, "x": x, "f": f, "y": y})
    data["x2"] = 2 * data["x"]  # aliased with x
    data["h"] = np.where(data["f"] == "c", "hi", "lo")  # aliased with f's indicators
    data["o"] = data["f"]  # an ordered factor (levels c < a < b) in lmer_data and in R
    return data


ESTIMATES = {
    "power": "y ~ I(t^2) + t + (1 | g)",
    "power_in_call": "y ~ log(x^2) + I(t^2) + (1 | g)",
    "poly": "y ~ poly(t, 2) + (1 | g)",
    "log": "y ~ log(x) + t + (1 | g)",
    "unused_level": "y ~ f + t + (1 | g)",
    "aliased_copy": "y ~ x + x2 + t + (1 | g)",
    "aliased_factor": "y ~ f + h + t + (1 | g)",
    "power_in_random_part": "y ~ t + (0 + I(t^2) | g)",
    "interaction_group": "y ~ t + (1 | g:h)",
    "base_r_calls": "y ~ sqrt(abs(t - 3)) + log10(x) + (1 | g)",
    "ordered_factor": "y ~ o * t + (1 | g)",
}

R_SCRIPT = (
    LME4_TIGHT
    + r"""
suppressPackageStartupMessages(library(lmerTest))
d$f <- factor(d$f, levels = c("a", "b", "c", "unused"))
d$o <- factor(d$o, levels = c("c", "a", "b"), ordered = TRUE)
attempt <- function(expr) tryCatch({force(expr); "no error"}, error = function(e) conditionMessage(e))
out <- list(fits = list(), errors = list())
for (case in names(ESTIMATES)) {
  m <- suppressMessages(lmer(as.formula(ESTIMATES[[case]]), d, control = tight))
  out$fits[[case]] <- list(names = names(fixef(m)), beta = unname(fixef(m)), X = unname(getME(m, "X")))
}
ordered <- lmer(y ~ o * t + (1 | g), d, control = tight)
out$ordered_anova <- lapply(list(s = anova(ordered), kr = anova(ordered, ddf = "Kenward-Roger")),
                            function(a) list(F = a[["F value"]], NumDF = a$NumDF, DenDF = a$DenDF))
bad <- function(column, row, value) { b <- d; b[[column]][row] <- value; b }
text_y <- d; text_y$y <- as.character(round(text_y$y))
one_group <- d; one_group$g <- "g0"
zero_x <- bad("x", 3, 0)
out$errors <- list(
  text_response = attempt(lmer(y ~ t + (1 | g), text_y)),
  one_group = attempt(lmer(y ~ t + (1 | g), one_group)),
  infinite_y = attempt(lmer(y ~ t + (1 | g), bad("y", 7, Inf))),
  infinite_x = attempt(lmer(y ~ x + (1 | g), bad("x", 12, -Inf))),
  log_zero = attempt(lmer(y ~ log(x) + (1 | g), zero_x)),
  kenward_roger_ml = attempt(summary(lmer(y ~ t + (1 | g), d, REML = FALSE), ddf = "Kenward-Roger")),
  unknown_column = attempt(lmer(y ~ tt + (1 | g), d)),
  log_zero_response = attempt(lmer(log(y) ~ t + (1 | g), within(bad("y", 10, 0), y <- y + (y != 0) * 100))),
  one_row_per_group = attempt(lmer(y ~ t + (1 | g), d[!duplicated(d$g), ])),
  more_random_effects_than_rows = attempt(lmer(y ~ t + (1 + t + x | g), d[d$t < 2, ]))
)
"""
)


def r_list(mapping: dict) -> str:
    return "list(" + ", ".join(f'{k} = "{v}"' for k, v in mapping.items()) + ")"


@pytest.fixture(scope="module")
def reference():
    return run_r(f"ESTIMATES <- {r_list(ESTIMATES)}\n" + R_SCRIPT, {"d": make_data()})


def lmer_data() -> pd.DataFrame:
    data = make_data()
    data["f"] = pd.Categorical(data["f"], categories=["a", "b", "c", "unused"])
    data["o"] = pd.Categorical(data["o"], categories=["c", "a", "b"], ordered=True)
    return data


@pytest.mark.parametrize("case", list(ESTIMATES))
def test_estimates_and_design_equal_lme4(case, reference):
    theirs = reference["fits"][case]
    with pytest.warns(UserWarning, match="rank deficient") if case.startswith("aliased") else nullcontext():
        fit = ipdpool.lmer(ESTIMATES[case], lmer_data())
    beta = fit.fixed["estimate"].to_numpy()
    assert len(beta) == len(theirs["names"])
    assert np.allclose(beta, theirs["beta"], rtol=1e-6, atol=1e-9), (beta, theirs["beta"])
    x = np.asarray(theirs["X"], float)
    assert np.allclose(fit.design.x.to_numpy(float), x, rtol=1e-9, atol=1e-12)  # poly: column for column, sign too


def nullcontext():
    import contextlib

    return contextlib.nullcontext()


def test_the_dropped_columns_are_named():
    with pytest.warns(UserWarning) as caught:
        fit = ipdpool.lmer(ESTIMATES["aliased_copy"], lmer_data())
    assert "dropping 1 column / coefficient: x2" in str(caught[0].message)
    assert "x2" not in fit.fit.names and any("x2" in w for w in fit.warnings)
    with pytest.warns(UserWarning, match=r"h\[T\.lo\]"):
        ipdpool.lmer(ESTIMATES["aliased_factor"], lmer_data())


def with_value(column: str, row: int, value) -> pd.DataFrame:
    data = lmer_data()
    data.loc[row - 1, column] = value
    return data


def zero_row_10(data: pd.DataFrame) -> pd.DataFrame:
    data.loc[9, "y"] = 0.0
    return data


REFUSALS = {
    "text_response": (
        lambda: ipdpool.lmer("y ~ t + (1 | g)", lmer_data().assign(y=lambda d: d["y"].round().astype(int).astype(str))),
        r"response 'y' is not numeric",
    ),
    "one_group": (lambda: ipdpool.lmer("y ~ t + (1 | g)", lmer_data().assign(g="g0")), r"'g' must have > 1 sampled"),
    "infinite_y": (
        lambda: ipdpool.lmer("y ~ t + (1 | g)", with_value("y", 7, np.inf)),
        r"'y' has a non-finite value in row 7",
    ),
    "infinite_x": (
        lambda: ipdpool.lmer("y ~ x + (1 | g)", with_value("x", 12, -np.inf)),
        r"'x' has a non-finite value in row 12",
    ),
    "log_zero": (
        lambda: ipdpool.lmer("y ~ log(x) + (1 | g)", with_value("x", 3, 0.0)),
        r"'log\(x\)' has a non-finite value in row 3",
    ),
    "kenward_roger_ml": (
        lambda: ipdpool.lmer("y ~ t + (1 | g)", lmer_data(), reml=False, ddf="kenward_roger"),
        "only available for REML",
    ),
    "unknown_column": (lambda: ipdpool.lmer("y ~ tt + (1 | g)", lmer_data()), r"'tt' .* did you mean 't'"),
    "log_zero_response": (
        lambda: ipdpool.lmer("log(y) ~ t + (1 | g)", lmer_data().assign(y=lambda d: d["y"] + 100).pipe(zero_row_10)),
        r"response 'log\(y\)' has a non-finite value in row 10 ",
    ),
    "one_row_per_group": (
        lambda: ipdpool.lmer("y ~ t + (1 | g)", lmer_data().drop_duplicates("g")),
        r"'g' has 8 levels for 8 rows",
    ),
    "more_random_effects_than_rows": (
        lambda: ipdpool.lmer("y ~ t + (1 + t + x | g)", lmer_data().query("t < 2")),
        r"number of observations \(=16\) <= number of random effects \(=24\)",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_where_lme4_refuses(case, reference):
    assert reference["errors"][case] != "no error", f"lme4 accepted {case}"
    attempt, message = REFUSALS[case]
    with pytest.raises(ValueError, match=message) as caught:
        attempt()
    text = str(caught.value)
    assert text.count(". ") == 0 and "\n" not in text  # one sentence
    assert not re.search(r"\b-?inf\b|\b0\.0\b", text)  # never the value


def test_a_missing_row_before_a_bad_row_keeps_the_data_row_number():
    data = with_value("y", 9, np.inf)
    data.loc[1, "t"] = np.nan
    with pytest.raises(FormulaError, match="row 9 "):
        ipdpool.lmer("y ~ t + (1 | g)", data)


def test_power_is_rewritten_inside_calls_only():
    assert r_power("y ~ I(t^2) + (a + b)^2") == "y ~ I(t**2) + (a + b)^2"
    assert r_power("y ~ log(I(x^3)) + f(x, 'a^b')") == "y ~ log(I(x**3)) + f(x, 'a^b')"


def test_aliasing_is_rs_pivoting_order():
    """R's LINPACK qr keeps the first of two aliased columns and moves later ones to the end."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=20), rng.normal(size=20)
    x = np.column_stack([np.ones(20), a, b, a + b, 3 * b, rng.normal(size=20)])
    assert aliased_columns(x) == [3, 4]


def test_random_parts_are_read_as_lme4_reads_them():
    assert split_random("y ~ x + (1 + x | g)") == ("y ~ x", [RandomPart("1 + x", "g", True)])
    assert split_random("y ~ (x || g) + x") == ("y ~ x", [RandomPart("x", "g", False)])
    assert split_random("y ~ x + (1 | a/b) + z") == (
        "y ~ x + z",
        [RandomPart("1", "a", True), RandomPart("1", "b:a", True)],
    )
    assert split_random("y ~ I(x^2) + (1 + I(x^2) | g)") == ("y ~ I(x^2)", [RandomPart("1 + I(x^2)", "g", True)])
    assert split_random("y ~ (1 | g)") == ("y ~ 1", [RandomPart("1", "g", True)])
    assert split_random("y ~ x + (a + b)^2 + (1 | s:c)") == ("y ~ x + (a + b)^2", [RandomPart("1", "s:c", True)])


@pytest.mark.parametrize(
    "formula",
    ["y ~ t + (1 | g/h/t)", "y ~ t + (1 | g) + (0 + t | g)", "y ~ t + (1 + t | g/h)", "y ~ (1|g)+(1|h)+(1|t)"],
)
def test_random_structures_the_engine_does_not_fit_yet_are_refused_by_name(formula):
    """(1 + t || g) and (1 | g/h) are fitted (tests/test_lmm_uncorrelated.py, tests/test_lmer_nested.py
    check them against lme4)."""
    with pytest.raises(NotEstimable, match="random parts"):
        ipdpool.lmer(formula, lmer_data())


def test_column_storage_types_are_read_as_r_reads_the_values():
    """pandas string columns are factors, an object column of numbers is numeric (as R's vectors);
    dates, times and complex numbers are refused by name, never printing a value."""
    data = lmer_data()
    data["f"] = data["f"].astype(str)
    reference = ipdpool.lmer("y ~ f + t + (1 | g)", data).fixed["estimate"]
    secret = data.assign(f=data["f"].map({"a": "secret-a", "b": "secret-b", "c": "secret-c"}).astype("string"))
    assert np.allclose(ipdpool.lmer("y ~ f + t + (1 | g)", secret).fixed["estimate"], reference)
    as_objects = data.assign(t=data["t"].astype(object))
    assert np.allclose(ipdpool.lmer("y ~ f + t + (1 | g)", as_objects).fixed["estimate"], reference)
    for column, values in (
        ("x", pd.to_datetime("2020-01-01") + pd.to_timedelta(data["t"], "D")),
        ("y", data["y"] + 1j),
    ):
        with pytest.raises(FormulaError, match=f"column '{column}' holds") as error:
            ipdpool.lmer("y ~ x + (1 | g)", data.assign(**{column: values}))
        assert "2020" not in str(error.value) and "j)" not in str(error.value)


@pytest.mark.parametrize(
    "formula, message",
    [
        ("y ~ I(x.to_csv('written.csv') or x) + (1 | g)", "attribute access"),
        ("y ~ I(`x`.to_csv('written.csv')) + (1 | g)", "attribute access 'x.to_csv'"),
        ("y ~ I(open('written.csv', 'w')) + (1 | g)", "function 'open' is not supported"),
        ("y ~ I(__import__('os')) + (1 | g)", "function '__import__' is not supported"),
        ("y ~ I(x if x else t) + (1 | g)", "'if' is not allowed"),
        ("y ~ I(frame) + (1 | g)", "'frame' of the formula is not a column"),
        ("y ~ x %in% f + (1 | g)", "'%in%' is not supported"),
        ("y ~ . + (1 | g)", "'.' \\(all other columns\\)"),
        ("~ x + (1 | g)", "needs a response"),
        ("y + x ~ t + (1 | g)", "must be one response"),
    ],
)
def test_formula_text_runs_nothing_but_the_allowed_calls(formula, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FormulaError, match=message):
        ipdpool.lmer(formula, lmer_data())
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("ddf, key", [("satterthwaite", "s"), ("kenward_roger", "kr")])
def test_an_ordered_factor_gets_rs_polynomial_contrasts_and_lmertests_anova(ddf, key, reference):
    """Estimates: test_estimates_and_design_equal_lme4[ordered_factor]; anova mapped from treatment
    coding as lmerTest's get_contrasts_type3."""
    ours = ipdpool.lmer(ESTIMATES["ordered_factor"], lmer_data()).anova(ddf)
    theirs = reference["ordered_anova"][key]
    for column, name in (("F value", "F"), ("NumDF", "NumDF"), ("DenDF", "DenDF")):
        # atol: an F of 0.03 (t of 0.17) moves by 3e-6 relative when beta moves by 1e-7 of its SE, the fit's precision
        assert np.allclose(ours[column], theirs[name], rtol=1e-6, atol=1e-6), (column, ours[column].tolist())


def test_a_constant_response_is_refused():
    with pytest.raises(FormulaError, match="response is constant"):
        ipdpool.lmer("y ~ t + (1 | g)", lmer_data().assign(y=3.0))


def test_levels_outside_zero_and_one_are_refused():
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        ipdpool.lmer("y ~ t + (1 | g)", lmer_data(), level=2)
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        ipdpool.lmer("y ~ t + (1 | g)", lmer_data()).confint(1.5)


def test_predict_finds_integer_groups_given_as_floats():
    data = lmer_data().assign(g=lambda d: d["g"].str[1:].astype(int))
    fit = ipdpool.lmer("y ~ t + (1 | g)", data)
    as_float = data.assign(g=data["g"].astype(float))
    assert np.array_equal(fit.predict(as_float).to_numpy(), fit.predict(data).to_numpy())
