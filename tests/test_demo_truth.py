"""The demo carries the design facts of the published trials and its stated true effects."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import yaml

from ipdpool.demo.design import INSTRUMENTS, OUTCOMES, TRIALS, TRUE_EMPLOYED_SMD
from ipdpool.demo.simulate import simulate_latent

# Design facts from the foundation issue (published trial reports), not from our output.
PUBLISHED = {
    "EU6": {"n": {"IPS": 156, "Vocational service": 156}, "employed": {"IPS": 0.545, "Vocational service": 0.276}},
    "DK": {
        "n": {"IPS": 243, "IPSE": 238, "Sædvanlig indsats": 239},
        "employed": {"IPS": 0.60, "IPSE": 0.60, "Sædvanlig indsats": 0.47},
    },
    "SE": {
        "n": {"IPS": 60, "Traditionell arbetsrehabilitering": 60},
        "employed": {"IPS": 0.46, "Traditionell arbetsrehabilitering": 0.11},
    },
    "NL": {
        "n": {"IPS": 71, "Traditionele arbeidsrehabilitatie": 80},
        "employed": {"IPS": 0.44, "Traditionele arbeidsrehabilitatie": 0.25},
    },
    "US": {"n": {"IPS": 68, "PSR": 69, "BVR": 67}, "employed": {"IPS": 0.74, "PSR": 0.22, "BVR": 0.22}},
}


@pytest.mark.parametrize("study", list(PUBLISHED))
def test_trial_sizes_and_employment_match_the_published_design(demo, study):
    latent = demo.latent[study]
    assert latent.groupby("arm_label").size().to_dict() == PUBLISHED[study]["n"]
    shares = latent.groupby("arm_label")["employed"].mean()
    for arm, share in PUBLISHED[study]["employed"].items():
        # one participant either way of the published share
        assert abs(shares[arm] - share) <= 1 / PUBLISHED[study]["n"][arm] + 1e-9, (study, arm, shares[arm])


def test_eu6_has_six_centres_of_52_and_se_73_percent_assessed(demo):
    assert demo.latent["EU6"].groupby("site").size().tolist() == [52] * 6
    assert demo.latent["SE"]["assessed"].sum() == round(0.73 * 120)
    assert set(demo.latent["DK"]["site"]) == {"København", "Aarhus", "Odense"}


def test_each_outcome_is_measured_in_two_to_five_trials():
    for outcome in OUTCOMES:
        count = sum(outcome in trial.instruments for trial in TRIALS.values())
        assert 2 <= count <= 5, (outcome, count)


def test_instruments_include_a_reversed_scale_and_item_level_scales():
    used = {name for trial in TRIALS.values() for name in trial.instruments.values()}
    assert any(INSTRUMENTS[name].direction == -1 for name in used)
    assert any(INSTRUMENTS[name].n_items > 0 for name in used)
    for outcome in ("functioning", "negative_symptoms", "quality_of_life", "depression"):
        assert len({t.instruments[outcome] for t in TRIALS.values() if outcome in t.instruments}) >= 2, outcome


def test_ground_truth_file_states_the_generator_effects(demo_dir):
    truth = yaml.safe_load((demo_dir / "ground_truth.yaml").read_text(encoding="utf-8"))
    assert truth["synthetic"] is True
    assert truth["true_effects"]["employed"] == TRUE_EMPLOYED_SMD
    assert truth["true_effects"]["employed"]["negative_symptoms"] == -0.41
    assert truth["true_effects"]["employed"]["functioning"] == 0.59
    assert truth["true_effects"]["employed"]["quality_of_life"] == 0.34
    assert truth["true_effects"]["ips_given_employment"] == 0
    assert truth["true_effects"]["ips_x_employed"] == 0
    for study in TRIALS:
        assert set(truth["studies"][study]["instruments"]) | set(truth["studies"][study]["not_collected"]) == set(
            OUTCOMES
        )


def within_study_fit(frames: list[pd.DataFrame], outcome: str, standardize: bool) -> np.ndarray:
    """OLS of follow-up on employed, IPS, IPS x employed, baseline and study dummies.

    With standardize=True both scores are put on the _z scale of the harmonized data
    (each study's baseline mean and SD), as the primary models use them.
    Returns the coefficients (employed, ips, ips x employed).
    """
    design, response = [], []
    for frame in frames:
        bl = frame[f"{outcome}_bl_latent"].to_numpy()
        fu = frame[f"{outcome}_fu_latent"].to_numpy()
        if standardize:
            mean, sd = bl.mean(), bl.std(ddof=1)
            bl, fu = (bl - mean) / sd, (fu - mean) / sd
        employed, ips = frame["employed"].to_numpy(), frame["ips"].to_numpy()
        design.append(np.column_stack([employed, ips, ips * employed, bl]))
        response.append(fu)
    study_dummies = np.zeros((sum(len(f) for f in frames), len(frames)))
    start = 0
    for j, frame in enumerate(frames):
        study_dummies[start : start + len(frame), j] = 1
        start += len(frame)
    x = np.column_stack([np.vstack(design), study_dummies])
    coef, *_ = np.linalg.lstsq(x, np.concatenate(response), rcond=None)
    return coef[:3]


@pytest.mark.parametrize("standardize", [False, True], ids=["latent", "z_scale"])
@pytest.mark.parametrize("assessed_only", [False, True], ids=["everyone", "assessed_only"])
def test_true_effects_are_recovered_from_latent_data_within_monte_carlo_error(standardize, assessed_only):
    """Mean estimate over replicate demos equals the truth within 4 Monte Carlo SEs.

    assessed_only: complete cases after attrition (which depends on arm and baseline
    severity only) still estimate the truth once baseline is adjusted for.
    """
    replicates = 40
    estimates = {o: [] for o in OUTCOMES}
    for seed in range(1000, 1000 + replicates):
        latent, _ = simulate_latent(seed=seed)
        for outcome in OUTCOMES:
            frames = [
                f[f["assessed"]] if assessed_only else f for s, f in latent.items() if outcome in TRIALS[s].instruments
            ]
            estimates[outcome].append(within_study_fit(frames, outcome, standardize))
    truth = {o: np.array([TRUE_EMPLOYED_SMD[o], 0.0, 0.0]) for o in OUTCOMES}
    for outcome in OUTCOMES:
        draws = np.array(estimates[outcome])
        mean, mcse = draws.mean(axis=0), draws.std(axis=0, ddof=1) / np.sqrt(replicates)
        assert np.all(np.abs(mean - truth[outcome]) < 4 * mcse), (outcome, mean, mcse)


def test_employment_is_confounded_by_baseline_functioning(demo):
    """Employment favours better baseline functioning and fewer negative symptoms within study."""
    frames = pd.concat(demo.latent.values())
    centred = frames.groupby("study")[["functioning_bl_latent", "negative_symptoms_bl_latent"]].transform(
        lambda x: x - x.mean()
    )
    fit = sm.Logit(frames["employed"].to_numpy(), sm.add_constant(np.column_stack([frames["ips"], centred]))).fit(
        disp=0
    )
    z = fit.params / fit.bse
    assert z[1] > 5 and z[2] > 3 and z[3] < -3, z


def test_attrition_differs_by_arm_and_depends_on_baseline_severity(demo):
    frames = pd.concat(demo.latent.values())
    severity = frames.groupby("study")["negative_symptoms_bl_latent"].transform(lambda x: x - x.mean())
    fit = sm.Logit(
        frames["assessed"].astype(int).to_numpy(), sm.add_constant(np.column_stack([frames["ips"], severity]))
    ).fit(disp=0)
    z = fit.params / fit.bse
    assert z[1] > 2 and z[2] < -3, z


def test_outcome_levels_vary_between_studies(demo):
    levels = [np.mean(list(demo.effects.baseline_level[s].values())) for s in TRIALS]
    intercepts = np.array([[demo.effects.followup_intercept[s][o] for o in OUTCOMES] for s in TRIALS])
    assert np.ptp(levels) > 0.05
    assert np.all(intercepts.std(axis=0) > 0)


def test_delivered_scores_are_rounded_and_within_instrument_range(demo):
    for study, export in demo.exports.items():
        truth = export.truth
        for outcome, name in TRIALS[study].instruments.items():
            instrument = INSTRUMENTS[name]
            for when in ("bl", "fu"):
                score = truth[f"{outcome}_{when}_score"].dropna().to_numpy()
                assert score.size > 0
                assert score.min() >= instrument.low and score.max() <= instrument.high, (study, outcome)
                steps = score / instrument.step
                assert np.allclose(steps, np.round(steps), atol=1e-6), (study, outcome)
                exact = truth.loc[truth[f"{outcome}_{when}_score"].notna(), f"{outcome}_{when}_exact"].to_numpy()
                inside = (exact > instrument.low) & (exact < instrument.high)
                assert np.all(np.abs(score[inside] - exact[inside]) <= instrument.step / 2 + 1e-9), (study, outcome)
