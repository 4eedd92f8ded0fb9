"""What the before/after distribution plots of a study show, as counts.

The harmonization job is the only one that holds raw values; it writes these counts
(results/audit/<study>/distributions.tsv) and the plot is drawn from them, so that plotting
never reads the raw files again. Counts only: category counts capped at MAX_BARS bars and
25-bin histograms, never a value per participant.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .values import code_keys

CATEGORICAL = ("arm", "arm_original", "sex", "diagnosis", "employed", "site")
SKIP = ("study", "participant_id")
HISTOGRAM_BINS = 25
MAX_BARS = 12  # bars per side of a panel; beyond, the rarest categories share one "other" bar
COLUMNS = ["variable", "side", "kind", "category", "bin_low", "bin_high", "count"]


def plotted_variables(data: pd.DataFrame) -> list[str]:
    return [
        v for v in data.columns if v not in SKIP and not v.endswith(("_z", "_instrument")) and data[v].notna().any()
    ]


def capped_counts(values: pd.Series) -> pd.Series:
    """Counts by category; with more than MAX_BARS categories (days worked behind `employed`:
    about 100) the most frequent MAX_BARS - 1 and one "N others" bar, so tick labels stay readable."""
    counts = values.value_counts().sort_index()
    if len(counts) <= MAX_BARS:
        return counts
    ordered = counts.sort_values(ascending=False, kind="stable")
    top, rest = ordered.iloc[: MAX_BARS - 1].sort_index(), ordered.iloc[MAX_BARS - 1 :]
    return pd.concat([top, pd.Series({f"{len(rest)} others": int(rest.sum())})])


def _category_rows(variable: str, side: str, values: pd.Series) -> list[dict]:
    counts = capped_counts(values.dropna())
    return [
        {"variable": variable, "side": side, "kind": "categories", "category": str(c), "count": int(n)}
        for c, n in counts.items()
    ]


def _histogram_rows(variable: str, side: str, values: pd.Series) -> list[dict]:
    numbers = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if not len(numbers):
        return []
    counts, edges = np.histogram(numbers, bins=HISTOGRAM_BINS)
    return [
        {"variable": variable, "side": side, "kind": "histogram", "bin_low": low, "bin_high": high, "count": int(n)}
        for low, high, n in zip(edges[:-1], edges[1:], counts)
    ]


def distribution_counts(before: dict[str, pd.Series], data: pd.DataFrame) -> pd.DataFrame:
    """Per plotted variable, the raw side (after missing codes; absent for variables no raw
    column feeds) and the harmonized side: category counts or a histogram."""
    rows = []
    for variable in plotted_variables(data):
        raw = before.get(variable)
        if variable in CATEGORICAL:
            if raw is not None:
                rows += _category_rows(variable, "raw", code_keys(raw))
            rows += _category_rows(variable, "harmonized", data[variable].dropna().astype(str))
        else:
            if raw is not None:
                rows += _histogram_rows(variable, "raw", raw)
            rows += _histogram_rows(variable, "harmonized", data[variable])
    return pd.DataFrame(rows, columns=COLUMNS).astype({"count": "int64"})
