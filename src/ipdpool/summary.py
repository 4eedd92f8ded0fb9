"""The headline results: one row per outcome x contrast (worked vs did not work, IPS vs usual
services, IPS x work), one-stage and two-stage, beside the published values where known.
Written as results/summary.md and as the first thing the HTML report shows."""

from __future__ import annotations

import pandas as pd

from .labels import contrast_label

HEADLINE_TERMS = ["employed", "ips", "ips:employed"]
HEADLINE_COLUMNS = [
    "contrast", "outcome", "studies", "n", "one-stage", "two-stage", "MI one-stage (FMI)", "published", "true (demo)",
]  # fmt: skip


def introduction(one_stage: pd.DataFrame) -> list[str]:
    """What the numbers are, naming the inference the one-stage rows used (the `analysis.ddf` setting)."""
    headline = one_stage[one_stage["term"].isin(HEADLINE_TERMS)] if "term" in one_stage else one_stage
    used = sorted(set(headline["inference"].dropna())) if "inference" in headline else []
    return [
        "Standardized mean differences (95% CI) at the 18-month follow-up, adjusted for the baseline score.",
        "One-stage: linear mixed model with a random intercept for study (REML; "
        + (f"inference: {', '.join(used)}" if used else "no model estimated")
        + ").",
        "Two-stage: per-study OLS pooled by REML random-effects meta-analysis.",
        "MI: the one-stage model after multiple imputation of missing scores and employment (Rubin's rules, "
        "Barnard-Rubin df); FMI: fraction of missing information.",
    ]


def _interval(row) -> str:
    if row is None or row.get("status", "estimated") != "estimated" or pd.isna(row.get("estimate")):
        return "not estimated"
    return f"{row['estimate']:.2f} ({row['ci_low']:.2f}, {row['ci_high']:.2f})"


def _first(frame: pd.DataFrame) -> dict | None:
    return frame.iloc[0].to_dict() if len(frame) else None


def count(value) -> str:
    """A count as an integer; suppressed counts in shared copies ("<5") as they are."""
    if isinstance(value, str):
        return value
    return "" if value is None or pd.isna(value) else str(int(value))


def imputed(multiple_imputation: pd.DataFrame | None, outcome: str, term: str) -> str:
    """The one-stage MI estimate with its FMI, for the headline's MI column."""
    if multiple_imputation is None or not len(multiple_imputation):
        return ""
    rows = multiple_imputation[
        (multiple_imputation["outcome"] == outcome)
        & (multiple_imputation["term"] == term)
        & (multiple_imputation["analysis"] == "one-stage")
    ]
    row = _first(rows)
    if row is None:
        return ""
    text = _interval(row)
    return text if text == "not estimated" else f"{text}; FMI {row['fmi']:.2f}"


def headline_table(
    one_stage: pd.DataFrame,
    two_stage: pd.DataFrame,
    replication: pd.DataFrame,
    multiple_imputation: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rows by contrast, then outcome in the configured order; published and true values are
    known for worked vs did not work only (the replication table's contrast)."""
    rep = replication.set_index("outcome")
    rows = []
    for term in HEADLINE_TERMS:
        for one in one_stage[one_stage["term"] == term].to_dict("records"):
            outcome = one["outcome"]
            chosen = (
                two_stage[
                    (two_stage["outcome"] == outcome)
                    & (two_stage["term"] == term)
                    & (two_stage["method"] == "REML")
                    & (~two_stage["hksj"].astype(bool))
                ]
                if len(two_stage)
                else two_stage
            )
            known = rep.loc[outcome] if term == "employed" and outcome in rep.index else None
            published = (
                f"{known['published_estimate']:.2f} ({known['published_ci_low']:.2f}, {known['published_ci_high']:.2f})"
                if known is not None and pd.notna(known.get("published_estimate"))
                else ""
            )
            truth = f"{known['true_smd']:.2f}" if known is not None and pd.notna(known.get("true_smd")) else ""
            rows.append(
                [
                    contrast_label(term),
                    outcome,
                    count(one.get("n_studies")),
                    count(one.get("n_participants")),
                    _interval(one),
                    _interval(_first(chosen)),
                    imputed(multiple_imputation, outcome, term),
                    published,
                    truth,
                ]
            )
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)


def headline_summary(
    one_stage: pd.DataFrame,
    two_stage: pd.DataFrame,
    replication: pd.DataFrame,
    multiple_imputation: pd.DataFrame | None = None,
) -> str:
    table = headline_table(one_stage, two_stage, replication, multiple_imputation)
    lines = ["# ipdpool summary", "", *introduction(one_stage)]
    for contrast, rows in table.groupby("contrast", sort=False):
        optional = ("published", "true (demo)", "MI one-stage (FMI)")
        columns = [c for c in HEADLINE_COLUMNS[1:] if c not in optional or rows[c].ne("").any()]
        lines += [
            "",
            f"## {contrast[0].upper()}{contrast[1:]}",
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows[columns].itertuples(index=False)]
    lines += ["", "Full tables: results/tables/; report: `snakemake --report results/report.html`.", ""]
    return "\n".join(lines)
