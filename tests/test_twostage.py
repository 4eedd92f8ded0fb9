"""Two-stage analysis on the demo, and forest plots."""

import pytest
import yaml
from tests_support import harmonized_pool

from ipdpool.figures import forest_plot
from ipdpool.models.onestage import fit_outcome
from ipdpool.models.twostage import PER_STUDY_COLUMNS, per_study_table, two_stage_tables


@pytest.fixture(scope="module")
def analysis(repo_root):
    return yaml.safe_load((repo_root / "config" / "config.yaml").read_text())["analysis"]


@pytest.fixture(scope="module")
def functioning(repo_root, analysis):
    pooled = harmonized_pool(repo_root)
    estimates = per_study_table(pooled, "functioning", analysis)
    two_stage, leave_one_out = two_stage_tables(estimates)
    one_stage, _ = fit_outcome(pooled, "functioning", {**analysis, "sensitivity": {}})
    return estimates, two_stage, leave_one_out, one_stage


def test_per_study_table_has_the_documented_columns(functioning):
    estimates = functioning[0]
    assert list(estimates.columns) == PER_STUDY_COLUMNS
    employed = estimates[estimates["term"] == "employed"]
    assert sorted(employed["study"]) == ["DK", "EU6", "NL", "SE", "US"]
    assert (employed["ci_low"] < employed["estimate"]).all() and (employed["df"] > 50).all()


def test_per_study_ols_matches_statsmodels(repo_root, analysis):
    import statsmodels.api as sm

    pooled = harmonized_pool(repo_root)
    part = pooled[(pooled["study"] == "SE")][["functioning_fu_z", "employed", "functioning_bl_z"]].dropna()
    reference = sm.OLS(part["functioning_fu_z"], sm.add_constant(part[["employed", "functioning_bl_z"]])).fit()
    estimates = per_study_table(pooled, "functioning", analysis)
    row = estimates[(estimates["study"] == "SE") & (estimates["term"] == "employed")].iloc[0]
    assert row["estimate"] == pytest.approx(reference.params["employed"], abs=1e-10)
    assert row["se"] == pytest.approx(reference.bse["employed"], abs=1e-10)


def test_two_stage_is_close_to_one_stage_on_the_demo(functioning):
    _, two_stage, _, one_stage = functioning
    for term in ("employed", "ips", "ips:employed"):
        one = one_stage[one_stage["term"] == term].iloc[0]
        two = two_stage[(two_stage["term"] == term) & (two_stage["method"] == "REML") & (~two_stage["hksj"])].iloc[0]
        # the routes differ in study-specific baseline slopes and residual variances: agree within one SE
        assert abs(one["estimate"] - two["estimate"]) < one["se"], term


def test_two_stage_rows_cover_every_estimator_and_adjustment(functioning):
    two_stage = functioning[1]
    employed = two_stage[two_stage["term"] == "employed"]
    assert sorted(zip(employed["method"], employed["hksj"])) == sorted(
        [("REML", False), ("REML", True), ("DL", False), ("DL", True), ("PM", False), ("PM", True), ("FE", False)]
    )
    required = [
        "outcome",
        "contrast",
        "method",
        "hksj",
        "estimate",
        "se",
        "ci_low",
        "ci_high",
        "pi_low",
        "pi_high",
        "tau2",
        "tau2_ci_low",
        "tau2_ci_high",
        "i2",
        "h2",
        "q",
        "q_p",
        "k",
    ]
    assert set(required) <= set(two_stage.columns)


def test_leave_one_out_has_one_row_per_omitted_study(functioning):
    leave_one_out = functioning[2]
    rows = leave_one_out[(leave_one_out["term"] == "employed") & (~leave_one_out["hksj"])]
    assert sorted(rows["left_out"]) == ["DK", "EU6", "NL", "SE", "US"] and (rows["k"] == 4).all()


def test_forest_plot_writes_each_format_asked_for_and_identical_svg(tmp_path, functioning):
    estimates, two_stage, _, one_stage = functioning
    studies = estimates[estimates["term"] == "employed"]
    pooled = two_stage[(two_stage["term"] == "employed") & (two_stage["method"] == "REML") & (~two_stage["hksj"])].iloc[
        0
    ]
    one = one_stage[one_stage["term"] == "employed"].iloc[0]
    spec = {"label": "Functioning", "construct": "level of functioning", "better": "higher"}
    forest_plot(studies, pooled, one, "functioning", "employed", spec, tmp_path / "a", formats=("svg", "png"))
    forest_plot(studies, pooled, one, "functioning", "employed", spec, tmp_path / "b")
    assert not (tmp_path / "b.png").exists()  # SVG alone by default
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
    assert "One-stage mixed model" in (tmp_path / "a.svg").read_text()
