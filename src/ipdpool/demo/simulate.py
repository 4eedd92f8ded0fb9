"""Latent (instrument-free) simulation of the demo trials.

For participant i in study s and outcome o, with b the latent baseline score
(within-study SD 1) and E the indicator of competitive work during follow-up:

    b_io = level_so + e_io,             e_i ~ MVN(0, R)   (R from FACTOR_LOADINGS)
    f_io = intercept_so + stability_o * b_io + smd_o * E_i + 0 * IPS_i + 0 * IPS_i E_i + u_io,
    u_io ~ N(0, RESIDUAL_SD^2)

Employment depends on randomized arm and on baseline functioning and negative
symptoms (confounding that baseline adjustment removes); follow-up assessment
depends on arm and baseline negative symptoms (missing at random given baseline).
So `f ~ E + b + study` is correctly specified and its E coefficient is smd_o.

The `confounding` knob (default 0: the demo as published here, byte-identical) adds an
unmeasured trait U ~ N(0, 1), drawn from a stream of its own, that raises both the log-odds of
work (+ confounding * U) and recovery (+ confounding * U on each follow-up score, in the
direction in which work helps). Then `f ~ E + b + study` is biased, while randomization to
IPS, which acts only through work, stays a valid instrument (models.iv).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .design import (
    ATTRITION_IPS_LOGODDS,
    ATTRITION_SEVERITY_LOGODDS,
    BASELINE_LEVEL_SD,
    DEFAULT_SEED,
    EMPLOYMENT_BASELINE_COEF,
    FACTOR_LOADINGS,
    FOLLOWUP_INTERCEPT_SD,
    OUTCOMES,
    RESIDUAL_SD,
    STABILITY,
    TRIALS,
    TRUE_EMPLOYED_SMD,
    TRUE_IPS_DIRECT_SMD,
    TRUE_IPS_X_EMPLOYED_SMD,
    Trial,
)

RECRUITMENT_START = {
    "EU6": "2003-04-01",
    "DK": "2012-05-01",
    "SE": "2009-09-01",
    "NL": "2007-02-01",
    "US": "1996-06-01",
}
RECRUITMENT_DAYS = 700
SHARE_FEMALE = {"EU6": 0.40, "DK": 0.45, "SE": 0.42, "NL": 0.30, "US": 0.38}
DIAGNOSIS_MIX = {
    "EU6": {"schizophrenia_spectrum": 0.78, "bipolar": 0.17, "depression": 0.0, "other": 0.05},
    "DK": {"schizophrenia_spectrum": 0.55, "bipolar": 0.15, "depression": 0.25, "other": 0.05},
    "SE": {"schizophrenia_spectrum": 0.55, "bipolar": 0.15, "depression": 0.20, "other": 0.10},
    "NL": {"schizophrenia_spectrum": 0.70, "bipolar": 0.12, "depression": 0.10, "other": 0.08},
    "US": {"schizophrenia_spectrum": 0.65, "bipolar": 0.15, "depression": 0.15, "other": 0.05},
}
# Item non-response among those assessed.
BASELINE_ITEM_MISSING = 0.02
FOLLOWUP_ITEM_MISSING = 0.03


@dataclass(frozen=True)
class StudyEffects:
    baseline_level: dict[str, dict[str, float]]  # study -> outcome -> latent baseline mean
    followup_intercept: dict[str, dict[str, float]]  # study -> outcome -> follow-up intercept


def baseline_correlation() -> np.ndarray:
    loadings = np.array([FACTOR_LOADINGS[o] for o in OUTCOMES])
    common = loadings @ loadings.T
    return common + np.diag(1.0 - np.diag(common))


def seed_streams(seed: int) -> tuple[np.random.Generator, dict[str, tuple[np.random.Generator, np.random.Generator]]]:
    """One stream for study-level effects and, per trial, one for the latent data
    and one for the raw-file details (codes, visit dates, job episodes).

    Streams are spawned, not shared, so each trial's data do not depend on the
    others' sizes (the 100x benchmark version keeps the same study effects).
    """
    children = np.random.SeedSequence(seed).spawn(1 + len(TRIALS))
    per_trial = {
        study: tuple(np.random.default_rng(s) for s in child.spawn(2)) for study, child in zip(TRIALS, children[1:])
    }
    return np.random.default_rng(children[0]), per_trial


def draw_study_effects(rng: np.random.Generator) -> StudyEffects:
    level, intercept = {}, {}
    for study in TRIALS:
        level[study] = {o: float(rng.normal(0, BASELINE_LEVEL_SD)) for o in OUTCOMES}
        intercept[study] = {o: float(rng.normal(0, FOLLOWUP_INTERCEPT_SD)) for o in OUTCOMES}
    return StudyEffects(level, intercept)


def top_k_within(score: np.ndarray, k: int) -> np.ndarray:
    """Indicator of the k largest scores (ties broken by position)."""
    chosen = np.zeros(score.size, dtype=bool)
    chosen[np.argsort(-score, kind="stable")[:k]] = True
    return chosen


def threshold_logistic(rng: np.random.Generator, linear: np.ndarray, share: float) -> np.ndarray:
    """Draw a binary outcome from a logistic model whose intercept is set so the
    realized share is exactly `share`: the k = round(share * n) largest values of
    linear predictor + logistic noise."""
    utility = linear + rng.logistic(size=linear.size)
    return top_k_within(utility, int(round(share * linear.size)))


def assign_sites_and_arms(trial: Trial, rng: np.random.Generator, scale: int) -> pd.DataFrame:
    arms = np.concatenate([[arm] * (n * scale) for arm, n in trial.arms.items()])
    n = arms.size
    if trial.study == "EU6":
        # EQOLISE randomized within centre: equal numbers per centre and arm.
        sites = np.tile(np.repeat(trial.sites, n // (2 * len(trial.sites))), 2)
    else:
        weights = np.linspace(1.4, 0.6, len(trial.sites))
        sites = rng.choice(np.array(trial.sites), size=n, p=weights / weights.sum())
    order = rng.permutation(n)
    frame = pd.DataFrame({"site": sites[order], "arm_label": arms[order]})
    frame["ips"] = frame["arm_label"].isin(trial.ips_arms).astype(int)
    return frame


def unmeasured_trait(rng: np.random.Generator, n: int) -> np.ndarray:
    """The confounder, from a child stream of the trial's: the main stream is not advanced."""
    return np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0]).normal(size=n)


def simulate_trial(
    trial: Trial, effects: StudyEffects, rng: np.random.Generator, scale: int = 1, confounding: float = 0.0
) -> pd.DataFrame:
    """Latent participant-level data for one trial (one row per randomized participant)."""
    study = trial.study
    frame = assign_sites_and_arms(trial, rng, scale)
    n = len(frame)
    frame.insert(0, "study", study)
    start = pd.Timestamp(RECRUITMENT_START[study])
    frame["randomized_on"] = start + pd.to_timedelta(
        np.sort(rng.integers(0, RECRUITMENT_DAYS, n))[rng.permutation(n)], unit="D"
    )
    frame["age"] = np.clip(rng.normal(36, 9.5, n), 18, 64).round(1)
    frame["sex"] = np.where(rng.random(n) < SHARE_FEMALE[study], "female", "male")
    mix = DIAGNOSIS_MIX[study]
    frame["diagnosis"] = rng.choice(np.array(list(mix)), size=n, p=np.array(list(mix.values())))

    within = rng.multivariate_normal(np.zeros(len(OUTCOMES)), baseline_correlation(), size=n, method="cholesky")
    for j, outcome in enumerate(OUTCOMES):
        frame[f"{outcome}_bl_latent"] = effects.baseline_level[study][outcome] + within[:, j]

    linear = sum(coef * within[:, OUTCOMES.index(o)] for o, coef in EMPLOYMENT_BASELINE_COEF.items())
    trait = unmeasured_trait(rng, n) if confounding else None
    if trait is not None:
        linear = linear + confounding * trait
    employed = np.zeros(n, dtype=bool)
    for arm, share in trial.employment_target.items():
        in_arm = (frame["arm_label"] == arm).to_numpy()
        employed[in_arm] = threshold_logistic(rng, linear[in_arm], share)
    frame["employed"] = employed.astype(int)

    severity = within[:, OUTCOMES.index("negative_symptoms")]
    assessed_linear = ATTRITION_IPS_LOGODDS * frame["ips"].to_numpy() + ATTRITION_SEVERITY_LOGODDS * severity
    frame["assessed"] = threshold_logistic(rng, assessed_linear, trial.assessed_target)

    ips = frame["ips"].to_numpy()
    for outcome in OUTCOMES:
        frame[f"{outcome}_fu_latent"] = (
            effects.followup_intercept[study][outcome]
            + STABILITY[outcome] * frame[f"{outcome}_bl_latent"].to_numpy()
            + TRUE_EMPLOYED_SMD[outcome] * employed
            + TRUE_IPS_DIRECT_SMD * ips
            + TRUE_IPS_X_EMPLOYED_SMD * ips * employed
            + rng.normal(0, RESIDUAL_SD, n)
        )
        if trait is not None:
            frame[f"{outcome}_fu_latent"] += confounding * np.sign(TRUE_EMPLOYED_SMD[outcome]) * trait
    for outcome in OUTCOMES:
        frame[f"{outcome}_bl_missing"] = rng.random(n) < BASELINE_ITEM_MISSING
        frame[f"{outcome}_fu_missing"] = rng.random(n) < FOLLOWUP_ITEM_MISSING
    return frame


def simulate_latent(
    seed: int = DEFAULT_SEED, scale: int = 1, confounding: float = 0.0
) -> tuple[dict[str, pd.DataFrame], StudyEffects]:
    """Latent data for all demo trials; `scale` multiplies every arm's size; `confounding` as
    the module docstring."""
    effects_rng, trial_streams = seed_streams(seed)
    effects = draw_study_effects(effects_rng)
    latent = {
        study: simulate_trial(trial, effects, trial_streams[study][0], scale, confounding)
        for study, trial in TRIALS.items()
    }
    return latent, effects
