"""Build the demo: latent data, raw exports, and the ground truth they carry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from . import design
from .design import DEFAULT_SEED, INSTRUMENTS, OUTCOMES, TRIALS
from .export import TrialExport, export_trial
from .files import write_raw_file
from .simulate import StudyEffects, seed_streams, simulate_latent


@dataclass
class Demo:
    seed: int
    scale: int
    latent: dict[str, pd.DataFrame]
    effects: StudyEffects
    exports: dict[str, TrialExport]


def build_demo(seed: int = DEFAULT_SEED, scale: int = 1, confounding: float = 0.0) -> Demo:
    latent, effects = simulate_latent(seed, scale, confounding)
    _, streams = seed_streams(seed)
    exports = {study: export_trial(study, latent[study], streams[study][1]) for study in TRIALS}
    return Demo(seed, scale, latent, effects, exports)


def _r(x: float) -> float:
    return round(float(x), 6)


def ips_total_effect(demo: Demo, outcome: str) -> float:
    """Approximate IPS-vs-usual effect when not adjusting for employment.

    IPS acts only through employment here, so the `ips` model targets the employed
    SMD times the difference in the share employed (participant-weighted over the
    trials that measured the outcome). Approximate: complete cases and the model's
    study weights shift it slightly.
    """
    studies = [s for s, t in TRIALS.items() if outcome in t.instruments]
    weighted = total = 0.0
    for study in studies:
        frame = demo.latent[study]
        share = frame.groupby("ips")["employed"].mean()
        weighted += len(frame) * (share[1] - share[0])
        total += len(frame)
    return design.TRUE_EMPLOYED_SMD[outcome] * weighted / total


def ground_truth(demo: Demo) -> dict:
    studies = {}
    for study, trial in TRIALS.items():
        frame = demo.latent[study]
        level = demo.effects.baseline_level[study]
        intercept = demo.effects.followup_intercept[study]
        studies[study] = {
            "modelled_on": trial.modelled_on,
            "sites": list(trial.sites),
            "n_randomized": {arm: int((frame["arm_label"] == arm).sum()) for arm in trial.arms},
            "ips_arms_by_default": list(trial.ips_arms),
            "employed_share": {arm: _r(frame.loc[frame["arm_label"] == arm, "employed"].mean()) for arm in trial.arms},
            "assessed_at_18_months_share": _r(frame["assessed"].mean()),
            "assessed_share_by_arm": {
                arm: _r(frame.loc[frame["arm_label"] == arm, "assessed"].mean()) for arm in trial.arms
            },
            "instruments": {
                outcome: {
                    "instrument": name,
                    "label": INSTRUMENTS[name].label,
                    "range": [INSTRUMENTS[name].low, INSTRUMENTS[name].high],
                    "direction": INSTRUMENTS[name].direction,
                    "centre": INSTRUMENTS[name].centre,
                    "points_per_latent_sd": INSTRUMENTS[name].points_per_sd,
                    "rounded_to": INSTRUMENTS[name].step,
                }
                for outcome, name in trial.instruments.items()
            },
            "not_collected": [o for o in OUTCOMES if o not in trial.instruments],
            "latent_baseline_level": {o: _r(v) for o, v in level.items()},
            "latent_followup_intercept": {o: _r(v) for o, v in intercept.items()},
        }
    return {
        "synthetic": True,
        "note": "Synthetic data with known true effects. No real participant is represented.",
        "seed": demo.seed,
        "scale": demo.scale,
        "effect_scale": (
            "Standardized mean difference: latent follow-up score difference in units of the "
            "within-study SD of the latent baseline score (1 by construction). The primary "
            "baseline-adjusted models on the _z columns estimate these numbers."
        ),
        "true_effects": {
            "employed": {o: design.TRUE_EMPLOYED_SMD[o] for o in OUTCOMES},
            "ips_given_employment": design.TRUE_IPS_DIRECT_SMD,
            "ips_x_employed": design.TRUE_IPS_X_EMPLOYED_SMD,
            "ips_not_adjusted_for_employment_approx": {o: _r(ips_total_effect(demo, o)) for o in OUTCOMES},
        },
        "latent_model": {
            "followup": (
                "f = intercept[study] + stability * b + employed_smd * E + 0 * IPS + 0 * IPS*E + N(0, residual_sd^2)"
            ),
            "stability": dict(design.STABILITY),
            "residual_sd": design.RESIDUAL_SD,
            "baseline_level_sd_between_studies": design.BASELINE_LEVEL_SD,
            "followup_intercept_sd_between_studies": design.FOLLOWUP_INTERCEPT_SD,
            "baseline_correlation_factor_loadings": {o: list(v) for o, v in design.FACTOR_LOADINGS.items()},
            "employment": (
                "logit P(E) = intercept[study, arm] + sum(coef * within-study baseline); "
                "intercept set so each arm's share equals its target exactly"
            ),
            "employment_baseline_coef": dict(design.EMPLOYMENT_BASELINE_COEF),
            "followup_assessment": (
                "logit P(assessed) = intercept[study] + ips_logodds * IPS "
                "+ severity_logodds * within-study baseline negative symptoms"
            ),
            "attrition_ips_logodds": design.ATTRITION_IPS_LOGODDS,
            "attrition_severity_logodds": design.ATTRITION_SEVERITY_LOGODDS,
            "instrument_score": (
                "clip(round((centre + direction * points_per_latent_sd * latent) / rounded_to) * rounded_to, range)"
            ),
        },
        "outcome_coverage": {o: [s for s, t in TRIALS.items() if o in t.instruments] for o in OUTCOMES},
        "studies": studies,
    }


def write_demo(out_dir: Path, seed: int = DEFAULT_SEED, scale: int = 1) -> list[Path]:
    """Write raw files under out_dir/raw/<study>/ and out_dir/ground_truth.yaml."""
    demo = build_demo(seed, scale)
    written = []
    for study, export in demo.exports.items():
        folder = Path(out_dir) / "raw" / study
        for stale in folder.glob("*") if folder.exists() else []:
            stale.unlink()
        written.extend(write_raw_file(raw, folder) for raw in export.files)
    truth_path = Path(out_dir) / "ground_truth.yaml"
    truth_path.write_text(
        "# Generated by `python -m ipdpool.demo`; do not edit by hand.\n"
        + yaml.safe_dump(ground_truth(demo), sort_keys=False, allow_unicode=True, width=100),
        encoding="utf-8",
    )
    written.append(truth_path)
    return written
