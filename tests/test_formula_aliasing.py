"""`aliased_columns` (the formula layer's rank check, shared by lmer and glmer) does not depend
on the offsets and units of the columns (attack 3, C5: x + 1e8 was dropped as aliased with the
intercept). Properties over generated designs, and the fits: glmer and lmer with x + 1e8 equal
those with x."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ipdpool
from ipdpool.models.formula import aliased_columns

affine = st.tuples(st.floats(-6, 6), st.floats(-1e9, 1e9))


def design(seed: int, n: int, intercept: bool) -> tuple[np.ndarray, list[int]]:
    """Columns [intercept or full dummies..., x1, x2, copy of x1, a constant]; the aliased ones."""
    rng = np.random.default_rng(seed)
    level = rng.integers(0, 3, n)
    level[:3] = [0, 1, 2]
    dummies = np.eye(3)[level]
    lead = [np.ones((n, 1)), dummies[:, 1:]] if intercept else [dummies]
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    x = np.column_stack([*lead, x1, x2, x1, np.full(n, 3.0)])
    first = x.shape[1] - 4
    return x, first, [first + 2, first + 3]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 1000),
    n=st.integers(8, 60),
    intercept=st.booleans(),
    changes=st.lists(affine, min_size=3, max_size=3),
)
def test_offsets_and_scales_of_columns_never_change_which_are_dropped(seed, n, intercept, changes):
    x, first, expected = design(seed, n, intercept)
    assert aliased_columns(x) == expected
    changed = x.copy()
    for column, (log_scale, offset) in zip((first, first + 1, first + 3), changes):
        changed[:, column] = x[:, column] * 10**log_scale + offset
    changed[:, first + 2] = changed[:, first]  # the copy stays a copy of the changed x1
    assert aliased_columns(changed) == expected


def test_glmer_and_lmer_keep_a_covariate_with_a_large_offset():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(10), 30)
    x = rng.normal(size=300)
    eta = -0.3 + 0.6 * x + rng.normal(scale=0.5, size=10)[g]
    data = pd.DataFrame({"y": (rng.random(300) < 1 / (1 + np.exp(-eta))).astype(int), "x": x, "g": g})
    data["yc"] = eta + rng.normal(size=300)
    base_glmer = ipdpool.glmer("y ~ x + (1 | g)", data)
    base_lmer = ipdpool.lmer("yc ~ x + (1 | g)", data)
    shifted = data.assign(x=data["x"] + 1e8)
    glmer_fit, lmer_fit = ipdpool.glmer("y ~ x + (1 | g)", shifted), ipdpool.lmer("yc ~ x + (1 | g)", shifted)
    assert list(glmer_fit.fixed.index) == list(lmer_fit.fixed.index) == ["Intercept", "x"]
    np.testing.assert_allclose(glmer_fit.fixed.loc["x", "estimate"], base_glmer.fixed.loc["x", "estimate"], rtol=1e-6)
    np.testing.assert_allclose(lmer_fit.fixed.loc["x", "estimate"], base_lmer.fixed.loc["x", "estimate"], rtol=1e-6)
    assert glmer_fit.loglik == pytest.approx(base_glmer.loglik, rel=1e-9)
