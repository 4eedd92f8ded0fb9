"""Kitagawa's test of the IV assumptions' testable implication (never-takers and always-takers):
its statistic against a brute-force search over every interval, its size under the assumptions
and its power when IPS changes the never-takers' outcomes (exclusion fails), on simulated trials
with known complier types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipdpool.models.instrument_check import kitagawa_test, masses, statistic
from ipdpool.models.iv import iv_by_study_and_pooled


def brute_force(y, d, z, strata) -> float:
    """Every interval [a, b] with observed end points, both inequalities, study-weighted arms."""
    mass = masses(z, strata)
    m, n = (z == 1).sum(), (z == 0).sum()
    best = 0.0
    values = np.unique(y)
    for i, a in enumerate(values):
        for b in values[i:]:
            inside = (y >= a) & (y <= b)
            p1 = {e: mass[inside & (d == e) & (z == 1)].sum() for e in (0, 1)}
            p0 = {e: mass[inside & (d == e) & (z == 0)].sum() for e in (0, 1)}
            best = max(best, p1[0] - p0[0], p0[1] - p1[1])
    return float(np.sqrt(m * n / (m + n)) * best)


def trial(rng, n: int, violate: bool, strata: int = 2):
    """Types: never-taker 40%, complier 30%, always-taker 30%; working raises y by 0.5 and
    always-takers differ by 0.3 (selection). With `violate`, IPS moves never-takers' outcomes to
    N(2, 0.3^2) (exclusion fails)."""
    z = np.tile([0, 1], n // 2)
    kind = rng.choice(3, size=n, p=[0.4, 0.3, 0.3])
    d = np.where(kind == 2, 1, np.where(kind == 1, z, 0))
    y = rng.normal(size=n) + 0.5 * d + 0.3 * (kind == 2)
    if violate:
        y = np.where((kind == 0) & (z == 1), rng.normal(2, 0.3, n), y)
    return np.round(y, 1), d, z, np.repeat(np.arange(strata), n // strata)  # rounded: ties as in scores


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.sampled_from([12, 20, 30]), strata=st.sampled_from([1, 2]))
def test_the_statistic_is_the_largest_violation_over_all_intervals(seed, n, strata):
    y, d, z, groups = trial(np.random.default_rng(seed), n, violate=seed % 2 == 0, strata=strata)
    assert statistic(y, d, z, masses(z, groups)) == pytest.approx(brute_force(y, d, z, groups), abs=1e-12)


def test_size_under_the_assumptions_and_power_when_exclusion_fails():
    rng = np.random.default_rng(2026)
    valid = [kitagawa_test(*trial(rng, 300, False), bootstrap=99, seed=i)[1] for i in range(60)]
    broken = [kitagawa_test(*trial(rng, 300, True), bootstrap=99, seed=i)[1] for i in range(20)]
    # a valid 5% test: rejection rate at most 0.05 + 3 MCSE (0.084) over 60 trials -> <= 5 rejections
    assert sum(p <= 0.05 for p in valid) <= 5
    assert sum(p <= 0.05 for p in broken) >= 18


def test_the_iv_rows_carry_the_check_and_row_order_or_study_labels_do_not_change_it():
    rng = np.random.default_rng(7)
    frames = []
    for study in ("A", "B"):
        y, d, z, _ = trial(rng, 200, violate=study == "B", strata=1)
        frames.append(pd.DataFrame({"study": study, "arm": np.where(z == 1, "IPS", "SAU"), "employed": d.astype(float),
                                    "o_fu_z": y, "o_bl_z": rng.normal(size=200)}))  # fmt: skip
    pooled = pd.concat(frames, ignore_index=True)
    rows = {r.scope: r for r in iv_by_study_and_pooled(pooled, "o")}
    assert rows["A"].kitagawa_p > 0.05 and rows["B"].kitagawa_p <= 0.05
    shuffled = {r.scope: r for r in iv_by_study_and_pooled(pooled.sample(frac=1, random_state=1), "o")}
    relabelled = iv_by_study_and_pooled(pooled.assign(study=pooled["study"].map({"A": "Z", "B": "B"})), "o")
    relabelled = {{"Z": "A"}.get(r.scope, r.scope): r for r in relabelled}
    for scope in rows:
        assert shuffled[scope].kitagawa_stat == pytest.approx(rows[scope].kitagawa_stat, rel=1e-12)
        # attack 3, C1: the bootstrap draws do not depend on row order or study labels either
        assert shuffled[scope].kitagawa_p == rows[scope].kitagawa_p == relabelled[scope].kitagawa_p


def test_a_study_with_one_arm_is_left_out_of_the_check_instead_of_disabling_it():
    """Attack 3, C9: a stratum with one arm carries nothing for within-study comparisons."""
    rng = np.random.default_rng(8)
    y, d, z, strata = trial(rng, 300, False, strata=2)
    with_lone = [np.append(y, 0.3), np.append(d, 1), np.append(z, 1), np.append(strata, 9)]
    assert kitagawa_test(*with_lone, bootstrap=99) == kitagawa_test(y, d, z, strata, bootstrap=99)
    assert np.isnan(kitagawa_test(y[z == 1], d[z == 1], z[z == 1], strata[z == 1], bootstrap=99)[1])
