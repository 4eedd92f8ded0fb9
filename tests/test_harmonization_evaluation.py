"""Harmonization evaluation: per-variable summaries by study and arm in raw and harmonized form,
the rules overview (TSV and XLSX) and audit plots that stay readable for any number of categories."""

from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import yaml

from ipdpool.disclosure import ShareRefused, collect_shareable
from ipdpool.evaluation import MAX_CATEGORIES, harmonization_summary, rules_overview, summarize, write_xlsx
from ipdpool.harmonize.audit import MAX_BARS, capped_counts
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.tables import formula_safe, read_table

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "config" / "schema.yaml")
STUDY_SCHEMA = REPO / "workflow" / "schemas" / "study.schema.yaml"


def test_numbers_give_mean_sd_and_range_and_categories_give_counts():
    numbers = summarize(pd.Series([1.0, 2.0, 3.0, None], dtype=object), categorical=False)
    assert (numbers["n"], numbers["missing"], numbers["mean"], numbers["sd"], numbers["min"], numbers["max"]) == (
        4,
        1,
        2.0,
        1.0,
        1.0,
        3.0,
    )
    assert numbers["categories"] == ""
    codes = summarize(pd.Series([2, 1, 1.0, "1", None], dtype=object), categorical=True)
    assert (codes["n"], codes["missing"], codes["categories"]) == (5, 1, "1: 3; 2: 1")  # 1, 1.0 and "1" are one code


def test_many_categories_are_listed_up_to_a_cap_and_the_rest_counted_together():
    values = pd.Series([f"c{i:03d}" for i in range(100) for _ in range(1 + (i < 5))], dtype=object)
    text = summarize(values, categorical=True)["categories"]
    parts = text.split("; ")
    assert len(parts) == MAX_CATEGORIES
    assert parts[:5] == ["c000: 2", "c001: 2", "c002: 2", "c003: 2", "c004: 2"]  # most frequent first
    assert parts[-1] == f"{100 - (MAX_CATEGORIES - 1)} other values: {105 - 5 * 2 - (MAX_CATEGORIES - 6)}"


def study_frame(n: int = 40) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    arms = np.array(["IPS", "SAU"] * (n // 2), dtype=object)
    data = pd.DataFrame(
        {"study": "X", "participant_id": [f"{i:020x}" for i in range(n)], "arm": arms, "age": np.linspace(20, 59, n)}
    )
    data["sex"] = np.where(np.arange(n) % 4 == 0, "female", "male")
    raw = {
        "arm": pd.Series(np.where(arms == "IPS", 1, 2), dtype=object),
        "age": pd.Series([f"{a:.1f}".replace(".", ",") for a in data["age"]], dtype=object),  # decimal comma
        # the sex rule reads a column of names: nothing of it may be listed
        "sex": pd.Series([f"Canary Person{i}" for i in range(n)], dtype=object),
    }
    return data, raw


def test_summary_has_raw_and_harmonized_rows_per_arm_and_never_lists_identifier_like_raw_values():
    data, raw = study_frame()
    sources = {"arm": "x.csv: arm", "age": "x.csv: age", "sex": "x.csv: full_name"}
    summary = harmonization_summary("X", data, raw, sources, SCHEMA).set_index(["variable", "form", "arm"])
    assert set(summary.index.get_level_values("arm")) == {"IPS", "SAU", "all"}
    assert summary.loc[("arm", "raw", "IPS"), "categories"] == "1: 20"
    assert summary.loc[("arm", "harmonized", "all"), "categories"] == "IPS: 20; SAU: 20"
    assert summary.loc[("age", "raw", "all"), "mean"] == pytest.approx(
        data["age"].round(1).mean(), abs=1e-4
    )  # "20,0" read as 20.0
    assert summary.loc[("age", "harmonized", "SAU"), "n"] == 20
    withheld = summary.loc[("sex", "raw", "all")]
    assert (withheld["n"], withheld["missing"]) == (40, 0) and "not shown" in withheld["categories"]
    assert "Canary" not in summary.to_csv()
    assert summary.loc[("sex", "harmonized", "all"), "categories"] == "male: 30; female: 10"
    assert "participant_id" not in summary.index.get_level_values("variable")


def test_rules_overview_lists_every_rule_of_every_study_with_its_sources_and_parameters():
    rule_files = [load_rules(REPO / "config" / "studies" / f"{study}.yaml", STUDY_SCHEMA) for study in ("EU6", "DK")]
    overview = rules_overview(rule_files, SCHEMA)
    eu6 = overview[overview["study"] == "EU6"].set_index(["variable", "part"])
    assert eu6.loc[("sex", ""), ["rule", "source_tables", "source_columns"]].tolist() == ["recode", "baseline", "sex"]
    assert eu6.loc[("sex", ""), "parameters"] == '{"map": {"1": "male", "2": "female"}}'
    assert eu6.loc[("followup_months", ""), "source_columns"] == "baseline.randdate, followup.fudate"
    assert (
        eu6.loc[("functioning", "followup"), "parameters"]
        == '{"direction": "same", "instrument": "GAF", "missing": [-99, 999], "range": [1, 100]}'
    )
    assert eu6.loc[("depression", ""), "rule"] == "not_collected"
    # Every schema variable and every outcome (two parts when collected) of each study.
    for rules in rule_files:
        rows = overview[overview["study"] == rules["study"]]
        collected = [
            o for o, rule in rules["outcomes"].items() if "not_collected" not in rule and "undetermined" not in rule
        ]
        assert len(rows) == len(rules["variables"]) + len(SCHEMA["outcomes"]) + len(collected)


def test_xlsx_is_the_same_bytes_on_every_write_and_keeps_formulas_as_text(tmp_path):
    frame = pd.DataFrame({"study": ["A", "B"], "parameters": ['=HYPERLINK("x")', '{"map": {"1": "IPS"}}']})
    write_xlsx(formula_safe(frame), tmp_path / "one.xlsx", "Rules")
    write_xlsx(formula_safe(frame), tmp_path / "two.xlsx", "Rules")
    assert (tmp_path / "one.xlsx").read_bytes() == (tmp_path / "two.xlsx").read_bytes()
    sheet = openpyxl.load_workbook(tmp_path / "one.xlsx")["Rules"]
    assert [cell.value for cell in sheet["B"]] == ["parameters", '\'=HYPERLINK("x")', '{"map": {"1": "IPS"}}']
    assert all(cell.data_type == "s" for cell in sheet["B"])


def test_audit_bars_are_capped_for_any_number_of_categories():
    days = pd.Series([str(d) for d in range(100)] + ["0"] * 50)  # days worked behind `employed`: ~100 values
    counts = capped_counts(days)
    assert len(counts) == MAX_BARS and counts.index[-1] == f"{100 - (MAX_BARS - 1)} others"
    assert counts.sum() == len(days) and counts["0"] == 51
    few = pd.Series(["male", "female", "male"])
    assert capped_counts(few).to_dict() == {"female": 1, "male": 2}


def test_share_refuses_the_harmonization_summary(tmp_path):
    summary = tmp_path / "audit" / "harmonization_summary.tsv"
    summary.parent.mkdir()
    summary.write_text("study\tvariable\nX\tage\n")
    with pytest.raises(ShareRefused, match="harmonization_summary.tsv"):
        collect_shareable([summary], tmp_path / "share", 5)
    assert not (tmp_path / "share").exists()


def test_the_run_writes_the_evaluation_and_the_overview_and_shows_them_in_the_report(completed_run):
    summary = read_table(completed_run / "results" / "audit" / "harmonization_summary.tsv")
    pooled = pd.read_parquet(completed_run / "results" / "harmonized" / "pooled.parquet")
    config = yaml.safe_load((completed_run / "config" / "config.yaml").read_text())
    assert sorted(set(summary["study"])) == sorted(config["studies"])
    harmonized = summary[summary["form"] == "harmonized"].set_index(["study", "variable", "arm"])
    for (study, arm), part in pooled.groupby(["study", "arm"], observed=True):
        for variable in ("age", "employed", "functioning_fu"):
            row = harmonized.loc[(study, variable, arm)]
            assert (row["n"], row["missing"]) == (len(part), part[variable].isna().sum())
        assert harmonized.loc[(study, "age", arm), "mean"] == pytest.approx(part["age"].mean(), abs=1e-4)
    # EU6's employment comes from days worked: about 100 distinct values, summarized as numbers.
    eu6_days = summary[(summary["study"] == "EU6") & (summary["variable"] == "employed") & (summary["form"] == "raw")]
    assert eu6_days["max"].notna().all() and eu6_days["categories"].isna().all()
    overview = read_table(completed_run / "results" / "tables" / "rules_overview.tsv")
    assert sorted(set(overview["study"])) == sorted(config["studies"])
    workbook = openpyxl.load_workbook(completed_run / "results" / "tables" / "rules_overview.xlsx")
    assert workbook["Rules"].max_row == len(overview) + 1
    for name in ("harmonization_summary", "rules_overview"):
        page = (completed_run / "results" / "report" / "tables" / f"{name}.html").read_text()
        assert page.count("<tr>") == {"harmonization_summary": len(summary), "rules_overview": len(overview)}[name] + 1
