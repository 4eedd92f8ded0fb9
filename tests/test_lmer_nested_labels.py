"""What must not change a nested fit: the order in which the two random parts are written
((1 | centre) + (1 | study) is lme4's (1 | study) + (1 | centre) when centres nest in studies), and
whether integer ids are stored as int or float (a pandas int column turns float when it holds a NaN):
predictions for known centres use their modes either way, as lme4's do (R's 1 == 1.0)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import ipdpool


def nested_data(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for study in range(int(rng.integers(3, 6))):
        study_effect = rng.normal()
        for centre in range(int(rng.integers(1, 4))):
            centre_effect = 0.7 * rng.normal()
            n = int(rng.integers(3, 9))
            x = rng.normal(size=n)
            y = 1 + 0.5 * x + study_effect + centre_effect + rng.normal(size=n)
            rows.append(pd.DataFrame({"s": study, "c": 10 * study + centre, "x": x, "y": y}))
    return pd.concat(rows, ignore_index=True)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_the_order_of_the_random_parts_and_float_ids_change_nothing(seed):
    data = nested_data(seed)
    fit = ipdpool.lmer("y ~ x + (1 | s) + (1 | c)", data)
    reversed_parts = ipdpool.lmer("y ~ x + (1 | c) + (1 | s)", data)
    for column in ("estimate", "se", "df"):
        np.testing.assert_allclose(reversed_parts.fixed[column], fit.fixed[column], rtol=1e-8, err_msg=column)

    slashed = ipdpool.lmer("y ~ x + (1 | s/c)", data)
    known = data.drop_duplicates(["s", "c"]).assign(x=0.0)
    as_int = slashed.predict(known)
    as_float = slashed.predict(known.astype({"s": float, "c": float}))
    np.testing.assert_allclose(as_float, as_int, rtol=1e-12)
    float_fit = ipdpool.lmer("y ~ x + (1 | s/c)", data.astype({"c": float}))
    np.testing.assert_allclose(float_fit.predict(known), as_int, rtol=1e-8)
