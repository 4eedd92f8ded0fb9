"""The numbers a reader sees in the workflow's figures are the numbers of its tables: the
participant-flow diagrams against flow.tsv, the forest plots against per_study.tsv,
two_stage.tsv and one_stage.tsv. Read from the SVGs' text (the figures keep text as text),
on the session's one full run."""

import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from ipdpool.tables import read_table

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


def shown(text: str, pattern: str) -> list[int]:
    """The counts a line shows (thousands separators removed), matched by `pattern`."""
    match = re.fullmatch(pattern, text)
    assert match, f"{text!r} does not read as {pattern!r}"
    return [int(group.replace(",", "")) for group in match.groups()]


# ------------------------------------------------------------ participant flow


def flow_count(flow: pd.DataFrame, study: str, stage: str, arm: str) -> int | None:
    """One count of flow.tsv, read independently of the figure code (all reasons of a stage summed)."""
    rows = flow[(flow["study"] == study) & (flow["stage"] == stage)]
    return None if rows.empty else int(pd.to_numeric(rows[arm]).sum())


def flow_outcomes(flow: pd.DataFrame, study: str) -> list[str]:
    stages = flow.loc[flow["study"] == study, "stage"]
    return list(dict.fromkeys(s.split(":")[0] for s in stages if ":" in s))


def check_flow_diagram(path, flow: pd.DataFrame, study: str) -> None:
    groups = svg_groups(path)
    randomized = "randomized participants"
    assert shown(groups["randomized"][0], r"Randomized \(n = ([\d,]+)\)") == [
        flow_count(flow, study, randomized, "total")
    ]
    for arm in ARMS:
        n = flow_count(flow, study, randomized, arm)
        assert shown(groups[f"allocated-{arm}"][0], r"Allocated to .* \(n = ([\d,]+)\)") == [n]
        followup, known = groups[f"followup-{arm}"]
        assert shown(followup, r"Follow-up assessment \(n = ([\d,]+)\)") == [
            flow_count(flow, study, "with a follow-up assessment", arm)
        ]
        assert shown(known, r"Employment during follow-up known \(n = ([\d,]+)\)") == [
            flow_count(flow, study, "employment known", arm)
        ]
        lost, unknown = groups[f"lost-{arm}"]
        assert shown(lost, r"No follow-up in the window \(n = ([\d,]+)\)") == [
            flow_count(flow, study, "without a follow-up assessment", arm)
        ]
        assert shown(unknown, r"Employment unknown \(n = ([\d,]+)\)") == [
            flow_count(flow, study, "employment unknown", arm)
        ]
        # The funnel closes: follow-up and employment each split the randomized.
        assert sum(shown(followup, r".*\(n = ([\d,]+)\)") + shown(lost, r".*\(n = ([\d,]+)\)")) == n
        assert sum(shown(known, r".*\(n = ([\d,]+)\)") + shown(unknown, r".*\(n = ([\d,]+)\)")) == n

        analysed = {line.split(":")[0]: line for line in groups[f"analysed-{arm}"][2:]}
        excluded = {line.split(":")[0]: line for line in groups[f"excluded-{arm}"][3:]}
        outcomes = flow_outcomes(flow, study)
        assert list(analysed) == [o.replace("_", " ") for o in outcomes]
        for outcome in outcomes:
            label = outcome.replace("_", " ")
            analysable = flow_count(flow, study, f"{outcome}: analysable", arm)
            if analysable is None:  # not collected in this study (or in none of the pooled ones)
                assert analysed[label] == f"{label}: not collected"
                assert flow_count(flow, study, f"{outcome}: not collected", arm) == n
                continue
            assert shown(analysed[label], rf"{label}: n = ([\d,]+)") == [analysable]
            reasons = flow[(flow["study"] == study) & (flow["stage"] == f"{outcome}: excluded")].set_index("reason")[
                arm
            ]
            expected = [
                int(reasons[r]) if r in reasons.index else None
                for r in ("no baseline score", "no follow-up score", "employment unknown")
            ]
            expected.append(flow_count(flow, study, f"{outcome}: not collected", arm))
            parts = excluded[label].split(": ", 1)[1].split(" / ")
            assert [None if part == "-" else int(part.replace(",", "")) for part in parts] == expected
            # Every randomized participant is analysed or excluded with one reason.
            assert analysable + sum(e for e in expected if e is not None) == n


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
