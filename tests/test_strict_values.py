"""One strict parser for numeric text (issue: "NaN", "inf" and "2_5" passed as missing, infinity and 25),
and the measured cases around it: refused with file, column and data row unless declared missing; an arm
copied from a relabelled column reconciles at pooling; published_n as a total."""

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipdpool.harmonize.output import reconcile
from ipdpool.harmonize.problems import HarmonizationError
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.harmonize.study import harmonize_study
from ipdpool.harmonize.values import parse_numbers, strict_number

REPO = Path(__file__).resolve().parents[1]
KEY = b"strict-values-key-0123456789"
REFUSED = ["NaN", "nan", "-nan", "inf", "-Infinity", "infinity", "1e400", "-1e999", "2_5", "1_000", "0x1A",
           "1,234", "1 234", "1.234,5", "½", "٣", "1e", "--1", "+", ".", ""]  # fmt: skip


@pytest.mark.parametrize("text", REFUSED)
def test_text_that_float_accepts_but_no_trial_writes_is_refused(text):
    assert strict_number(text, ".") is None


@pytest.mark.parametrize("text", ["NaN", "inf", "2_5", "1e400", "1.5", "1.234,5", "1 234,5", "1,2,3"])
def test_with_a_decimal_comma_a_point_is_a_thousands_separator_and_refused(text):
    assert strict_number(text, ",") is None


@pytest.mark.parametrize(
    "text,decimal,number",
    [("2.5", ".", 2.5), ("-3", ".", -3.0), ("+4.", ".", 4.0), (".5", ".", 0.5), ("1E-05", ".", 1e-5),
     (" 7 ", ".", 7.0), ("26,5", ",", 26.5), ("-0,25", ",", -0.25)],
)  # fmt: skip
def test_plain_decimals_read_with_the_files_decimal_mark(text, decimal, number):
    assert strict_number(text, decimal) == number


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_number_as_python_writes_it_reads_back_exactly_with_either_decimal_mark(x):
    assert strict_number(repr(x), ".") == x
    assert strict_number(repr(x).replace(".", ","), ",") == x


@given(st.lists(st.one_of(st.sampled_from(REFUSED[:12]), st.integers(-999, 999).map(str)), min_size=1))
def test_a_cell_is_refused_by_its_text_alone_whatever_its_neighbours(cells):
    """Parsing per distinct value must not depend on the other cells or their order."""
    values, bad = parse_numbers(pd.Series(cells, dtype=object))
    again, bad_again = parse_numbers(pd.Series(cells[::-1], dtype=object))
    assert bad.tolist() == [c in REFUSED for c in cells] == bad_again.tolist()[::-1]
    assert all(math.isfinite(v) for v, b in zip(values, bad) if not b)


def test_numbers_from_a_reader_that_are_infinite_are_refused():
    values, bad = parse_numbers(pd.Series([1.5, float("inf"), float("nan"), None], dtype=object))
    assert bad.tolist() == [False, True, False, False] and values.iloc[0] == 1.5


@pytest.fixture
def workspace(tmp_path):
    shutil.copytree(REPO / "resources" / "demo" / "raw", tmp_path / "raw")
    return tmp_path


def study(workspace, name, edit_rules=None):
    rules = load_rules(REPO / "config" / "studies" / f"{name}.yaml")
    rules["raw_dir"] = str(workspace / "raw" / name)
    if edit_rules:
        edit_rules(rules)
    return rules


def harmonize(rules):
    return harmonize_study(rules, load_schema(REPO / "config" / "schema.yaml"), KEY)


def edit_cells(path: Path, column: str, rows: dict[int, str], sep=",", encoding="utf-8"):
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding=encoding)
    for row, text in rows.items():
        frame.loc[row, column] = text
    frame.to_csv(path, sep=sep, index=False, encoding=encoding, lineterminator="\n")


@pytest.mark.parametrize("text", ["NaN", "inf", "2_5", "1e400", "1,5"])
def test_a_score_written_as_float_would_take_it_is_refused_with_file_column_and_row(workspace, text):
    edit_cells(workspace / "raw" / "US" / "us_hartford_wide.csv", "rses_m0", {6: text})
    with pytest.raises(HarmonizationError) as caught:
        harmonize(study(workspace, "US"))
    (problem,) = caught.value.problems
    assert (problem.file, problem.variable, problem.rows, problem.values) == (
        "us_hartford_wide.csv",
        "self_esteem_bl",
        (7,),
        (text,),
    )
    assert "values in 'rses_m0' that are not numbers (plain decimals with decimal mark '.'" in str(problem)


def test_the_same_text_declared_as_a_missing_code_is_missing(workspace):
    edit_cells(workspace / "raw" / "US" / "us_hartford_wide.csv", "rses_m0", {6: "NaN", 7: "inf"})

    def declare(rules):
        rules["outcomes"]["self_esteem"]["baseline"]["copy"]["missing"] += ["NaN", "inf"]

    result = harmonize(study(workspace, "US", declare))
    assert result.data["self_esteem_bl"].iloc[[6, 7]].isna().all()
    cells = pd.read_csv(workspace / "raw" / "US" / "us_hartford_wide.csv", dtype=str, keep_default_na=False)["rses_m0"]
    coded = int(cells.isin(["999", "NaN", "inf"]).sum())  # 999 was declared before
    assert f"missing code: {coded}" in result.rule_log.set_index("variable").loc["self_esteem_bl", "set_missing"]


@pytest.mark.parametrize("text", ["inf", "NaN", "2_5"])
def test_hours_that_are_not_plain_numbers_never_make_anyone_employed(workspace, text):
    path = workspace / "raw" / "DK" / "dk_timer_uge.csv"
    edit_cells(path, "timer", {3: text}, sep=";", encoding="latin-1")
    with pytest.raises(HarmonizationError) as caught:
        harmonize(study(workspace, "DK"))
    (problem,) = caught.value.problems
    assert (problem.file, problem.variable, problem.rows) == ("dk_timer_uge.csv", "employed", (4,))
    assert "values in 'timer' that are not numbers (plain decimals with decimal mark ','" in str(problem)


def test_an_undeclared_identifier_column_read_as_numbers_never_shows_its_values(workspace):
    def misread(rules):
        rules["variables"]["age"]["copy"]["column"] = "name"

    with pytest.raises(HarmonizationError) as caught:
        harmonize(study(workspace, "US", misread))
    text = str(caught.value)
    assert "values not shown (column 'name' is named like an identifier" in text and "; rows 1, 2, 3" in text
    names = pd.read_csv(workspace / "raw" / "US" / "us_hartford_wide.csv", dtype=str)["name"]
    assert not any(name in text for name in names)


def test_an_arm_copied_from_a_relabelled_column_reconciles_at_pooling(workspace):
    """The `copy` rule (documented for arms already written IPS/SAU) gives the same pooled accounting
    as `recode`; it used to fail pooling with "0 in the raw files"."""
    path = workspace / "raw" / "US" / "us_hartford_wide.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["condition"] = frame["condition"].map({"IPS": "IPS", "PSR": "SAU", "BVR": "SAU"})
    frame.to_csv(path, index=False, lineterminator="\n")

    def copy_arm(rules):
        rules["variables"]["arm"] = {"copy": {"table": "wide", "column": "condition"}}
        rules["published_n"] = int(len(frame))  # a total, as protocols often give it

    result = harmonize(study(workspace, "US", copy_arm))
    accounting = reconcile(result.flow, result.data)
    ips = int((frame["condition"] == "IPS").sum())
    assert accounting.set_index("arm").loc[["IPS", "SAU", "total"], "raw_participants"].tolist() == [
        ips,
        len(frame) - ips,
        len(frame),
    ]
    assert (accounting["difference"] == 0).all()
    total = result.arm_counts.set_index("arm_original").loc["(all arms)"]
    assert (total["n"], total["published_n"], total["differs"]) == (len(frame), len(frame), False)


def test_a_published_total_that_differs_stops_the_study_unless_acknowledged(workspace):
    def total(n, reason=None):
        def edit(rules):
            rules["published_n"] = n
            if reason:
                rules["acknowledged"] = {"published_n total": reason}

        return edit

    with pytest.raises(HarmonizationError) as caught:
        harmonize(study(workspace, "US", total(9999)))
    assert "has 204 randomized participants, published_n says 9999" in str(caught.value)
    assert '`acknowledged: {"published_n total": <reason>}`' in str(caught.value)
    result = harmonize(study(workspace, "US", total(9999, "the paper counts screened people")))
    assert result.arm_counts.set_index("arm_original").loc["(all arms)", "differs"]
    assert "published_n total: the paper counts screened people" in result.flow["reason"].tolist()


def test_a_damaged_participants_file_is_the_only_problem_reported(workspace):
    """Cut short, the participants file is reported as damaged; the empty selections that follow from it
    (no participant, so no visit row links) are not reported as problems of their own."""
    path = workspace / "raw" / "DK" / "dk_deltagere.csv"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(HarmonizationError) as caught:
        harmonize(study(workspace, "DK"))
    (problem,) = caught.value.problems
    assert (problem.file, problem.variable) == ("dk_deltagere.csv", "(whole file)")
    assert problem.message.startswith("is damaged: its last line (line 721) has no line break")
