"""Figures read well in print: every text of every figure a run draws is at least 8 pt at the
figure's own size; coverage intervals stay within [0, 1]; the before/after distributions have a
legend and whole category labels."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.proportion import proportion_confint
from test_figures_match_tables import svg_font_sizes

from ipdpool.figures import distributions_figure
from ipdpool.simulation import coverage_plot, wilson_interval


@pytest.mark.workflow
def test_every_figure_of_a_run_has_text_of_at_least_8_pt(completed_run):
    figures = sorted((completed_run / "results").glob("figures/**/*.svg")) + sorted(
        (completed_run / "results").glob("audit/*/distributions.svg")
    )
    assert len(figures) > 50  # forest plots, flows, status, distributions
    small = {path.name: min(svg_font_sizes(path)) for path in figures if min(svg_font_sizes(path)) < 8}
    assert not small


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.data())
def test_wilson_interval_is_statsmodels_and_within_0_and_1(n, data):
    covered = data.draw(st.integers(0, n))
    low, high = wilson_interval(np.array([covered / n]), np.array([float(n)]))
    reference = proportion_confint(covered, n, alpha=0.05, method="wilson")
    assert np.allclose([low[0], high[0]], reference, atol=1e-12)
    assert 0 <= low[0] <= covered / n + 1e-12 and covered / n - 1e-12 <= high[0] <= 1


def test_coverage_bars_stay_within_0_and_1_and_text_is_8_pt(tmp_path):
    summary = pd.DataFrame(
        {
            "scenario": ["few studies", "few studies", "many studies", "many studies"],
            "method": ["one-stage", "two-stage"] * 2,
            "coverage": [1.0, 0.99, 0.95, 0.90],
            "coverage_mcse": np.sqrt(np.array([1.0, 0.99, 0.95, 0.90]) * (1 - np.array([1.0, 0.99, 0.95, 0.90])) / 40),
            "estimated": [40, 40, 40, 40],
        }
    )
    figure = coverage_plot(summary)
    ends = [x for collection in figure.axes[0].collections for segment in collection.get_segments() for x, _ in segment]
    assert len(ends) == 8 and 0 <= min(ends) and max(ends) <= 1
    sizes = [text.get_fontsize() for text in figure.findobj(match=lambda o: hasattr(o, "get_fontsize"))]
    assert min(sizes) >= 8
    plt.close(figure)


def test_distributions_have_a_legend_and_whole_category_labels():
    counts = [
        {"variable": "arm_original", "side": side, "kind": "categories", "category": category, "count": "10"}
        for side in ("raw", "harmonized")
        for category in ("IPS", "Vocational services", "schizophrenia_spectrum")
    ]
    figure = distributions_figure(counts, "XX")
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["raw, as delivered (after missing-value codes)", "harmonized"]
    # a label wrapped at a space or after "_" reads back whole
    labels = {t.get_text().replace("_\n", "_").replace("\n", " ") for t in figure.axes[0].get_xticklabels()}
    assert {"IPS", "Vocational services", "schizophrenia_spectrum"} <= labels
    plt.close(figure)
