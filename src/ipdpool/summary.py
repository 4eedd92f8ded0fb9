"""results/summary.md: the headline table in plain Markdown."""

from __future__ import annotations

import pandas as pd


def _interval(row) -> str:
    if row is None or row.get("status", "estimated") != "estimated" or pd.isna(row.get("estimate")):
        return "not estimated"
    return f"{row['estimate']:.2f} ({row['ci_low']:.2f}, {row['ci_high']:.2f})"


def headline_summary(one_stage: pd.DataFrame, two_stage: pd.DataFrame, replication: pd.DataFrame) -> str:
    lines = [
        "# ipdpool summary",
        "",
        "Standardized mean differences (95% CI) at the 18-month follow-up, adjusted for the baseline score.",
        "One-stage: linear mixed model with a random intercept for study (REML, t with Satterthwaite df).",
        "Two-stage: per-study OLS pooled by REML random-effects meta-analysis.",
        "",
        "## Worked vs did not work",
        "",
        "| outcome | studies | n | one-stage | two-stage | published | true (demo) |",
        "|---|---|---|---|---|---|---|",
    ]
    rep = replication.set_index("outcome")
    for row in one_stage[(one_stage["contrast"] == "employed") & (one_stage["term"] == "employed")].to_dict("records"):
        outcome = row["outcome"]
        two = two_stage[(two_stage["outcome"] == outcome) & (two_stage["contrast"] == "employed") & (two_stage["term"] == "employed") & (two_stage["method"] == "REML") & (~two_stage["hksj"].astype(bool))]
        published = rep.loc[outcome] if outcome in rep.index else None
        published_text = f"{published['published_estimate']:.2f} ({published['published_ci_low']:.2f}, {published['published_ci_high']:.2f})" if published is not None and pd.notna(published.get("published_estimate")) else ""
        truth_text = f"{published['true_smd']:.2f}" if published is not None and pd.notna(published.get("true_smd")) else ""
        lines.append(f"| {outcome} | {row['n_studies']} | {row['n_participants']} | {_interval(row)} | {_interval(two.iloc[0].to_dict() if len(two) else None)} | {published_text} | {truth_text} |")
    lines += ["", "## IPS vs usual services and the IPS x work interaction (one-stage)", "", "| outcome | IPS vs usual services | IPS x work |", "|---|---|---|"]
    for outcome in dict.fromkeys(one_stage["outcome"]):
        ips = one_stage[(one_stage["outcome"] == outcome) & (one_stage["term"] == "ips")]
        interaction = one_stage[(one_stage["outcome"] == outcome) & (one_stage["term"] == "ips:employed")]
        lines.append(f"| {outcome} | {_interval(ips.iloc[0].to_dict() if len(ips) else None)} | {_interval(interaction.iloc[0].to_dict() if len(interaction) else None)} |")
    lines += ["", "Full tables: results/tables/; report: `snakemake --report results/report.html`.", ""]
    return "\n".join(lines)
