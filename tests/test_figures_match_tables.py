"""The numbers a reader sees in the workflow's figures are the numbers of its tables: the
participant-flow diagrams against flow.tsv, the forest plots against per_study.tsv,
two_stage.tsv and one_stage.tsv. Read from the SVGs' text (the figures keep text as text),
on the session's one full run."""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ipdpool.harmonize.schema import load_schema
from ipdpool.labels import outcome_label
from ipdpool.tables import read_table

SCHEMA_OUTCOMES = load_schema(Path(__file__).resolve().parents[1] / "config" / "schema.yaml")["outcomes"]

SVG = "{http://www.w3.org/2000/svg}"
ARMS = ("IPS", "SAU")


def svg_lines(path) -> list[str]:
    """Every text element of an SVG, in document order."""
    return ["".join(text.itertext()) for text in ET.parse(path).getroot().iter(f"{SVG}text")]


def svg_groups(path) -> dict[str, list[str]]:
    """Lines of text per element id (matplotlib's gid) of an SVG."""
    return {
        g.get("id"): ["".join(t.itertext()) for t in g.iter(f"{SVG}text")]
        for g in ET.parse(path).getroot().iter(f"{SVG}g")
        if g.get("id")
    }


def svg_font_sizes(path) -> list[float]:
    """The font size (pt; matplotlib writes the figure in points) of every text element."""
    sizes = []
    for text in ET.parse(path).getroot().iter(f"{SVG}text"):
        match = re.search(r"font(?:-size)?:\s*(?:[a-z]+ )*([\d.]+)px", text.get("style", ""))
        assert match, text.get("style")
        sizes.append(float(match.group(1)))
    return sizes


def shown(text: str, pattern: str) -> list[int]:
    """The counts a line shows (thousands separators removed), matched by `pattern`."""
    match = re.fullmatch(pattern, text)
    assert match, f"{text!r} does not read as {pattern!r}"
    return [int(group.replace(",", "")) for group in match.groups()]


# ------------------------------------------------------------ participant flow


def flow_count(flow: pd.DataFrame, study: str, stage: str, arm: str, reason: str | None = None) -> int | None:
    """One count of flow.tsv, read independently of the figure code (all reasons of a stage
    summed unless one is named)."""
    rows = flow[(flow["study"] == study) & (flow["stage"] == stage)]
    if reason is not None:
        rows = rows[rows["reason"] == reason]
    return None if rows.empty else int(pd.to_numeric(rows[arm]).sum())


def flow_outcomes(flow: pd.DataFrame, study: str) -> list[str]:
    stages = flow.loc[flow["study"] == study, "stage"]
    return list(dict.fromkeys(s.split(":")[0] for s in stages if ":" in s))


COUNT = r"\(n = ([\d,]+)\)"
OUTCOME_COLUMNS = [
    ("not collected", None),
    ("excluded", "no baseline score"),
    ("excluded", "no follow-up score"),
    ("analysable", None),
]


def check_flow_diagram(path, flow: pd.DataFrame, study: str) -> None:
    """Every number of the diagram is read from its SVG text; each box equals the box above it
    minus the exclusion between them, and each equals flow.tsv."""
    groups = {gid: " ".join(lines) for gid, lines in svg_groups(path).items()}
    numbers_read = 0

    def box(gid: str, pattern: str) -> list[int]:
        nonlocal numbers_read
        values = shown(groups[gid], pattern)
        numbers_read += len(values)
        return values

    (randomized,) = box("randomized", rf"Randomized {COUNT}")
    assert randomized == flow_count(flow, study, "randomized participants", "total")
    allocated_sum = 0
    for arm in ARMS:
        (allocated,) = box(f"allocated-{arm}", rf"Allocated to .* {COUNT}")
        known, unknown = box(f"ascertained-{arm}", rf"Employment ascertained: known {COUNT}, unknown {COUNT}")
        (lost,) = box(f"lost-{arm}", rf"No follow-up assessment in the window {COUNT}")
        (followed,) = box(f"followed-{arm}", rf"Followed up {COUNT}")
        (unknown_followed,) = box(f"unknown-{arm}", rf"Employment during follow-up unknown {COUNT}")
        (known_followed,) = box(f"known-{arm}", rf"Followed up, employment known {COUNT}")
        allocated_sum += allocated
        # The chain, and employment ascertainment as a branch that splits the allocated.
        assert followed == allocated - lost and known_followed == followed - unknown_followed, (study, arm)
        assert known + unknown == allocated, (study, arm)
        assert [allocated, known, unknown, lost, followed, unknown_followed, known_followed] == [
            flow_count(flow, study, "randomized participants", arm),
            flow_count(flow, study, "employment known", arm),
            flow_count(flow, study, "employment unknown", arm),
            flow_count(flow, study, "without a follow-up assessment", arm),
            flow_count(flow, study, "with a follow-up assessment", arm),
            flow_count(flow, study, "followed up, employment unknown", arm),
            flow_count(flow, study, "followed up, employment known", arm),
        ], (study, arm)
        outcomes = flow_outcomes(flow, study)
        assert [groups[f"outcome-{i}"] for i in range(len(outcomes))] == sorted(
            (outcome_label(o, SCHEMA_OUTCOMES[o]) for o in outcomes),
            key=[outcome_label(o, spec) for o, spec in SCHEMA_OUTCOMES.items()].index,
        )
        for outcome in outcomes:
            cells = []
            for column, (stage, reason) in enumerate(OUTCOME_COLUMNS):
                text = groups[f"cell-{outcome}-{arm}-{column}"]
                cells.append(0 if text == "-" else shown(text, r"([\d,]+)")[0])
                numbers_read += text != "-"
                expected = flow_count(flow, study, f"{outcome}: {stage}", arm, reason)
                assert cells[-1] == (expected or 0), (study, arm, outcome, stage, reason)
            # The outcome's row splits the last box of the chain; the exclusions above it are
            # those of the chain, each counted once (flow.tsv gives every outcome all of them).
            assert sum(cells) == known_followed, (study, arm, outcome)
            assert flow_count(flow, study, f"{outcome}: excluded", arm, "no follow-up assessment") == lost
            assert flow_count(flow, study, f"{outcome}: excluded", arm, "employment unknown") == unknown_followed
    assert allocated_sum == randomized
    # Nothing else in the figure is a number: every count shown was read and checked above.
    title = svg_groups(path)["title"]
    every_number = re.findall(r"\d[\d,]*", " ".join(line for line in svg_lines(path) if line not in title))
    assert len(every_number) == numbers_read, (study, every_number)


def test_flow_diagram_text_is_at_least_9_pt(completed_run):
    """At the size the report shows it (its own width, tests/test_report_browser.py), the
    diagram's smallest text is 9 pt."""
    sizes = svg_font_sizes(completed_run / "results" / "figures" / "participant_flow.svg")
    assert sizes and min(sizes) >= 9


def test_participant_flow_diagrams_show_the_counts_of_flow_tsv(completed_run):
    flow = read_table(completed_run / "results" / "audit" / "flow.tsv")
    studies = sorted(set(flow["study"]) - {"all"})
    assert len(studies) == 5
    check_flow_diagram(completed_run / "results" / "figures" / "participant_flow.svg", flow, "all")
    for study in studies:
        check_flow_diagram(completed_run / "results" / "figures" / "flow" / f"{study}.svg", flow, study)


# ------------------------------------------------------------ forest plots

INTERVAL = re.compile(r"(-?\d+\.\d\d) \[(-?\d+\.\d\d), (-?\d+\.\d\d)\]")
HETEROGENEITY = re.compile(
    r"Heterogeneity: Q = ([\d.]+), df = (\d+), p (?:= ([\d.]+)|< 0\.001); I² = ([\d.]+)%; τ² = ([\d.]+)"
)

OVERALL = re.compile(
    r"Test for overall effect: z = (-?[\d.]+), p (?:= ([\d.]+)|< 0\.001); "
    r"Knapp-Hartung: t\((\d+)\) = (-?[\d.]+), p (?:= ([\d.]+)|< 0\.001)"
)


def close(text: str, value: float, decimals: int) -> bool:
    """`text` is `value` rounded to `decimals` (half a unit of the last digit, and a little for the
    binary representation of the table's value)."""
    return abs(float(text) - value) <= 0.5 * 10**-decimals + 1e-9


def check_interval(text: str, row: pd.Series) -> None:
    match = INTERVAL.fullmatch(text)
    assert match, text
    for shown_value, column in zip(match.groups(), ("estimate", "ci_low", "ci_high")):
        assert close(shown_value, row[column], 2), (text, column, row[column])


def check_p(text: str | None, p: float) -> None:
    """A p value printed as "p = 0.283" (3 decimals) or "p < 0.001"."""
    assert (p < 0.001) if text is None else close(text, p, 3)


def plot_rows(frame: pd.DataFrame, outcome: str, contrast: str, term: str) -> pd.DataFrame:
    return frame[(frame["outcome"] == outcome) & (frame["contrast"] == contrast) & (frame["term"] == term)]


def reported_plots(completed_run) -> list[tuple[str, str, str]]:
    one_stage = read_table(completed_run / "results" / "tables" / "one_stage.tsv")
    return sorted(set(zip(one_stage["outcome"], one_stage["contrast"], one_stage["term"])))


def test_forest_plots_show_the_numbers_of_the_two_stage_and_one_stage_tables(completed_run):
    tables = completed_run / "results" / "tables"
    per_study, two_stage, one_stage = (
        read_table(tables / f"{name}.tsv") for name in ("per_study", "two_stage", "one_stage")
    )
    plots = reported_plots(completed_run)
    assert len(plots) == 48
    with_prediction_interval = 0
    for outcome, contrast, term in plots:
        path = (
            completed_run / "results" / "figures" / "forest" / outcome / f"{contrast}__{term.replace(':', '_x_')}.svg"
        )
        lines = svg_lines(path)
        context = f"{outcome} {contrast} {term}"
        studies = plot_rows(per_study, outcome, contrast, term)
        studies = studies[studies["status"] == "estimated"].sort_values("study").reset_index(drop=True)
        reml = plot_rows(two_stage, outcome, contrast, term)
        reml = reml[reml["method"] == "REML"]
        pooled, hksj = (reml[reml["hksj"].astype(bool) == adjusted].iloc[0] for adjusted in (False, True))
        one = plot_rows(one_stage, outcome, contrast, term)
        assert len(one) == 1, context
        one = one.iloc[0]

        # Study rows: name, then n; intervals in the same order, then pooled, Knapp-Hartung, one stage.
        for row in studies.itertuples():
            assert lines[lines.index(row.study) + 1] == f"{row.n:,}", context
        assert f"{int(studies['n'].sum()):,}" in lines and f"{int(one['n_participants']):,}" in lines, context
        intervals = [line for line in lines if INTERVAL.fullmatch(line)]
        assert len(intervals) == len(studies) + 3, context
        for text, (_, row) in zip(intervals, studies.iterrows()):
            check_interval(text, row)
        check_interval(intervals[-3], pooled)
        check_interval(intervals[-2], hksj)
        check_interval(intervals[-1], one)

        # Weights: inverse variance under the REML tau^2 of two_stage.tsv, in per cent.
        weights = 1 / (studies["se"].to_numpy() ** 2 + pooled["tau2"])
        shown_weights = [line for line in lines if re.fullmatch(r"\d+\.\d%", line)]
        assert len(shown_weights) == len(studies), context
        for text, weight in zip(shown_weights, 100 * weights / weights.sum()):
            assert close(text[:-1], weight, 1), (context, text, weight)

        # Heterogeneity and overall tests.
        heterogeneity = [line for line in lines if line.startswith("Heterogeneity:")]
        assert len(heterogeneity) == 1, context
        q, df, p, i2, tau2 = HETEROGENEITY.fullmatch(heterogeneity[0]).groups()
        assert (
            close(q, pooled["q"], 2)
            and int(df) == pooled["k"] - 1
            and close(i2, pooled["i2"], 1)
            and close(tau2, pooled["tau2"], 3)
        ), context
        check_p(p, pooled["q_p"])
        overall = next(line for line in lines if line.startswith("Test for overall effect:"))
        z, z_p, t_df, t, t_p = re.fullmatch(OVERALL, overall).groups()
        assert (
            close(z, pooled["estimate"] / pooled["se"], 2)
            and close(t, hksj["estimate"] / hksj["se"], 2)
            and int(t_df) == hksj["df"]
        ), context
        check_p(z_p, pooled["p_value"])
        check_p(t_p, hksj["p_value"])

        # The prediction interval is printed when two_stage.tsv has one, and only then.
        pi = [line for line in lines if line.startswith("PI [")]
        if np.isfinite(pooled["pi_low"]):
            with_prediction_interval += 1
            low, high = re.fullmatch(r"PI \[(-?\d+\.\d\d), (-?\d+\.\d\d)\]", pi[0]).groups()
            assert close(low, pooled["pi_low"], 2) and close(high, pooled["pi_high"], 2), context
        else:
            assert not pi and "RE model (REML), no PI (k < 3)" in lines, context
    assert 0 < with_prediction_interval < len(plots)  # both kinds were checked


@pytest.mark.parametrize(
    "text, value, decimals, ok", [("0.46", 0.4564, 2, True), ("0.45", 0.4564, 2, False), ("-0.00", -0.0008, 2, True)]
)
def test_close_reads_a_rounded_number(text, value, decimals, ok):
    assert close(text, value, decimals) is ok
