"""The tipping-point figure: each headline SMD (multiple imputation, one-stage) against the delta
added to one group's imputed follow-up scores, with its 95% CI, one panel per outcome and contrast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..labels import contrast_label

GROUP_STYLE = {"IPS": "C0", "SAU": "C1", "employed": "C2", "not_employed": "C3"}


def tipping_point_figure(pooled: pd.DataFrame, summary: pd.DataFrame, stem: Path, figures: dict) -> None:
    import matplotlib.pyplot as plt

    from ..figures import save  # matplotlib only here

    estimated = pooled[pooled["status"] == "estimated"] if len(pooled) else pooled
    panels = list(dict.fromkeys(zip(estimated["outcome"], estimated["term"]))) if len(estimated) else []
    outcomes = list(dict.fromkeys(o for o, _ in panels))
    terms = list(dict.fromkeys(t for _, t in panels))
    rows, columns = max(len(outcomes), 1), max(len(terms), 1)
    size = (3.2 * columns, 2.4 * rows + 0.6)
    figure, axes = plt.subplots(rows, columns, figsize=size, squeeze=False, sharex=True)
    for (outcome, term), axis in ((p, axes[outcomes.index(p[0]), terms.index(p[1])]) for p in panels):
        part = estimated[(estimated["outcome"] == outcome) & (estimated["term"] == term)]
        for group, line in part.groupby("group", sort=False):
            line = line.sort_values("delta")
            color = GROUP_STYLE.get(group, "C4")
            axis.plot(line["delta"], line["estimate"], color=color, lw=1.2, label=group.replace("_", " "))
            axis.fill_between(line["delta"], line["ci_low"], line["ci_high"], color=color, alpha=0.12, lw=0)
            tip = summary[(summary["outcome"] == outcome) & (summary["term"] == term) & (summary["group"] == group)]
            for column in ("tipping_delta_lower", "tipping_delta_upper"):
                value = tip[column].iloc[0] if len(tip) else np.nan
                if np.isfinite(value) and value != 0:
                    axis.axvline(value, color=color, lw=0.8, ls=":")
        axis.axhline(0, color="grey", lw=0.8)
        axis.set_title(f"{outcome.replace('_', ' ')}: {contrast_label(term)}", fontsize=8)
        axis.tick_params(labelsize=8)
    for axis in axes[-1]:
        axis.set_xlabel("delta added to imputed follow-ups (SD units)", fontsize=8)
    for axis in axes[:, 0]:
        axis.set_ylabel("SMD (95% CI)", fontsize=8)
    if panels:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    else:
        axes[0, 0].text(0.5, 0.5, "no tipping-point analysis (no participant data held here)", ha="center")
        axes[0, 0].set_axis_off()
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    save(figure, stem, formats=figures["formats"], dpi=figures["png_dpi"])
