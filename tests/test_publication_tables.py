"""The publication tables (great_tables): their LaTeX, read back, shows the numbers of the result
tables they come from (one_stage.tsv, two_stage.tsv, table1.tsv), rounded, and nothing else;
Table 1 has baseline rows only; the tables do not depend on the order of their input rows."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipdpool.harmonize.schema import load_schema
from ipdpool.labels import CONTRAST_LABELS, outcome_label
from ipdpool.publication import p_value, results_frame, split_warnings, warning_notes
from ipdpool.tables import read_table

OUTCOMES = load_schema(Path(__file__).resolve().parents[1] / "config" / "schema.yaml")["outcomes"]
LABELS = {outcome_label(o, spec): o for o, spec in OUTCOMES.items()}
TERMS = {label[0].upper() + label[1:]: term for term, label in CONTRAST_LABELS.items()}
INTERVAL = re.compile(r"(-?\d+\.\d\d) \((-?\d+\.\d\d), (-?\d+\.\d\d)\)")


def latex_rows(path) -> list[tuple[str, list[str]]]:
    """(group, cells) of every body row of a great_tables LaTeX table, unescaped."""
    text = Path(path).read_text(encoding="utf-8")
    body = text.split("\\midrule", 1)[1].split("\\bottomrule", 1)[0]
    group, rows = "", []
    for line in body.splitlines():
        line = line.strip()
        heading = re.fullmatch(r"\\multicolumn\{\d+\}\{l\}\{(.*)\} \\\\\[2\.5pt\]", line)
        if heading:
            group = heading.group(1).replace("\\%", "%")
        elif line.endswith("\\\\") and " & " in line:
            rows.append((group, [cell.strip().replace("\\%", "%") for cell in line[:-2].split(" & ")]))
    return rows


def source_notes(path) -> list[str]:
    text = Path(path).read_text(encoding="utf-8")
    block = text.split("\\begin{minipage}{\\linewidth}")[1].split("\\end{minipage}")[0]
    return [line.removesuffix("\\\\") for line in block.strip().splitlines()]


def close(text: str, value: float, decimals: int) -> bool:
    return abs(float(text) - value) <= 0.5 * 10**-decimals + 1e-9


def check_interval(text: str, row) -> None:
    match = INTERVAL.fullmatch(text)
    assert match, text
    for shown, column in zip(match.groups(), ("estimate", "ci_low", "ci_high")):
        assert close(shown, row[column], 2), (text, column, row[column])


def check_p(text: str, p: float) -> None:
    assert (text == "< 0.001") if p < 0.001 else close(text, p, 3), (text, p)


@pytest.mark.workflow
def test_results_table_latex_shows_the_one_and_two_stage_tables(completed_run):
    tables = completed_run / "results" / "tables"
    one_stage, two_stage = read_table(tables / "one_stage.tsv"), read_table(tables / "two_stage.tsv")
    reml = two_stage[(two_stage["method"] == "REML") & ~two_stage["hksj"].astype(bool)]
    notes = source_notes(tables / "results.tex")
    numbered = {int(n): text for n, text in (re.fullmatch(r"(\d+)\. (.*)", note).groups() for note in notes[1:])}
    rows = latex_rows(tables / "results.tex")
    expected = one_stage[one_stage["term"].isin(["employed", "ips", "ips:employed"])]
    assert len(rows) == len(expected) == 24
    for group, cells in rows:
        label, k, n, one_ci, one_p, two_ci, two_p, i2, tau2, pi, marks = cells
        outcome, term = LABELS[label], TERMS[group]
        one = expected[(expected["outcome"] == outcome) & (expected["term"] == term)].iloc[0]
        two = reml[(reml["outcome"] == outcome) & (reml["term"] == term)].iloc[0]
        assert int(k) == one["n_studies"] and int(n.replace(",", "")) == one["n_participants"]
        check_interval(one_ci, one)
        check_p(one_p, one["p_value"])
        check_interval(two_ci, two)
        check_p(two_p, two["p_value"])
        assert close(i2.removesuffix("%"), two["i2"], 0) and close(tau2, two["tau2"], 3)
        if np.isfinite(two["pi_low"]):
            low, high = re.fullmatch(r"\((-?\d+\.\d\d), (-?\d+\.\d\d)\)", pi).groups()
            assert close(low, two["pi_low"], 2) and close(high, two["pi_high"], 2)
        else:
            assert pi == "-"
        # The row's notes are exactly its warnings (one-stage and two-stage), numbered.
        warnings = set(split_warnings(one["warnings"])) | set(split_warnings(two["warnings"]))
        shown = {numbered[int(m)] for m in marks.split(", ")} if marks else set()
        assert shown == warnings, (label, group)


@pytest.mark.workflow
def test_tables_1_and_2_latex_show_table1_tsv(completed_run):
    tables = completed_run / "results" / "tables"
    table1 = read_table(tables / "table1.tsv")
    studies = [s for s in dict.fromkeys(table1["study"]) if s != "all"] + ["all"]
    columns = [(s, a) for s in studies for a in ("IPS", "SAU")]

    def cells(rows, group, label):
        return next(c[1:] for g, c in rows if g == group and c[0] == label)

    def value(characteristic, study, arm, column, level=None):
        rows = table1[
            (table1["characteristic"] == characteristic) & (table1["study"] == study) & (table1["arm"] == arm)
        ]
        if level is not None:
            rows = rows[rows["level"].astype(str).str.removesuffix(".0") == level]
        return rows.iloc[0][column]

    baseline = latex_rows(tables / "table1.tex")
    labels = {label for _, (label, *_) in baseline}
    assert not any("worked" in label.lower() or "follow-up" in label.lower() for label in labels)  # baseline only
    randomized = cells(baseline, "Participants", "Randomized, n")
    assert [int(c.replace(",", "")) for c in randomized] == [value("participants", s, a, "n") for s, a in columns]
    for text, (study, arm) in zip(cells(baseline, "Participants", "Age, years, mean (SD)"), columns):
        mean, sd = re.fullmatch(r"([\d.]+) \(([\d.]+)\)", text).groups()
        assert close(mean, value("age", study, arm, "mean"), 1) and close(sd, value("age", study, arm, "sd"), 1)
    for text, (study, arm) in zip(cells(baseline, "Sex, n (%)", "Female"), columns):
        count, percent = re.fullmatch(r"([\d,]+) \(([\d.]+)\)", text).groups()
        assert int(count.replace(",", "")) == value("sex", study, arm, "count", "female")
        assert close(percent, value("sex", study, arm, "percent", "female"), 1)

    followup = latex_rows(tables / "table2.tex")
    for text, (study, arm) in zip(cells(followup, "Employment during follow-up", "Worked, n (%)"), columns):
        count, percent = re.fullmatch(r"([\d,]+) \(([\d.]+)\)", text).groups()
        assert int(count.replace(",", "")) == value("employed", study, arm, "count", "1")
        assert close(percent, value("employed", study, arm, "percent", "1"), 1)
    assert [int(c.replace(",", "")) for c in cells(followup, "Employment during follow-up", "Ascertained, n")] == [
        value("employed", s, a, "n") for s, a in columns
    ]


@pytest.mark.parametrize("p, text", [(0.0009999, "< 0.001"), (0.001, "0.001"), (0.0456, "0.046"), (np.nan, "-")])
def test_p_values_are_formatted_in_journal_style(p, text):
    assert p_value(p) == text


def test_each_distinct_warning_gets_one_number_in_order_of_appearance():
    notes, numbers = warning_notes(["b; a", None, "a", "c"])
    assert notes == ["b", "a", "c"] and numbers == {"b": 1, "a": 2, "c": 3}


def one_stage_rows(draw_estimates: list[float]) -> pd.DataFrame:
    outcomes = list(OUTCOMES)[: len(draw_estimates)]
    return pd.DataFrame(
        {
            "outcome": outcomes,
            "term": "employed",
            "estimate": draw_estimates,
            "ci_low": [e - 0.2 for e in draw_estimates],
            "ci_high": [e + 0.2 for e in draw_estimates],
            "p_value": 0.01,
            "n_studies": 3,
            "n_participants": 300,
            "status": "estimated",
            "warnings": [None if i % 2 else f"warning {i}" for i in range(len(outcomes))],
        }
    )


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(-2, 2, allow_nan=False), min_size=1, max_size=len(OUTCOMES)),
    st.randoms(use_true_random=False),
)
def test_results_table_does_not_depend_on_the_order_of_input_rows(estimates, random):
    one = one_stage_rows(estimates)
    two = one.assign(method="REML", hksj=False, i2=10.0, tau2=0.01, pi_low=np.nan, pi_high=np.nan)
    order = list(range(len(one)))
    random.shuffle(order)
    frame, notes = results_frame(one, two, OUTCOMES)
    shuffled, shuffled_notes = results_frame(one.iloc[order], two.iloc[order[::-1]], OUTCOMES)
    pd.testing.assert_frame_equal(frame, shuffled)
    assert notes == shuffled_notes
