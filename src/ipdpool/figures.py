"""Figures: forest plots, participant flow and harmonization status (PNG and SVG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

plt.rcParams["svg.hashsalt"] = "ipdpool"  # stable SVG ids: identical files on re-runs
PNG_METADATA = {"Software": None}
SVG_METADATA = {"Date": None, "Creator": None}

CONTRAST_LABELS = {
    "employed": "worked vs did not work",
    "ips": "IPS vs usual services",
    "ips:employed": "IPS x work interaction",
    "employed_in_SAU": "worked vs not, usual services",
    "employed_in_IPS": "worked vs not, IPS",
    "ips_in_not_employed": "IPS vs usual services, not working",
}


def save(figure, stem: Path) -> None:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(stem.with_suffix(".png"), dpi=110, metadata=PNG_METADATA)
    figure.savefig(stem.with_suffix(".svg"), metadata=SVG_METADATA)
    plt.close(figure)


def forest_plot(studies: pd.DataFrame, pooled: pd.Series | None, one_stage: pd.Series | None, outcome: str, term: str, construct: str, stem: Path) -> None:
    """forest_figure saved as PNG and SVG."""
    save(forest_figure(studies, pooled, one_stage, outcome, term, construct), stem)


def forest_figure(
    studies: pd.DataFrame,
    pooled: pd.Series | None,
    one_stage: pd.Series | None,
    outcome: str,
    term: str,
    construct: str,
) -> plt.Figure:
    """Studies (estimate, 95% CI, n, REML weight), the pooled REML diamond with its prediction
    interval, and the one-stage mixed-model estimate for comparison."""
    studies = studies.sort_values("study").reset_index(drop=True)
    one_stage = one_stage if one_stage is not None and one_stage["status"] == "estimated" else None
    weights = pooled_weights(studies) if pooled is not None else np.full(len(studies), np.nan)
    span = axis_half_width(studies, pooled, one_stage)
    rows = len(studies) + 3
    figure, axis = plt.subplots(figsize=(9.5, 0.42 * rows + 1.6))
    y_positions = np.arange(rows)[::-1]
    labels, texts = [], []
    for i, row in studies.iterrows():
        y = y_positions[i]
        axis.plot([row["ci_low"], row["ci_high"]], [y, y], color="black", lw=1)
        size = 4 + 10 * np.sqrt(weights[i] / 100) if np.isfinite(weights[i]) else 5
        axis.plot(row["estimate"], y, "s", color="tab:blue", markersize=size)
        labels.append(f"{row['study']} (n={int(row['n'])})")
        texts.append(f"{row['estimate']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]  {weights[i]:4.1f}%")
    y = y_positions[len(studies) + 1]
    if pooled is not None:
        e, lo, hi = pooled["estimate"], pooled["ci_low"], pooled["ci_high"]
        axis.fill([lo, e, hi, e], [y, y + 0.3, y, y - 0.3], color="tab:red")
        if np.isfinite(pooled["pi_low"]):
            draw_prediction_interval(axis, pooled["pi_low"], pooled["pi_high"], y - 0.45, span)
            pi_text = f"PI [{pooled['pi_low']:.2f}, {pooled['pi_high']:.2f}]"  # its ends may lie beyond the axis
            place = {"xy": (1.02, y - 0.45), "xycoords": ("axes fraction", "data"), "va": "center"}
            axis.annotate(pi_text, **place, fontsize=8, family="monospace")
            labels.append("Two-stage REML (dashed: 95% PI)")
        else:
            labels.append("Two-stage REML (no prediction interval)")
        texts.append(f"{e:.2f} [{lo:.2f}, {hi:.2f}]  tau2={pooled['tau2']:.3f}")
    else:
        labels.append("Two-stage: not estimated")
        texts.append("")
    y = y_positions[len(studies) + 2]
    if one_stage is not None:
        axis.plot([one_stage["ci_low"], one_stage["ci_high"]], [y, y], color="black", lw=1)
        axis.plot(one_stage["estimate"], y, "D", color="white", markeredgecolor="black", markersize=7)
        labels.append("One-stage mixed model")
        texts.append(f"{one_stage['estimate']:.2f} [{one_stage['ci_low']:.2f}, {one_stage['ci_high']:.2f}]")
    else:
        labels.append("One-stage: not estimated")
        texts.append("")
    positions = list(y_positions[: len(studies)]) + [y_positions[len(studies) + 1], y_positions[len(studies) + 2]]
    axis.set_yticks(positions)
    axis.set_yticklabels(labels, fontsize=9)
    axis.axvline(0, color="grey", lw=0.8)
    axis.set_ylim(-0.8, rows - 0.4)
    axis.set_xlim(-span, span)
    axis.annotate("SMD [95% CI]   weight", xy=(1.02, rows - 0.6), xycoords=("axes fraction", "data"), va="center", fontsize=8, family="monospace", weight="bold")
    for position, text in zip(positions, texts):
        axis.annotate(text, xy=(1.02, position), xycoords=("axes fraction", "data"), va="center", fontsize=8, family="monospace")
    axis.set_xlabel(f"SMD, {CONTRAST_LABELS.get(term, term)}\n<- lower {construct}        higher {construct} ->", fontsize=9)
    axis.set_title(f"{outcome}: {CONTRAST_LABELS.get(term, term)}", fontsize=11)
    axis.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    figure.subplots_adjust(right=0.62)
    return figure


def axis_half_width(studies: pd.DataFrame, pooled: pd.Series | None, one_stage: pd.Series | None) -> float:
    """Half-width of the x-axis, symmetric about 0: the farthest confidence-interval end plus 5%.
    Not the prediction interval, which can be far wider (t(1) = 12.7 SEs with three studies)."""
    ends = [*studies["ci_low"], *studies["ci_high"]]
    for row in (pooled, one_stage):
        if row is not None:
            ends += [row["ci_low"], row["ci_high"]]
    ends = np.abs(np.array(ends, dtype=float))
    farthest = float(np.max(ends[np.isfinite(ends)], initial=0.0))
    return 1.05 * farthest if farthest > 0 else 1.0  # no interval at all: a unit axis around 0


def draw_prediction_interval(axis, low: float, high: float, y: float, span: float) -> None:
    """Dashed line clipped to the axis; an end beyond it gets an arrow head at the axis edge."""
    axis.plot([max(low, -span), min(high, span)], [y, y], color="tab:red", lw=1, ls="--")
    for side, beyond, edge, marker in (("low", low < -span, -span, "<"), ("high", high > span, span, ">")):
        if beyond:
            axis.plot(edge, y, marker, color="tab:red", markersize=6, clip_on=False, gid=f"pi-clipped-{side}")


def pooled_weights(studies: pd.DataFrame) -> np.ndarray:
    from .meta import meta_analysis

    return np.array(meta_analysis(studies["estimate"].to_numpy(), studies["se"].to_numpy() ** 2, "REML").weights)


def flow_figure(flow: pd.DataFrame, stem: Path) -> None:
    """Pooled participant flow: randomized, follow-up, employment known, analysable per outcome."""
    pooled = flow[flow["study"] == "all"].set_index(["stage", "reason"])

    def count(stage: str, reason: str = "") -> str:
        row = pooled.loc[(stage, reason)] if (stage, reason) in pooled.index else None
        # counts may already be suppressed ("<5") in shared copies
        return "n/a" if row is None else f"{row['total']} (IPS {row['IPS']}, SAU {row['SAU']})"

    boxes = [
        ("Randomized", count("randomized participants", "unique participant ids in the participants table")),
        ("Follow-up assessment", count("with a follow-up assessment")),
        ("Employment during follow-up known", count("employment known")),
    ]
    side = [
        ("No follow-up assessment", count("without a follow-up assessment", "no follow-up assessment in the window")),
        ("Employment unknown", count("employment unknown", "records cannot tell")),
    ]
    analysable = [(stage.split(":")[0], count(stage, reason)) for stage, reason in pooled.index if stage.endswith(": analysable")]
    figure, axis = plt.subplots(figsize=(10, 7))
    axis.axis("off")
    for i, (title, text) in enumerate(boxes):
        y = 0.9 - i * 0.22
        axis.text(0.3, y, f"{title}\n{text}", ha="center", va="center", fontsize=10, bbox={"boxstyle": "round", "fc": "#e8f0fa"})
        if i:
            axis.annotate("", xy=(0.3, y + 0.06), xytext=(0.3, y + 0.16), arrowprops={"arrowstyle": "->"})
    for i, (title, text) in enumerate(side):
        axis.text(0.78, 0.79 - i * 0.22, f"{title}\n{text}", ha="center", va="center", fontsize=9, bbox={"boxstyle": "round", "fc": "#fbeaea"})
    lines = "\n".join(f"{outcome}: {text}" for outcome, text in analysable)
    axis.text(0.3, 0.12, f"Analysable (baseline, follow-up, employment)\n{lines}", ha="center", va="center", fontsize=9, bbox={"boxstyle": "round", "fc": "#eaf7ea"})
    axis.annotate("", xy=(0.3, 0.3), xytext=(0.3, 0.4), arrowprops={"arrowstyle": "->"})
    axis.set_title("Participant flow, all studies (per-study counts in results/audit/flow.tsv)", fontsize=11)
    save(figure, stem)


def status_figure(status: pd.DataFrame, stem: Path) -> None:
    """Study x variable grid: harmonized, not collected, undetermined."""
    matrix = status.set_index("study")
    columns = [c for c in matrix.columns if not c.endswith("_fu")]
    codes = {"harmonized": 0, "not_collected": 1, "undetermined": 2}
    values = matrix[columns].replace(codes).astype(float).to_numpy()
    figure, axis = plt.subplots(figsize=(0.5 * len(columns) + 2, 0.5 * len(matrix) + 2.2))
    colours = matplotlib.colors.ListedColormap(["#4c9a2a", "#d9d9d9", "#e69f00"])
    axis.imshow(values, cmap=colours, vmin=0, vmax=2, aspect="auto")
    axis.set_xticks(range(len(columns)))
    axis.set_xticklabels([c.removesuffix("_bl") for c in columns], rotation=60, ha="right", fontsize=8)
    axis.set_yticks(range(len(matrix)))
    axis.set_yticklabels(matrix.index)
    handles = [matplotlib.patches.Patch(color=colours(i), label=label) for label, i in codes.items()]
    axis.legend(handles=handles, bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8)
    axis.set_title("Harmonization status by study and variable", fontsize=11)
    figure.tight_layout()
    save(figure, stem)


def slug(term: str) -> str:
    """A file-name-safe form of a contrast name ("ips:employed" -> "ips_x_employed")."""
    return term.replace(":", "_x_")
