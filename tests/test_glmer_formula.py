"""glmer reads formulas as lmer does: `^` inside a call is R's power (formulaic alone reads it as
Python's XOR on integer columns), and only lme4's usual calls are evaluated."""

import numpy as np
import pandas as pd
import pytest

import ipdpool
from ipdpool.models import NotEstimable
from ipdpool.models.formula import FormulaError


@pytest.fixture(scope="module")
def years() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n, k = 400, 10
    group = rng.integers(0, k, n)
    year = rng.integers(1990, 2020, n)  # integers: where XOR and power differ
    eta = -0.5 + 0.004 * (year - 2005) ** 2 / 10 + rng.normal(0, 0.5, k)[group]
    return pd.DataFrame({"y": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int), "g": group, "year": year})


def test_a_power_inside_I_is_the_square_as_in_R(years):
    squared = years.assign(year2=years["year"].astype(float) ** 2)
    by_formula = ipdpool.glmer("y ~ I(year^2) + (1 | g)", years)
    by_column = ipdpool.glmer("y ~ year2 + (1 | g)", squared)
    np.testing.assert_allclose(by_formula.fixed["estimate"].to_numpy(), by_column.fixed["estimate"].to_numpy())
    np.testing.assert_allclose(by_formula.fixed["se"].to_numpy(), by_column.fixed["se"].to_numpy())


def test_calls_outside_lme4s_usual_transforms_are_refused(years):
    with pytest.raises(FormulaError, match="not (supported|allowed)"):
        ipdpool.glmer("y ~ I(__import__('os').getcwd()) + (1 | g)", years)


def test_the_repr_is_short(years):
    assert len(repr(ipdpool.glmer("y ~ year + (1 | g)", years))) < 400


def test_lmers_formula_layer_drops_aliased_columns_and_refuses_what_lme4_refuses(years):
    data = years.assign(**{"year.twice": 2.0 * years["year"], "one": 1})
    with pytest.warns(UserWarning, match=r"dropping 1 column / coefficient: year\.twice"):
        aliased = ipdpool.glmer("y ~ year + year.twice + (1 | g)", data)
    plain = ipdpool.glmer("y ~ year + (1 | g)", data)
    np.testing.assert_allclose(aliased.fixed["estimate"], plain.fixed["estimate"], rtol=1e-8)
    with pytest.raises(FormulaError, match="must have > 1 sampled level"):
        ipdpool.glmer("y ~ year + (1 | one)", data)
    with pytest.raises(FormulaError, match="response is constant"):
        ipdpool.glmer("one ~ year + (1 | g)", data)
    with pytest.raises(NotEstimable, match=r"'\|\|'"):
        ipdpool.glmer("y ~ year + (1 + year || g)", data)
