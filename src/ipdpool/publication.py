"""Publication tables, built with great_tables from the result tables (never recomputed):
Table 1 (baseline characteristics by study x arm and pooled), Table 2 (follow-up and
employment by study x arm) and the results table (one-stage and two-stage SMDs with
heterogeneity and warnings as numbered notes). Each is written as HTML for the report and as
LaTeX for a manuscript (great_tables' as_latex, which has no footnotes yet: the numbered notes
are source notes, in both formats alike)."""

from __future__ import annotations

import re

import pandas as pd
from great_tables import GT, style
from great_tables import loc as location

from .labels import contrast_label, in_order, outcome_label

ARMS = {"IPS": "IPS", "SAU": "SAU"}
ARM_NOTE = "IPS: Individual Placement and Support; SAU: services as usual. "
POOLED = "all"
RESULT_TERMS = ["employed", "ips", "ips:employed"]
# Narrow enough for 12 study x arm columns beside the report's menu at 1280 px.
COMPACT = {
    "table_font_size": "12px",
    "data_row_padding": "2px",
    "data_row_padding_horizontal": "4px",
    "column_labels_padding_horizontal": "4px",
    "row_group_padding": "3px",
    "heading_align": "left",
}


# ------------------------------------------------------------ formats (journal conventions)


def n_percent(count, percent) -> str:
    """ "n (%)" with the percentage to one decimal; a suppressed count ("<5") as it is."""
    if isinstance(count, str):
        return count
    if pd.isna(count) or pd.isna(percent):
        return "-"
    return f"{int(count):,} ({percent:.1f})"


def mean_sd(mean, sd) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.1f} ({sd:.1f})" if pd.notna(sd) else f"{mean:.1f}"


def p_value(p) -> str:
    """p to three decimals, "< 0.001" below (journal style, no leading "p =")."""
    if pd.isna(p):
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def smd_ci(row) -> str:
    if row is None or row.get("status", "estimated") != "estimated" or pd.isna(row.get("estimate")):
        return "not estimated"
    return f"{row['estimate']:.2f} ({row['ci_low']:.2f}, {row['ci_high']:.2f})"


def column_id(study: str, arm: str) -> str:
    return f"{study}_{arm}"


# ------------------------------------------------------------ Table 1 and Table 2


def study_order(table1: pd.DataFrame) -> list[str]:
    """The studies in the table's order, pooled ("all") last."""
    studies = list(dict.fromkeys(table1["study"]))
    return [s for s in studies if s != POOLED] + ([POOLED] if POOLED in studies else [])


def cells_by_column(table1: pd.DataFrame, select, cell) -> dict[str, str]:
    """One display cell per study x arm column from the rows `select` picks."""
    out = {}
    for row in table1[select(table1)].to_dict("records"):
        out[column_id(row["study"], row["arm"])] = cell(row)
    return out


def baseline_rows(table1: pd.DataFrame, outcomes: dict) -> list[tuple[str, str, dict]]:
    """(group, label, cells) rows of Table 1: randomized, age, sex, diagnosis, and for each
    outcome its instrument and baseline score; no post-randomisation row."""
    rows = [
        (
            "Participants",
            "Randomized, n",
            cells_by_column(table1, lambda t: t["characteristic"] == "participants", count_cell),
        ),
        (
            "Participants",
            "Age, years, mean (SD)",
            cells_by_column(table1, lambda t: t["characteristic"] == "age", lambda r: mean_sd(r["mean"], r["sd"])),
        ),
    ]
    for characteristic in ("sex", "diagnosis"):
        levels = list(dict.fromkeys(table1.loc[table1["characteristic"] == characteristic, "level"].dropna()))
        for level in levels:
            rows.append(
                (
                    f"{characteristic.capitalize()}, n (%)",
                    str(level).replace("_", " ").capitalize(),
                    cells_by_column(
                        table1,
                        lambda t, c=characteristic, v=level: (t["characteristic"] == c) & (t["level"] == v),
                        lambda r: n_percent(r["count"], r["percent"]),
                    ),
                )
            )
    for outcome, spec in outcomes.items():
        name = f"{outcome} at baseline"
        if (table1["characteristic"] == name).any():
            selected = lambda t, c=name: t["characteristic"] == c  # noqa: E731
            group = "Score at baseline, mean (SD); instruments below"
            rows.append((group, outcome_label(outcome, spec), cells_by_column(table1, selected, score_cell)))
    return rows


def count_cell(row) -> str:
    return row["n"] if isinstance(row["n"], str) else "-" if pd.isna(row["n"]) else f"{int(row['n']):,}"


def score_cell(row) -> str:
    if row.get("instrument") == "mixed instruments":
        return "see studies"
    return mean_sd(row["mean"], row["sd"])


def instrument_notes(table1: pd.DataFrame, outcomes: dict) -> list[str]:
    """Per outcome, the instrument of each study that measured it (one sentence each)."""
    notes = []
    for outcome, spec in outcomes.items():
        rows = table1[(table1["characteristic"] == f"{outcome} at baseline") & (table1["study"] != POOLED)]
        by_instrument: dict[str, list[str]] = {}
        for study, instrument in dict(zip(rows["study"], rows["instrument"])).items():
            if isinstance(instrument, str) and instrument:
                by_instrument.setdefault(instrument, []).append(study)
        if by_instrument:
            named = "; ".join(f"{name} ({', '.join(studies)})" for name, studies in by_instrument.items())
            notes.append(f"{outcome_label(outcome, spec)}: {named}.")
    return notes


def followup_rows(table1: pd.DataFrame, outcomes: dict) -> list[tuple[str, str, dict]]:
    """(group, label, cells) rows of Table 2: employment during follow-up (ascertained, worked)
    and each outcome's follow-up completion among those asked."""
    employed = table1[table1["characteristic"] == "employed"]
    rows = [
        ("Employment during follow-up", "Ascertained, n", cells_by_column(employed, first_level, count_cell)),
        (
            "Employment during follow-up",
            "Worked, n (%)",
            cells_by_column(
                employed,
                lambda t: t["level"].astype(str).str.removesuffix(".0") == "1",
                lambda r: n_percent(r["count"], r["percent"]),
            ),
        ),
    ]
    for outcome, spec in outcomes.items():
        name = f"{outcome} follow-up completed"
        if (table1["characteristic"] == name).any():
            rows.append(
                (
                    "Follow-up score, n (%)",
                    outcome_label(outcome, spec),
                    cells_by_column(
                        table1,
                        lambda t, c=name: t["characteristic"] == c,
                        lambda r: n_percent(r["count"], r["percent"]) if pd.notna(r["n"]) and r["n"] else "-",
                    ),
                )
            )
    return rows


def first_level(frame: pd.DataFrame) -> pd.Series:
    """One row per study x arm (a characteristic's n repeats on each level's row)."""
    return ~frame.duplicated(["study", "arm"])


def study_arm_table(
    rows: list[tuple[str, str, dict]], studies: list[str], title: str, notes: list[str], table_id: str
) -> GT:
    """Rows of characteristics, a column per study x arm under a spanner per study (pooled last)."""
    columns = [column_id(s, a) for s in studies for a in ARMS]
    frame = pd.DataFrame(
        [{"group": g, "label": label, **{c: cells.get(c, "-") for c in columns}} for g, label, cells in rows]
    )
    # Row labels are an ordinary column: great_tables' LaTeX misplaces spanners over a stub.
    table = GT(frame, groupname_col="group", id=table_id).tab_header(title=title).cols_label(label="")
    for study in studies:
        table = table.tab_spanner(
            "All studies" if study == POOLED else study, columns=[column_id(study, a) for a in ARMS]
        )
    table = table.cols_label(**{column_id(s, a): name for s in studies for a, name in ARMS.items()})
    table = table.cols_align("right", columns=columns)
    for note in notes:
        table = table.tab_source_note(note)
    return table.tab_options(**{**COMPACT, "table_font_size": "11.5px"}).tab_style(
        style.text(whitespace="nowrap"), location.body(columns=columns)
    )


def table1_gt(table1: pd.DataFrame, outcomes: dict) -> GT:
    return study_arm_table(
        baseline_rows(table1, outcomes),
        study_order(table1),
        "Table 1. Baseline characteristics by study and arm",
        [
            ARM_NOTE + "Counts are n (%) of those with a known value; scores are mean (SD) in each study's instrument, "
            "pooled only where the studies share it ('see studies' where they do not); '-': not measured.",
            "Instruments by study. " + " ".join(instrument_notes(table1, outcomes)),
        ],
        "table1",
    )


def table2_gt(table1: pd.DataFrame, outcomes: dict) -> GT:
    return study_arm_table(
        followup_rows(table1, outcomes),
        study_order(table1),
        "Table 2. Follow-up and employment by study and arm",
        [
            ARM_NOTE + "Worked: n (%) of those whose employment during follow-up was ascertained. Follow-up score: "
            "n (%) of those randomized in studies that measured the outcome; '-': not measured.",
        ],
        "table2",
    )


# ------------------------------------------------------------ results table


def warning_notes(texts: list[str]) -> tuple[list[str], dict[str, int]]:
    """Distinct warnings in order of appearance, and each one's note number (from 1)."""
    numbers: dict[str, int] = {}
    for text in texts:
        for warning in split_warnings(text):
            numbers.setdefault(warning, len(numbers) + 1)
    return list(numbers), numbers


def split_warnings(text) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        return []
    return [part.strip() for part in re.split(r";\s+(?=[a-z])", text) if part.strip()]


def results_frame(one_stage: pd.DataFrame, two_stage: pd.DataFrame, outcomes: dict) -> tuple[pd.DataFrame, list[str]]:
    """One row per contrast x outcome: one-stage and two-stage (REML) SMD (95% CI) and p, k, n,
    I², τ², 95% PI and the numbers of the row's warnings; and the warnings in note order."""
    reml = two_stage[(two_stage["method"] == "REML") & ~two_stage["hksj"].astype(bool)] if len(two_stage) else two_stage
    rows, warnings = [], []
    for term in RESULT_TERMS:
        by_outcome = {row["outcome"]: row for row in one_stage[one_stage["term"] == term].to_dict("records")}
        for outcome in in_order(by_outcome, outcomes):
            one = by_outcome[outcome]
            match = reml[(reml["outcome"] == outcome) & (reml["term"] == term)] if len(reml) else reml
            two = match.iloc[0].to_dict() if len(match) else None
            texts = [one.get("warnings"), two.get("warnings") if two else None]
            warnings += texts
            rows.append(
                {
                    "contrast": contrast_label(term)[0].upper() + contrast_label(term)[1:],
                    "outcome": outcome_label(outcome, outcomes.get(outcome)),
                    "k": "-" if pd.isna(one.get("n_studies")) else f"{int(one['n_studies'])}",
                    "n": "-" if pd.isna(one.get("n_participants")) else f"{int(one['n_participants']):,}",
                    "one_stage": smd_ci(one),
                    "one_stage_p": p_value(one.get("p_value")),
                    "two_stage": smd_ci(two),
                    "two_stage_p": p_value(two.get("p_value")) if two else "-",
                    "i2": f"{two['i2']:.0f}%" if two and pd.notna(two.get("i2")) else "-",
                    "tau2": f"{two['tau2']:.3f}" if two and pd.notna(two.get("tau2")) else "-",
                    "pi": f"({two['pi_low']:.2f}, {two['pi_high']:.2f})"
                    if two and pd.notna(two.get("pi_low"))
                    else "-",
                    "texts": texts,
                }
            )
    notes, numbers = warning_notes(warnings)
    frame = pd.DataFrame(rows)
    frame["notes"] = [
        ", ".join(str(n) for n in sorted({numbers[w] for t in texts for w in split_warnings(t)}))
        for texts in frame["texts"]
    ]
    return frame.drop(columns="texts"), notes


def results_gt(one_stage: pd.DataFrame, two_stage: pd.DataFrame, outcomes: dict) -> GT:
    frame, notes = results_frame(one_stage, two_stage, outcomes)
    table = (
        GT(frame, groupname_col="contrast", id="results")
        .tab_header(title="Table 3. Standardized mean differences at follow-up, one-stage and two-stage")
        # every column but the first and last under a spanner: great_tables' LaTeX places
        # spanners as if no unspanned column came before them
        .tab_spanner("Data", columns=["k", "n"])
        .tab_spanner("One-stage", columns=["one_stage", "one_stage_p"])
        .tab_spanner("Two-stage (REML)", columns=["two_stage", "two_stage_p", "i2", "tau2", "pi"])
        .cols_label(
            outcome="Outcome",
            k="k",
            n="n",
            one_stage="SMD (95% CI)",
            one_stage_p="p",
            two_stage="SMD (95% CI)",
            two_stage_p="p",
            i2="I²",
            tau2="τ²",
            pi="95% PI",
            notes="Notes",
        )
        .cols_align("right", columns=["k", "n", "one_stage_p", "two_stage_p", "i2", "tau2"])
        .tab_source_note(
            "One-stage: linear mixed model with a random intercept for study (REML), baseline-adjusted. "
            "Two-stage: per-study OLS pooled by REML random-effects meta-analysis; PI needs three studies."
        )
        .tab_options(**COMPACT)
        .tab_style(style.text(whitespace="nowrap"), location.body())
    )
    for number, note in enumerate(notes, start=1):
        table = table.tab_source_note(f"{number}. {note}")
    return table


def html_of(table: GT) -> str:
    """The table's HTML fragment, byte-identical for identical input (fixed id)."""
    return table.as_raw_html()


def latex_of(table: GT) -> str:
    return table.as_latex()


def publication_page(table: GT, title: str, downloads: list) -> str:
    """A report page: the table, then links to its sources and its LaTeX (data URIs)."""
    from .report import download_link, page

    links = " ".join(download_link(path) for path in downloads)
    return page(title, f'{html_of(table)}\n<p class="note">{links}</p>')
