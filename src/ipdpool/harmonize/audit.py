"""Before/after distribution plots of every harmonized variable of a study."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .study import HarmonizedStudy  # noqa: E402
from .values import code_keys  # noqa: E402

CATEGORICAL = ("arm", "arm_original", "sex", "diagnosis", "employed", "site")
SKIP = ("study", "participant_id")


def plot_distributions(result: HarmonizedStudy, data: pd.DataFrame, path: Path) -> None:
    """One panel per variable: raw values (after missing codes) against harmonized values."""
    variables = [v for v in data.columns if v not in SKIP and not v.endswith(("_z", "_instrument")) and data[v].notna().any()]
    columns = 4
    rows = math.ceil(len(variables) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.8 * rows), squeeze=False)
    for axis, variable in zip(axes.flat, variables):
        before = result.before.get(variable)
        after = data[variable]
        if variable in CATEGORICAL:
            _bars(axis, before, after)
        else:
            _histograms(axis, before, after)
        axis.set_title(variable, fontsize=9)
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(variables):]:
        axis.axis("off")
    figure.suptitle(f"{result.study}: raw (grey) and harmonized (blue) values; missing excluded", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


MAX_BARS = 12  # bars per side of a panel; beyond, the rarest categories share one "other" bar


def capped_counts(values: pd.Series) -> pd.Series:
    """Counts by category; with more than MAX_BARS categories (days worked behind `employed`:
    about 100) the most frequent MAX_BARS - 1 and one "N others" bar, so tick labels stay readable."""
    counts = values.value_counts().sort_index()
    if len(counts) <= MAX_BARS:
        return counts
    ordered = counts.sort_values(ascending=False, kind="stable")
    top, rest = ordered.iloc[: MAX_BARS - 1].sort_index(), ordered.iloc[MAX_BARS - 1 :]
    return pd.concat([top, pd.Series({f"{len(rest)} others": int(rest.sum())})])


def _bars(axis, before: pd.Series | None, after: pd.Series) -> None:
    after_counts = capped_counts(after.dropna().astype(str))
    labels = list(after_counts.index)
    if before is not None:
        before_counts = capped_counts(code_keys(before).dropna())
        axis.bar(np.arange(len(before_counts)), before_counts.to_numpy(), color="0.6", label="raw")
        offset = len(before_counts) + 1
        labels = list(before_counts.index) + [""] + labels
    else:
        offset = 0
    axis.bar(offset + np.arange(len(after_counts)), after_counts.to_numpy(), color="tab:blue", label="harmonized")
    axis.set_xticks(range(len(labels)))
    axis.set_xticklabels([str(label)[:14] for label in labels], rotation=60, ha="right")


def _histograms(axis, before: pd.Series | None, after: pd.Series) -> None:
    after_values = pd.to_numeric(after, errors="coerce").dropna().to_numpy(dtype=float)
    if before is not None:
        before_values = pd.to_numeric(before, errors="coerce").dropna().to_numpy(dtype=float)
        axis.hist(before_values, bins=25, color="0.6", alpha=0.7, label="raw")
    axis.hist(after_values, bins=25, color="tab:blue", alpha=0.6, label="harmonized")
