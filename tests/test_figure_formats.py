"""Figures in the formats the config lists, and the before/after distribution plots drawn from
counts that the harmonization job writes (the raw files are read once)."""

import math
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import copy_workflow, snakemake

from ipdpool.figures import distributions_figure, save
from ipdpool.harmonize.audit import HISTOGRAM_BINS, MAX_BARS, distribution_counts


def test_counts_are_histograms_and_capped_categories_of_both_sides():
    raw_age = pd.Series(["23", "41", "-9", None, "35"], dtype=object)  # -9 left by a missing code rule
    data = pd.DataFrame(
        {
            "participant_id": ["a", "b", "c", "d", "e"],
            "age": [23.0, 41.0, np.nan, np.nan, 35.0],
            "sex": ["female", "male", "male", None, "female"],
            "employed": [0, 1, 1, 0, 0],
            "self_esteem_bl_z": [0.1, 0.2, 0.3, 0.4, 0.5],
        }
    )
    before = {"age": raw_age, "sex": pd.Series(["F", "M", "M", None, "F"], dtype=object)}
    counts = distribution_counts(before, data)
    assert set(counts["variable"]) == {"age", "sex", "employed"}  # ids and z-scores are not plotted
    age = counts[counts["variable"] == "age"]
    assert set(age["kind"]) == {"histogram"} and age.groupby("side")["count"].sum().to_dict() == {
        "harmonized": 3,
        "raw": 4,
    }
    assert (age.groupby("side").size() == HISTOGRAM_BINS).all()
    sex = counts[counts["variable"] == "sex"].set_index(["side", "category"])["count"].to_dict()
    assert sex == {("raw", "F"): 2, ("raw", "M"): 2, ("harmonized", "female"): 2, ("harmonized", "male"): 2}
    employed = counts[counts["variable"] == "employed"]
    assert set(employed["side"]) == {"harmonized"}  # no raw column feeds it here: one side only


def test_many_categories_share_one_bar():
    data = pd.DataFrame({"site": [f"s{i:03d}" for i in range(40)]})
    counts = distribution_counts({}, data)
    assert (
        len(counts) == MAX_BARS
        and counts["count"].sum() == 40
        and counts["category"].iloc[-1] == f"{40 - MAX_BARS + 1} others"
    )


def test_the_plot_has_a_panel_per_variable(tmp_path):
    data = pd.DataFrame({"age": np.linspace(18, 65, 50), "sex": ["female", "male"] * 25})
    rows = distribution_counts({"age": data["age"].astype(str)}, data).astype(str).to_dict("records")
    figure = distributions_figure(rows, "XX")
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert titles == ["age", "sex"] and len(figure.axes) == 4 * math.ceil(2 / 4)
    save(figure, tmp_path / "distributions", formats=("png", "svg"))
    assert (tmp_path / "distributions.png").read_bytes()[:4] == b"\x89PNG"
    drawn = (tmp_path / "distributions.svg").read_text()
    assert "XX: raw and harmonized values" in drawn
    assert "raw, as delivered" in drawn and "harmonized" in drawn  # the legend names both sides


@pytest.mark.parametrize("formats", [["png", "svg"], ["svg"]])
def test_the_workflow_writes_the_formats_in_the_config(tmp_path, formats):
    workdir = copy_workflow(tmp_path)
    (workdir / "formats.yaml").write_text(f"figures:\n  formats: {formats}\n")
    result = snakemake(workdir, "-n", "-p", "--configfile", "config/config.yaml", "formats.yaml")
    assert result.returncode == 0, result.stderr[-2000:]
    planned = result.stdout + result.stderr
    for suffix in ("png", "svg"):
        for path in (
            "results/figures/forest/functioning/employed__employed",
            "results/audit/DK/distributions",
            "results/figures/participant_flow",
        ):
            assert (f"{path}.{suffix}" in planned) == (suffix in formats), (path, suffix)


def test_a_format_added_after_a_run_draws_the_figures_again(completed_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(completed_run, workdir, symlinks=True)
    (workdir / "formats.yaml").write_text("figures:\n  formats: [svg, png]\n")
    result = snakemake(workdir, "-n", "--configfile", "config/config.yaml", "formats.yaml")
    assert result.returncode == 0, result.stderr[-2000:]
    planned = result.stdout + result.stderr
    assert "Nothing to be done" not in planned
    for rule in ("figures", "audit_plots"):
        assert f"rule {rule}:" in planned or f"localrule {rule}:" in planned, rule


def test_an_unknown_format_is_refused(tmp_path):
    workdir = copy_workflow(tmp_path)
    (workdir / "formats.yaml").write_text("figures:\n  formats: [jpg]\n")
    result = snakemake(workdir, "-n", "--configfile", "config/config.yaml", "formats.yaml")
    assert (
        result.returncode != 0
        and "figures.formats.0: 'jpg' is not allowed (did you mean `png`?); allowed values: svg, png"
        in result.stdout + result.stderr
    )
