"""The demo generator's unmeasured-confounder knob: off by default (the demo's own tests check
that the default is unchanged, byte for byte); on, the observational estimate of working is
biased upwards while IPS as the instrument recovers the true effect."""

import numpy as np
import pandas as pd

from ipdpool.demo.design import TRUE_EMPLOYED_SMD
from ipdpool.demo.simulate import simulate_latent
from ipdpool.models.iv import design, iv_analysis

OUTCOME = "functioning"


def pooled_latent(confounding: float) -> pd.DataFrame:
    latent, _ = simulate_latent(scale=4, confounding=confounding)
    frame = pd.concat(latent.values(), ignore_index=True)
    frame = frame[frame[f"{OUTCOME}_fu_latent"].notna()]
    return pd.DataFrame(
        {
            "study": frame["study"],
            "arm": np.where(frame["ips"] == 1, "IPS", "SAU"),
            "employed": frame["employed"].astype(float),
            f"{OUTCOME}_fu_z": frame[f"{OUTCOME}_fu_latent"],
            f"{OUTCOME}_bl_z": frame[f"{OUTCOME}_bl_latent"],
        }
    )


def test_zero_confounding_is_the_default_demo():
    default, _ = simulate_latent()
    explicit, _ = simulate_latent(confounding=0.0)
    for study in default:
        pd.testing.assert_frame_equal(default[study], explicit[study])


def test_the_confounder_biases_the_observational_estimate_and_iv_recovers_the_truth():
    truth = TRUE_EMPLOYED_SMD[OUTCOME]
    unconfounded = iv_analysis(design(pooled_latent(0.0), OUTCOME), OUTCOME, "pooled")
    confounded = iv_analysis(design(pooled_latent(1.0), OUTCOME), OUTCOME, "pooled")
    ols_se = (confounded.ols_ci_high - confounded.ols_ci_low) / 3.92
    # the trait adds ~0.5 SD to the workers' outcome: far beyond sampling error (SE ~ 0.03)
    assert confounded.ols_estimate - truth > 8 * ols_se
    assert abs(unconfounded.ols_estimate - truth) < 3 * ols_se
    assert abs(confounded.estimate - truth) < 2.5 * confounded.se
    assert confounded.ci_low < truth < confounded.ci_high
    # the confounder is not in the data: same columns, same shares working by arm
    default, _ = simulate_latent(scale=4)
    knob, _ = simulate_latent(scale=4, confounding=1.0)
    assert list(default["DK"].columns) == list(knob["DK"].columns)
    assert (
        default["DK"].groupby("arm_label")["employed"].sum().equals(knob["DK"].groupby("arm_label")["employed"].sum())
    )
