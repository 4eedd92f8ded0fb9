"""Forest plots stay readable when the prediction interval is enormous or missing."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from ipdpool.figures import forest_figure
from ipdpool.meta import meta_analysis


def studies_frame(estimates, se) -> pd.DataFrame:
    estimates, se = np.asarray(estimates, float), np.asarray(se, float)
    return pd.DataFrame(
        {
            "study": [f"S{i}" for i in range(len(estimates))],
            "n": 100,
            "estimate": estimates,
            "se": se,
            "ci_low": estimates - 1.96 * se,
            "ci_high": estimates + 1.96 * se,
        }
    )


def figure_for(studies: pd.DataFrame, prediction: str = "higgins"):
    pooled = pd.Series(meta_analysis(studies["estimate"], studies["se"] ** 2, "REML", prediction=prediction).row())
    one_stage = pd.Series({"status": "estimated", "estimate": 0.4, "ci_low": 0.2, "ci_high": 0.6})
    return forest_figure(studies, pooled, one_stage, "functioning", "employed", "level of functioning"), pooled


def test_a_huge_prediction_interval_is_clipped_to_the_confidence_intervals_and_marked():
    studies = studies_frame([0.1, 0.5, 0.9], [0.1, 0.12, 0.1])  # three studies: t(1) = 12.7
    figure, pooled = figure_for(studies)
    axis = figure.axes[0]
    ends = np.abs([*studies["ci_low"], *studies["ci_high"], pooled["ci_low"], pooled["ci_high"], 0.2, 0.6])
    span = 1.05 * ends.max()
    assert axis.get_xlim() == pytest.approx((-span, span))
    assert pooled["pi_low"] < -span and pooled["pi_high"] > span
    dashed = [line for line in axis.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and tuple(dashed[0].get_xdata()) == pytest.approx((-span, span))
    clipped = {line.get_gid(): (line.get_xdata()[0], line.get_marker()) for line in axis.get_lines() if line.get_gid()}
    assert clipped == {"pi-clipped-low": (pytest.approx(-span), "<"), "pi-clipped-high": (pytest.approx(span), ">")}
    assert "Two-stage REML (dashed: 95% PI)" in [label.get_text() for label in axis.get_yticklabels()]
    plt.close(figure)


def test_a_prediction_interval_inside_the_axis_is_drawn_whole_without_markers():
    studies = studies_frame([0.3, 0.35, 0.4, 0.45, 0.5], [0.1, 0.12, 0.1, 0.1, 0.1])  # tau^2 = 0
    figure, pooled = figure_for(studies, prediction="metafor")
    axis = figure.axes[0]
    dashed = [line for line in axis.get_lines() if line.get_linestyle() == "--"]
    assert tuple(dashed[0].get_xdata()) == pytest.approx((pooled["pi_low"], pooled["pi_high"]))
    assert not [line for line in axis.get_lines() if line.get_gid()]
    plt.close(figure)


def test_no_prediction_interval_is_claimed_for_two_studies():
    figure, pooled = figure_for(studies_frame([0.1, 0.5], [0.1, 0.12]))
    axis = figure.axes[0]
    assert np.isnan(pooled["pi_low"])
    labels = [label.get_text() for label in axis.get_yticklabels()]
    assert "Two-stage REML (no prediction interval)" in labels and not any("PI" in label for label in labels)
    assert not [line for line in axis.get_lines() if line.get_linestyle() == "--"]
    plt.close(figure)
