"""Chained-equations imputation: mice's posterior draws, what must not change (other studies, their
order and labels, the chunking), systematically missing variables, refusals and delta adjustment;
and a small version of the missing-data simulation (the full one: docs/validation.md)."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipdpool.imputation.analysis import fit_imputations, imputed_statistics, pool_estimates
from ipdpool.imputation.chained import METHODS, Delta, ImputationError, delta_adjusted, impute
from ipdpool.imputation.draws import logreg_draw, norm_draw
from ipdpool.simulation import run_chunk, simulate_trials, summarize

VARIABLES = ["employed", "o_bl_z", "o_fu_z"]
SCENARIO = {"studies": 4, "participants": [40, 120], "tau2": 0.05, "employment_rate": 0.4, "smd": 0.4, "attrition": 0.3}


def incomplete(seed: int, scenario=SCENARIO) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = simulate_trials(rng, scenario)
    data.loc[rng.random(len(data)) < 0.1, "employed"] = np.nan
    data.loc[rng.random(len(data)) < 0.1, "o_bl_z"] = np.nan
    return data


def test_norm_draws_follow_the_posterior_of_the_linear_model():
    """sigma*^2 is scaled inverse chi-square: mean RSS / (df - 2); beta* has covariance
    E[sigma*^2] (X'X)^-1 around the least-squares estimate (within 5 Monte Carlo SEs)."""
    rng = np.random.default_rng(1)
    n = 30
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = x @ [1.0, 2.0] + rng.normal(size=n)
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    rss = float(((y - x @ beta) ** 2).sum())
    # with x_mis = 0 rows and a unit row, the imputation is beta*_0 + sigma* e: recover both pieces
    draws = np.array([norm_draw(np.random.default_rng(s), x, y, np.array([[1.0, 0.0]])) for s in range(4000)])
    expected_variance = rss / (n - 2 - 2) * (1 + np.linalg.inv(x.T @ x)[0, 0])
    assert abs(draws.mean() - beta[0]) < 5 * np.sqrt(expected_variance / len(draws))
    assert abs(draws.var() / expected_variance - 1) < 5 * np.sqrt(2 / len(draws)) * 1.5


def test_logreg_draws_match_the_fitted_probability_and_survive_perfect_prediction():
    rng = np.random.default_rng(2)
    n = 1000
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.3 + 1.0 * x[:, 1])))).astype(float)
    row = np.array([[1.0, 0.5]])
    draws = np.concatenate([logreg_draw(np.random.default_rng(s), x, y, row) for s in range(1000)])
    assert abs(draws.mean() - 1 / (1 + np.exp(-0.8))) < 0.07  # 3 SEs of draws and fit
    separated = (x[:, 1] > 0).astype(float)  # perfect prediction: augmentation keeps the fit finite
    out = logreg_draw(np.random.default_rng(0), x, separated, np.array([[1.0, 2.0], [1.0, -2.0]]))
    assert set(np.unique(out)) <= {0.0, 1.0}


def test_observed_values_are_kept_and_every_sporadic_gap_is_filled():
    data = incomplete(3)
    completed = impute(data, "o", 0, seed=1)
    for column in VARIABLES:
        seen = data[column].notna()
        pd.testing.assert_series_equal(completed.loc[seen, column], data.loc[seen, column].astype(float))
        assert completed[column].notna().all()
    assert set(completed.loc[data["employed"].isna(), "employed"]) <= {0.0, 1.0}


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), order=st.permutations(range(4)), relabel=st.booleans())
def test_a_study_is_imputed_from_its_own_rows_alone(seed, order, relabel):
    """Stratified imputation: leaving out other studies, reordering the studies' blocks and
    renaming the other studies do not change a study's completed values (what federation needs)."""
    data = incomplete(seed)
    studies = sorted(data["study"].unique())
    keep = studies[order[0]]
    whole = impute(data, "o", 2, seed=seed)
    alone = impute(data[data["study"] == keep], "o", 2, seed=seed)
    shuffled = pd.concat([data[data["study"] == studies[i]] for i in order])
    if relabel:
        shuffled["study"] = shuffled["study"].where(shuffled["study"] == keep, "X" + shuffled["study"])
    moved = impute(shuffled, "o", 2, seed=seed)
    rows = data["study"] == keep
    pd.testing.assert_frame_equal(alone[VARIABLES], whole.loc[rows, VARIABLES])
    pd.testing.assert_frame_equal(moved.loc[rows[rows].index, VARIABLES], whole.loc[rows, VARIABLES])


EMPLOYED_MODEL = {
    "models": {"employed": {"terms": ["employed"], "adjust": ["baseline"], "report": {"e": {"employed": 1}}}}
}


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), method=st.sampled_from(METHODS), labels=st.permutations(["P", "Q", "S01", "A"]))
def test_row_order_and_study_labels_do_not_change_the_imputations_or_pooled_results(seed, method, labels):
    """A site re-exporting its file with rows in another order, or the studies relabelled (which
    reorders them), give the same completed values per participant and the same pooled results."""
    data = incomplete(seed)
    data["participant_id"] = [f"{k * 7919 % 10007:05d}" for k in range(len(data))]  # ties need an id
    renamed = dict(zip(sorted(data["study"].unique()), labels))
    moved = data.sample(frac=1, random_state=seed).assign(study=lambda d: d["study"].map(renamed))
    before = impute(data, "o", 1, seed=seed, method=method)
    after = impute(moved, "o", 1, seed=seed, method=method).loc[data.index]
    pd.testing.assert_frame_equal(before[VARIABLES], after[VARIABLES])
    pooled = []
    for frame in (data, moved):
        statistics = imputed_statistics(frame, "o", EMPLOYED_MODEL, {"seed": seed, "method": method}, range(2))
        pooled.append(pool_estimates(fit_imputations(statistics, "o", EMPLOYED_MODEL, range(2))))
    assert len(pooled[0]) and (pooled[0]["status"] == "estimated").all()
    columns = ["estimate", "se", "df", "ci_low", "ci_high", "fmi", "n_participants"]
    np.testing.assert_allclose(pooled[1][columns].to_numpy(float), pooled[0][columns].to_numpy(float), rtol=1e-9)


def test_scores_that_differ_in_their_last_bits_are_imputed_alike():
    """A study's stream comes from its values to 10 significant digits: z-scores recomputed in
    another order of summation (a site's harmonization against the pooled run's) draw the same."""
    data = incomplete(11)
    nudged = data.assign(o_bl_z=data["o_bl_z"] * (1 + 4e-16), o_fu_z=data["o_fu_z"] + 1e-17)
    before, after = impute(data, "o", 0, seed=3), impute(nudged, "o", 0, seed=3)
    np.testing.assert_allclose(after[VARIABLES].to_numpy(float), before[VARIABLES].to_numpy(float), rtol=1e-9)


def test_imputations_do_not_depend_on_the_chunking_and_differ_between_numbers():
    data = incomplete(4)
    analysis = {
        "models": {"employed": {"terms": ["employed"], "adjust": ["baseline"], "report": {"e": {"employed": 1}}}}
    }
    whole = imputed_statistics(data, "o", analysis, {"seed": 9}, range(4))
    parts = imputed_statistics(data, "o", analysis, {"seed": 9}, range(2)) + imputed_statistics(
        data, "o", analysis, {"seed": 9}, range(2, 4)
    )
    for a, b in zip(whole, parts):
        for study in a:
            design = "employed/primary"
            np.testing.assert_array_equal(
                a[study]["outcomes"]["o"]["designs"][design]["products"],
                b[study]["outcomes"]["o"]["designs"][design]["products"],
            )
    first = whole[0]["S00"]["outcomes"]["o"]["designs"]["employed/primary"]["products"]
    assert not np.array_equal(first, whole[1]["S00"]["outcomes"]["o"]["designs"]["employed/primary"]["products"])


def test_a_variable_a_study_never_measured_is_not_imputed():
    data = incomplete(5)
    never = data["study"] == "S01"
    data.loc[never, ["o_fu_z", "o_bl_z"]] = np.nan
    completed = impute(data, "o", 0, seed=1)
    assert completed.loc[never, ["o_fu_z", "o_bl_z"]].isna().all().all()
    assert completed.loc[~never, VARIABLES].notna().all().all()


def test_too_few_observed_values_are_refused_naming_the_study_and_variable():
    data = incomplete(6)
    rows = data.index[data["study"] == "S02"]
    data.loc[rows[5:], "o_fu_z"] = np.nan
    with pytest.raises(ImputationError, match=r"study S02: o_fu_z observed for \d+ participants only"):
        impute(data, "o", 0, seed=1)


def test_fixed_effects_imputation_completes_and_refuses_a_study_without_baseline():
    data = incomplete(7)
    completed = impute(data, "o", 0, seed=1, method="fixed_effects")
    assert completed[VARIABLES].notna().all().all()
    data.loc[data["study"] == "S03", "o_bl_z"] = np.nan
    with pytest.raises(ImputationError, match="studies S03: o_bl_z never observed"):
        impute(data, "o", 0, seed=1, method="fixed_effects")


def test_fixed_effects_imputation_of_the_one_study_that_measured_the_outcome():
    """No study indicators to add: the study is imputed, the others stay missing (attacker's F8)."""
    data = incomplete(9)
    measured = data["study"] == "S00"
    data.loc[~measured, "o_fu_z"] = np.nan
    completed = impute(data, "o", 0, seed=1, method="fixed_effects")
    assert completed.loc[measured, VARIABLES].notna().all().all()
    assert completed.loc[~measured, "o_fu_z"].isna().all()
    pd.testing.assert_frame_equal(impute(data[measured], "o", 0, seed=1, method="fixed_effects"), completed[measured])


def test_delta_shifts_the_imputed_follow_up_of_its_group_only():
    data = incomplete(8)
    base = impute(data, "o", 0, seed=1)
    for delta, group in (
        (Delta(arm={"IPS": -0.5}), base["arm"] == "IPS"),
        (Delta(employed={1: 0.25}), base["employed"] == 1),
    ):
        moved = delta_adjusted(base, data, "o", delta)["o_fu_z"] - base["o_fu_z"]
        target = data["o_fu_z"].isna() & group
        np.testing.assert_allclose(moved[target], next(iter({**delta.arm, **delta.employed}.values())), atol=1e-12)
        assert (moved[~target] == 0).all() and target.any()


def test_small_missing_at_random_simulation_mi_is_unbiased():
    """CI's small version of the missing-data simulation (docs/validation.md has 1,000 replicates):
    MAR on baseline, arm and employment (the scenario mar_employment, where complete-case is biased);
    MI within 3 Monte Carlo SEs of the truth and of the full data before deletion, its intervals cover
    in most replicates, and complete-case falls short of the full data's IPS effect."""
    scenario = {"name": "mar", "studies": 5, "participants": [150, 300], "tau2": 0.02, "employment_rate": 0.4,
                "smd": 0.5, "attrition": 0, "imputations": 5,
                "missingness": {"intercept": -1.5, "baseline": -0.5, "ips": 0.5, "employed": 2.0}}  # fmt: skip
    summary = summarize(run_chunk(0, scenario, range(24)), [scenario]).set_index("method")
    for method in ("MI one-stage: ips", "MI one-stage: employed"):
        row = summary.loc[method]
        assert abs(row["bias"]) < 3 * row["bias_mcse"], (method, row["bias"], row["bias_mcse"])
        assert abs(row["difference_from_full"]) < 3 * row["difference_from_full_mcse"], method
        assert row["coverage"] >= 0.8
    complete_case = summary.loc["complete-case one-stage: ips"]
    assert complete_case["difference_from_full"] < -2 * complete_case["difference_from_full_mcse"]
    assert 0.3 < summary["missing_share"].iloc[0] < 0.5
