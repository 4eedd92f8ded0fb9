"""Forest plots in metafor's layout, readable when the prediction interval is enormous or missing."""

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from ipdpool.figures import forest_figure, forest_plot
from ipdpool.meta import meta_analysis

FUNCTIONING = {"label": "Functioning", "construct": "level of functioning", "better": "higher"}
DEPRESSION = {"label": "Depression", "construct": "depressive symptoms", "better": "lower"}


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


def figure_for(studies: pd.DataFrame, prediction: str = "higgins", term: str = "employed", spec=FUNCTIONING):
    pooled = pd.Series(meta_analysis(studies["estimate"], studies["se"] ** 2, "REML", prediction=prediction).row())
    hksj = pd.Series(meta_analysis(studies["estimate"], studies["se"] ** 2, "REML", True, prediction=prediction).row())
    one_stage = pd.Series(
        {"status": "estimated", "estimate": 0.4, "ci_low": 0.2, "ci_high": 0.6, "n_participants": 300}
    )
    figure = forest_figure(studies, pooled, one_stage, "functioning", term, spec, hksj)
    figure.hksj = hksj
    return figure, pooled


def texts(figure) -> list[str]:
    return [t.get_text() for ax in figure.axes for t in ax.texts] + [t.get_text() for t in figure.texts]


def test_a_huge_prediction_interval_is_clipped_to_the_confidence_intervals_and_marked():
    studies = studies_frame([0.1, 0.5, 0.9], [0.1, 0.12, 0.1])  # three studies: t(1) = 12.7
    figure, pooled = figure_for(studies)
    axis = figure.axes[0]
    hksj = figure.hksj  # every interval drawn sets the axis, the Knapp-Hartung one too
    ends = [
        0,
        *studies["ci_low"],
        *studies["ci_high"],
        pooled["ci_low"],
        pooled["ci_high"],
        hksj["ci_low"],
        hksj["ci_high"],
        0.2,
        0.6,
    ]
    low, high = min(ends), max(ends)
    pad = 0.05 * (high - low)
    assert axis.get_xlim() == pytest.approx((low - pad, high + pad))  # sized to the data, not symmetric about 0
    left, right = axis.get_xlim()
    assert pooled["pi_low"] < left and pooled["pi_high"] > right
    dashed = [line for line in axis.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and tuple(dashed[0].get_xdata()) == pytest.approx((left, right))
    clipped = {
        line.get_gid(): (line.get_xdata()[0], line.get_marker())
        for line in axis.get_lines()
        if line.get_gid() and "clipped" in line.get_gid()
    }
    assert clipped == {"pi-clipped-low": (pytest.approx(left), "<"), "pi-clipped-high": (pytest.approx(right), ">")}
    shown = texts(figure)
    assert "RE model (REML) with 95% PI" in shown
    assert f"PI [{pooled['pi_low']:.2f}, {pooled['pi_high']:.2f}]" in shown  # the clipped ends as numbers
    plt.close(figure)


def test_a_prediction_interval_inside_the_axis_is_drawn_whole_without_markers():
    studies = studies_frame([0.3, 0.35, 0.4, 0.45, 0.5], [0.1, 0.12, 0.1, 0.1, 0.1])  # tau^2 = 0
    figure, pooled = figure_for(studies, prediction="metafor")
    axis = figure.axes[0]
    dashed = [line for line in axis.get_lines() if line.get_linestyle() == "--"]
    assert tuple(dashed[0].get_xdata()) == pytest.approx((pooled["pi_low"], pooled["pi_high"]))
    assert not [line for line in axis.get_lines() if line.get_gid() and "clipped" in line.get_gid()]
    plt.close(figure)


def test_no_prediction_interval_is_claimed_for_two_studies():
    figure, pooled = figure_for(studies_frame([0.1, 0.5], [0.1, 0.12]))
    axis = figure.axes[0]
    assert np.isnan(pooled["pi_low"])
    shown = texts(figure)
    assert "RE model (REML), no PI (k < 3)" in shown and not any(t.startswith("PI [") for t in shown)
    assert not [line for line in axis.get_lines() if line.get_linestyle() == "--"]
    plt.close(figure)


def test_columns_heterogeneity_overall_test_and_knapp_hartung_as_metafor_prints_them():
    studies = studies_frame([0.1, 0.5, 0.9, 0.3], [0.1, 0.12, 0.1, 0.2])
    figure, pooled = figure_for(studies)
    shown = texts(figure)
    assert {"Study", "n", "Weight", "SMD [95% CI]"} <= set(shown)
    notes = [t for t in shown if t.startswith("Heterogeneity")][0]
    assert (
        f"Q = {pooled['q']:.2f}, df = 3" in notes
        and f"I\u00b2 = {pooled['i2']:.1f}%" in notes
        and f"\u03c4\u00b2 = {pooled['tau2']:.3f}" in notes
    )
    z = pooled["estimate"] / pooled["se"]
    assert f"Test for overall effect: z = {z:.2f}" in notes and "Knapp-Hartung: t(3) = " in notes
    assert "Knapp-Hartung (REML)" in shown
    assert figure._suptitle.get_text() == "Functioning: worked vs did not work"
    plt.close(figure)


@pytest.mark.parametrize(
    ("term", "spec", "left", "right"),
    [
        ("ips", FUNCTIONING, "favours usual services", "favours IPS"),
        ("ips", DEPRESSION, "favours IPS", "favours usual services"),
        ("employed", FUNCTIONING, "worse with work", "better with work"),
        ("employed", DEPRESSION, "better with work", "worse with work"),
        # an interaction favours no arm: a positive value is a larger benefit of work under IPS
        # where higher scores are better, a smaller one where lower scores are better
        ("ips:employed", FUNCTIONING, "smaller benefit of work under IPS", "larger benefit of work under IPS"),
        ("ips:employed", DEPRESSION, "larger benefit of work under IPS", "smaller benefit of work under IPS"),
    ],
)
def test_favours_labels_follow_the_direction_declared_in_the_schema(term, spec, left, right):
    figure, _ = figure_for(studies_frame([0.1, 0.5, 0.9], [0.1, 0.12, 0.1]), term=term, spec=spec)
    labels = {t.get_gid(): t.get_text() for t in figure.axes[0].texts}
    assert labels == {"favours-left": f"\u2190 {left}", "favours-right": f"{right} \u2192"}
    plt.close(figure)


def test_svg_keeps_its_numbers_as_text(tmp_path):
    studies = studies_frame([0.1, 0.5, 0.9], [0.1, 0.12, 0.1])
    pooled = pd.Series(meta_analysis(studies["estimate"], studies["se"] ** 2, "REML").row())
    forest_plot(studies, pooled, None, "functioning", "employed", FUNCTIONING, tmp_path / "plot")
    svg = (tmp_path / "plot.svg").read_text()
    shown = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert f"{pooled['estimate']:.2f} [{pooled['ci_low']:.2f}, {pooled['ci_high']:.2f}]" in shown
    assert "One-stage: not estimated" in shown
