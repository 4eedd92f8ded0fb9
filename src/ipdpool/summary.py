"""The headline results: one row per outcome x contrast (worked vs did not work, IPS vs usual
services, IPS x work), one-stage and two-stage with the two-stage heterogeneity (I², 95%
prediction interval), a flag where the one-stage interval and the two-stage or random-slope
interval disagree materially, beside the published values where known. Written as
results/summary.md and as the first thing the HTML report shows."""

from __future__ import annotations

import pandas as pd

from .labels import contrast_label, in_order, outcome_label

HEADLINE_TERMS = ["employed", "ips", "ips:employed"]
HEADLINE_COLUMNS = [
    "contrast",
    "outcome",
    "k",
    "n",
    "one-stage",
    "MI one-stage (FMI)",
    "two-stage",
    "I²",
    "95% PI",
    "agreement",
    "published",
    "true (demo)",
]
# Two intervals disagree materially when they lead to different conclusions about no effect
# (exactly one of them excludes 0), or when one is at least this many times as wide as the
# other (between-study variation that the random-intercept model's interval does not carry).
MATERIAL_WIDTH_RATIO = 2.0
RANDOM_SLOPE = "random_slope_employed"


def introduction(one_stage: pd.DataFrame) -> list[str]:
    """What the numbers are, naming the inference the one-stage rows used (the `analysis.ddf` setting)."""
    headline = one_stage[one_stage["term"].isin(HEADLINE_TERMS)] if "term" in one_stage else one_stage
    used = sorted(set(headline["inference"].dropna())) if "inference" in headline else []
    return [
        "Standardized mean differences (95% CI) at the 18-month follow-up, adjusted for the baseline score.",
        "One-stage: linear mixed model with a random intercept for study (REML; "
        + (f"inference: {', '.join(used)}" if used else "no model estimated")
        + ").",
        "MI: the one-stage model after multiple imputation of missing scores and employment (Rubin's rules,"
        " Barnard-Rubin df); FMI: fraction of missing information.",
        "Two-stage: per-study OLS pooled by REML random-effects meta-analysis; I² and the 95% prediction"
        " interval (PI) are its heterogeneity.",
        "A flag marks a row whose one-stage interval and two-stage or random-slope interval disagree"
        f" materially: exactly one of them excludes 0, or one is at least {MATERIAL_WIDTH_RATIO:g} times as"
        " wide as the other.",
    ]


def estimated(row: dict | None) -> bool:
    return row is not None and row.get("status", "estimated") == "estimated" and pd.notna(row.get("estimate"))


def _interval(row) -> str:
    if not estimated(row):
        return "not estimated"
    return f"{row['estimate']:.2f} ({row['ci_low']:.2f}, {row['ci_high']:.2f})"


def _first(frame: pd.DataFrame) -> dict | None:
    return frame.iloc[0].to_dict() if len(frame) else None


def count(value) -> str:
    """A count as an integer; suppressed counts in shared copies ("<5") as they are."""
    if isinstance(value, str):
        return value
    return "" if value is None or pd.isna(value) else str(int(value))


def disagreement(one: dict | None, other: dict | None) -> str:
    """Why two intervals disagree materially ("" if they do not, or either is missing)."""
    if not (estimated(one) and estimated(other)):
        return ""
    excludes = [row["ci_low"] > 0 or row["ci_high"] < 0 for row in (one, other)]
    if excludes[0] != excludes[1]:
        return "only one interval excludes 0"
    widths = sorted(row["ci_high"] - row["ci_low"] for row in (one, other))
    if widths[0] > 0 and widths[1] / widths[0] >= MATERIAL_WIDTH_RATIO:
        return f"one interval is {widths[1] / widths[0]:.1f} times as wide"
    return ""


def flags(one: dict | None, two: dict | None, slope: dict | None) -> list[str]:
    """The material disagreements of a headline row, each as a sentence with the numbers."""
    notes = []
    for name, other in (("two-stage", two), ("random-slope sensitivity", slope)):
        reason = disagreement(one, other)
        if reason:
            df = f", {other['df']:.1f} df" if name.startswith("random") and pd.notna(other.get("df")) else ""
            notes.append(f"one-stage {_interval(one)} vs {name} {_interval(other)}{df}: {reason}")
    return notes


def heterogeneity(two: dict | None) -> tuple[str, str]:
    """(I², 95% PI) of the two-stage REML row as shown; a PI needs three studies."""
    if not estimated(two):
        return "", ""
    i2 = f"{two['i2']:.0f}%" if pd.notna(two.get("i2")) else ""
    if pd.isna(two.get("pi_low")):
        return i2, "k < 3"
    return i2, f"({two['pi_low']:.2f}, {two['pi_high']:.2f})"


def outcome_order(outcomes: list[str], replication: pd.DataFrame) -> list[str]:
    """The outcomes with a published value first (in the configured order), then the rest."""
    published = (
        set(replication.loc[replication["published_estimate"].notna(), "outcome"]) if len(replication) else set()
    )
    return [o for o in outcomes if o in published] + [o for o in outcomes if o not in published]


def pick(frame: pd.DataFrame, **columns) -> dict | None:
    if not len(frame):
        return None
    mask = pd.Series(True, index=frame.index)
    for column, value in columns.items():
        mask &= frame[column] == value
    return _first(frame[mask])


FIRST_STAGE = "first stage: IPS vs usual services, odds ratio of work during follow-up"


def _odds_ratio(row) -> str:
    if row is None or pd.isna(row.get("odds_ratio")):
        return "not estimated"
    return f"{row['odds_ratio']:.2f} ({row['or_ci_low']:.2f}, {row['or_ci_high']:.2f})"


def first_stage_row(first_stage: pd.DataFrame) -> list:
    """The headline row of the causal analysis's first stage (ipdpool.causal.first_stage_table):
    one-stage and two-stage odds ratios, the two-stage I²."""
    pooled = first_stage[first_stage["scope"] == "pooled"]
    one = _first(pooled[pooled["method"].str.startswith("one-stage")])
    two = _first(pooled[pooled["method"].str.startswith("two-stage")])
    either = one or two or {}
    i2 = f"{two['i2']:.0f}%" if two is not None and pd.notna(two.get("i2")) else ""
    return [FIRST_STAGE, "employed", count(either.get("k")), count(either.get("n")), _odds_ratio(one), "",
            _odds_ratio(two), i2, "", "", "", "", []]  # fmt: skip


def wholesale_studies(studies) -> list[str]:
    """The entries of a `studies` column that imputation.analysis.annotated_studies marked (kept here
    so that the summary does not import the imputation code)."""
    return [entry for entry in str(studies).split(",") if " (imputed: " in entry]


def imputed(multiple_imputation: pd.DataFrame | None, outcome: str, term: str) -> str:
    """The one-stage MI estimate with its FMI, for the headline's MI column."""
    if multiple_imputation is None or not len(multiple_imputation):
        return ""
    row = pick(multiple_imputation, outcome=outcome, term=term, analysis="one-stage")
    if row is None:
        return ""
    text = _interval(row)
    wholesale = wholesale_studies(row.get("studies"))
    # multiple_imputation.method two_stage imputes variables a study never measured: say whose
    note = f"; {', '.join(wholesale)} wholesale" if wholesale else ""
    return text + note if text == "not estimated" else f"{text}; FMI {row['fmi']:.2f}{note}"


def headline_table(
    one_stage: pd.DataFrame,
    two_stage: pd.DataFrame,
    replication: pd.DataFrame,
    sensitivity: pd.DataFrame | None = None,
    outcomes: dict | None = None,
    first_stage: pd.DataFrame | None = None,
    multiple_imputation: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rows by contrast, then outcome (published ones first); published and true values are
    known for worked vs did not work only (the replication table's contrast). The `notes`
    column lists each row's material disagreements (the flag's footnote). Then the first stage
    of the causal analysis when given."""
    rep = replication.set_index("outcome")
    two_stage = (
        two_stage[(two_stage["method"] == "REML") & ~two_stage["hksj"].astype(bool)] if len(two_stage) else two_stage
    )
    slopes = sensitivity if sensitivity is not None and len(sensitivity) else pd.DataFrame()
    if len(slopes):
        slopes = slopes[slopes["variant"] == RANDOM_SLOPE]
    rows = []
    for term in HEADLINE_TERMS:
        flagged = 0  # footnotes are numbered within each contrast's table
        by_outcome = {row["outcome"]: row for row in one_stage[one_stage["term"] == term].to_dict("records")}
        for outcome in outcome_order(in_order(by_outcome, outcomes or {}), replication):
            one = by_outcome[outcome]
            two = pick(two_stage, outcome=outcome, term=term)
            slope = pick(slopes, outcome=outcome, term=term)
            known = rep.loc[outcome] if term == "employed" and outcome in rep.index else None
            published = (
                f"{known['published_estimate']:.2f} ({known['published_ci_low']:.2f}, {known['published_ci_high']:.2f})"
                if known is not None and pd.notna(known.get("published_estimate"))
                else ""
            )
            truth = f"{known['true_smd']:.2f}" if known is not None and pd.notna(known.get("true_smd")) else ""
            notes = flags(one, two, slope)
            numbers = [str(flagged + i + 1) for i in range(len(notes))]
            flagged += len(notes)
            rows.append(
                [
                    contrast_label(term),
                    outcome_label(outcome, (outcomes or {}).get(outcome)),
                    count(one.get("n_studies")),
                    count(one.get("n_participants")),
                    _interval(one),
                    imputed(multiple_imputation, outcome, term),
                    _interval(two),
                    *heterogeneity(two),
                    f"\u26a0 see {', '.join(numbers)}" if notes else "agree",
                    published,
                    truth,
                    notes,
                ]
            )
    if first_stage is not None and len(first_stage):
        rows.append(first_stage_row(first_stage))
    return pd.DataFrame(rows, columns=[*HEADLINE_COLUMNS, "notes"])


def shown_columns(rows: pd.DataFrame) -> list[str]:
    """The columns of one contrast's table: published and true values only where there are some."""
    optional = ("published", "true (demo)", "MI one-stage (FMI)")
    return [c for c in HEADLINE_COLUMNS[1:] if c not in optional or rows[c].ne("").any()]


def footnotes(rows: pd.DataFrame) -> list[tuple[int, str, str]]:
    """(number, outcome, note) of a contrast's flagged rows, numbered from 1."""
    out = []
    for outcome, notes in zip(rows["outcome"], rows["notes"]):
        out += [(len(out) + 1, outcome, note) for note in notes]
    return out


def headline_summary(
    one_stage: pd.DataFrame,
    two_stage: pd.DataFrame,
    replication: pd.DataFrame,
    sensitivity: pd.DataFrame | None = None,
    outcomes: dict | None = None,
    first_stage: pd.DataFrame | None = None,
    multiple_imputation: pd.DataFrame | None = None,
) -> str:
    table = headline_table(one_stage, two_stage, replication, sensitivity, outcomes, first_stage, multiple_imputation)
    lines = ["# ipdpool summary", "", *introduction(one_stage)]
    for contrast, rows in table.groupby("contrast", sort=False):
        columns = shown_columns(rows)
        lines += [
            "",
            f"## {contrast[0].upper()}{contrast[1:]}",
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows[columns].itertuples(index=False)]
        notes = footnotes(rows)
        if notes:
            lines += ["", *(f"{number}. {outcome}: {note}." for number, outcome, note in notes)]
    lines += ["", "Full tables: results/tables/; report: `snakemake --report results/report.html`.", ""]
    return "\n".join(lines)
