"""The headline results: one row per outcome x contrast (worked vs did not work, IPS vs usual
services, IPS x work), one-stage and two-stage, beside the published values where known.
Written as results/summary.md and as the first thing the HTML report shows."""

from __future__ import annotations

import pandas as pd

from .labels import contrast_label

HEADLINE_TERMS = ["employed", "ips", "ips:employed"]
HEADLINE_COLUMNS = ["contrast", "outcome", "studies", "n", "one-stage", "two-stage", "published", "true (demo)"]


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


FIRST_STAGE = "first stage: IPS vs usual services, odds ratio of work during follow-up"


def _odds_ratio(row) -> str:
    if row is None or pd.isna(row.get("odds_ratio")):
        return "not estimated"
    return f"{row['odds_ratio']:.2f} ({row['or_ci_low']:.2f}, {row['or_ci_high']:.2f})"


def first_stage_row(first_stage: pd.DataFrame) -> list[str]:
    """The headline row of the causal analysis's first stage (ipdpool.causal.first_stage_table)."""
    pooled = first_stage[first_stage["scope"] == "pooled"]
    one = _first(pooled[pooled["method"].str.startswith("one-stage")])
    two = _first(pooled[pooled["method"].str.startswith("two-stage")])
    either = one or two or {}
    return [FIRST_STAGE, "employed", count(either.get("k")), count(either.get("n")), _odds_ratio(one),
            _odds_ratio(two), "", ""]  # fmt: skip


def headline_table(
    one_stage: pd.DataFrame,
    two_stage: pd.DataFrame,
    replication: pd.DataFrame,
    first_stage: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rows by contrast, then outcome in the configured order; published and true values are
    known for worked vs did not work only (the replication table's contrast); then the first
    stage of the causal analysis when given."""
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
                    published,
                    truth,
                ]
            )
    if first_stage is not None and len(first_stage):
        rows.append(first_stage_row(first_stage))
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)


def headline_summary(
    one_stage: pd.DataFrame,
    two_stage: pd.DataFrame,
    replication: pd.DataFrame,
    first_stage: pd.DataFrame | None = None,
) -> str:
    table = headline_table(one_stage, two_stage, replication, first_stage)
    lines = ["# ipdpool summary", "", *introduction(one_stage)]
    for contrast, rows in table.groupby("contrast", sort=False):
        columns = [c for c in HEADLINE_COLUMNS[1:] if c not in ("published", "true (demo)") or rows[c].ne("").any()]
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
