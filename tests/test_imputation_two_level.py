"""The two-level imputation option (multiple_imputation.method: two_level): its draws against R's
mice.impute.2l.norm run live (intercept-only data, where the two models are the same), a small
simulation with known parameters (the full one: bench/bench_mi_two_level.py, docs/validation.md),
its refusal with too few studies, and what must not change (row order, study labels)."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rscript import run_r
from tests_support import imputed_alike_when_moved
from two_level_reference import clustered, moment_z, python_moments, r_script, simulation_summary

from ipdpool.imputation.chained import ImputationError, impute
from ipdpool.simulation import simulate_trials

VARIABLES = ["employed", "o_bl_z", "o_fu_z"]


def test_draws_match_mice_2l_norm_within_monte_carlo_error():
    """Posterior predictive mean and variance of one missing row per cluster (12 clusters of 4-40
    rows, residual SDs 0.4-2), 60 draws on each side: within 3 combined Monte Carlo SEs."""
    data = clustered(7, clusters=12)
    python = python_moments(data, 60, seed=8)
    reference = np.asarray(run_r(r_script(60, 9), {"data": data}), float)
    assert reference.shape == python.shape
    found = moment_z(python, reference)
    assert all(abs(z) <= 3 for z in found.values()), found
    # the per-cluster variances differ (heteroscedastic) on both sides
    assert python[:, -1].var() > 4 * python[:, 0].var() and reference[:, -1].var() > 4 * reference[:, 0].var()


def test_small_simulation_two_level_mi_is_unbiased_and_keeps_each_study_variance():
    """12 replicates, m = 3, 8 studies: MI's mean follow-up is within 2.5 MCSE of the full data's,
    while the complete-case mean (missing at random given baseline) is off by more than 3 MCSE; the
    follow-up variance of the study with the smallest residual SD is near the full data's with
    two_level (its residual variances shrink towards a common one only a little: +0.03 on 0.56 in
    the bench's 200 replicates) and far from it with fixed_effects (one residual variance)."""
    two_level = simulation_summary(range(12), 3, "two_level")
    fixed = simulation_summary(range(12), 3, "fixed_effects")
    assert abs(two_level.loc["mean", "z"]) <= 2.5, two_level
    assert two_level.loc["complete-case mean", "z"] < -3, two_level
    assert fixed.loc["variance first study", "z"] > 3, fixed
    first = "variance first study", "mean difference"
    assert abs(two_level.loc[first]) < 0.3 * abs(fixed.loc[first]), (two_level, fixed)


def test_too_few_studies_are_refused_naming_the_variable_and_the_count():
    rng = np.random.default_rng(3)
    data = simulate_trials(rng, {"studies": 4, "participants": [40, 60], "tau2": 0.05, "employment_rate": 0.4,
                                 "smd": 0.4, "attrition": 0.3})  # fmt: skip
    with pytest.raises(ImputationError, match=r"o_fu_z is measured in 4 studies only.*at least 5"):
        impute(data, "o", 0, seed=1, method="two_level")


def five_studies(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = simulate_trials(rng, {"studies": 5, "participants": [30, 60], "tau2": 0.05, "employment_rate": 0.4,
                                 "smd": 0.4, "attrition": 0.3})  # fmt: skip
    data.loc[rng.random(len(data)) < 0.1, "employed"] = np.nan
    data.loc[rng.random(len(data)) < 0.1, "o_bl_z"] = np.nan
    data["participant_id"] = [f"{k * 7919 % 10007:05d}" for k in range(len(data))]
    return data


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 10_000), labels=st.permutations(["P", "Q", "S01", "A", "zz"]))
def test_row_order_and_study_labels_do_not_change_the_two_level_imputations(seed, labels):
    data = five_studies(seed)
    before = imputed_alike_when_moved(data, "two_level", seed, labels, VARIABLES)
    observed = data[VARIABLES].notna()
    pd.testing.assert_frame_equal(before[VARIABLES][observed], data[VARIABLES][observed])
    assert before[VARIABLES].notna().all().all()
