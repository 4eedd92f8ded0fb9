"""Replication summary: pooled SMDs beside the published ones and the generator's truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..probabilities import norm_quantile


def replication_table(
    one_stage: pd.DataFrame, contrast: str, term: str, published: dict[str, list[float]], truth: dict[str, float] | None
) -> pd.DataFrame:
    """One row per outcome; differences are in units of the pipeline's standard error.

    The published SE is recovered from the published 95% CI as (high - low) / (2 * 1.96).
    """
    rows = []
    chosen = one_stage[(one_stage["contrast"] == contrast) & (one_stage["term"] == term)]
    z = norm_quantile(0.975)
    for row in chosen.itertuples():
        entry = {
            "outcome": row.outcome,
            "contrast": contrast,
            "term": term,
            "estimate": row.estimate,
            "se": row.se,
            "ci_low": row.ci_low,
            "ci_high": row.ci_high,
            "status": row.status,
        }
        if row.outcome in published:
            value, low, high = published[row.outcome]
            entry.update(
                published_estimate=value,
                published_ci_low=low,
                published_ci_high=high,
                published_se=(high - low) / (2 * z),
            )
            entry["within_published_ci"] = bool(low <= row.estimate <= high) if row.status == "estimated" else np.nan
            entry["difference_from_published_in_se"] = (row.estimate - value) / row.se
        if truth and row.outcome in truth:
            entry["true_smd"] = truth[row.outcome]
            entry["difference_from_truth_in_se"] = (row.estimate - truth[row.outcome]) / row.se
        rows.append(entry)
    columns = [
        "outcome", "contrast", "term", "estimate", "se", "ci_low", "ci_high", "status",
        "published_estimate", "published_ci_low", "published_ci_high", "published_se", "within_published_ci",
        "difference_from_published_in_se", "true_smd", "difference_from_truth_in_se",
    ]  # fmt: skip
    return pd.DataFrame(rows).reindex(columns=columns)
