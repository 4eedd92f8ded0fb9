"""Figures: forest plots, participant flow, harmonization status and the before/after
distributions of each study, saved in the formats the config lists (SVG, PNG)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.transforms import BboxTransformTo, TransformedBbox, blended_transform_factory

if TYPE_CHECKING:  # pandas objects are passed in; importing pandas is left to the callers
    import pandas as pd

from .labels import contrast_label, favours, outcome_label, slug  # noqa: F401  (slug re-exported)

plt.rcParams["svg.hashsalt"] = "ipdpool"  # stable SVG ids: identical files on re-runs
plt.rcParams["svg.fonttype"] = "none"  # text stays text in SVGs: searchable, and checked by the tests
METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}
# SVG only by default: the report shows SVGs, and a PNG costs 2-3 times an SVG's time to write
# (bench/bench_workflow.py); `figures.formats` in the config adds PNG.
DEFAULT_FORMATS = ("svg",)
PNG_DPI = 110


def save(figure, stem: Path, formats: Sequence[str] = DEFAULT_FORMATS, dpi: float = PNG_DPI) -> None:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    for suffix in formats:
        resolution = {"dpi": dpi} if suffix == "png" else {}  # an SVG is vector: no resolution
        figure.savefig(stem.with_suffix(f".{suffix}"), metadata=METADATA[suffix], **resolution)
    plt.close(figure)


def forest_plot(
    studies, pooled, one_stage, outcome: str, term: str, spec: dict, stem: Path, hksj=None, **saving
) -> None:
    """forest_figure saved in each format (`saving`: formats and dpi, as for save)."""
    save(forest_figure(studies, pooled, one_stage, outcome, term, spec, hksj), stem, **saving)


def interval_text(row) -> str:
    return f"{row['estimate']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def overall_test(row: pd.Series) -> str:
    """The test of the pooled effect as metafor prints it: z, or t with its df (Knapp-Hartung)."""
    statistic = row["estimate"] / row["se"]
    name = "z" if not np.isfinite(row["df"]) else f"t({row['df']:.0f})"
    return f"{name} = {statistic:.2f}, {p_text(row['p_value'])}"


def heterogeneity_text(row: pd.Series) -> str:
    return (
        f"Heterogeneity: Q = {row['q']:.2f}, df = {int(row['k']) - 1}, {p_text(row['q_p'])}; "
        f"I\u00b2 = {row['i2']:.1f}%; \u03c4\u00b2 = {row['tau2']:.3f}"
    )


def forest_figure(
    studies: pd.DataFrame,
    pooled: pd.Series | None,
    one_stage: pd.Series | None,
    outcome: str,
    term: str,
    spec: dict,
    hksj: pd.Series | None = None,
) -> plt.Figure:
    """A forest plot in the layout of metafor's forest(): columns Study, n | plot | Weight,
    SMD [95% CI]; the pooled REML diamond with its prediction interval through it, the
    Knapp-Hartung interval and the one-stage estimate as rows; heterogeneity and the tests of
    the overall effect underneath; "favours" labels from the outcome's direction."""
    studies = studies.sort_values("study").reset_index(drop=True)
    one_stage = one_stage if one_stage is not None and one_stage["status"] == "estimated" else None
    weights = (
        pooled_weights(studies, pooled["tau2"])
        if pooled is not None and len(studies)
        else np.full(len(studies), np.nan)
    )
    low, high = axis_limits(studies, pooled, one_stage, hksj)
    summary_rows = 1 + (hksj is not None) + 1  # REML diamond, Knapp-Hartung, one-stage
    rows = len(studies) + 1 + summary_rows
    notes = 2 if pooled is not None else 1
    height = 0.36 * (rows + 2) + 0.34 * notes + 1.3
    figure = plt.figure(figsize=(11, height))
    grid = figure.add_gridspec(
        1,
        3,
        width_ratios=[2.6, 4.2, 3.0],
        wspace=0.02,
        left=0.02,
        right=0.98,
        top=1 - 0.55 / height,
        bottom=(0.34 * notes + 0.75) / height,
    )
    axis = figure.add_subplot(grid[0, 1])
    top = rows + 0.2
    axis.set_ylim(-0.8, top + 0.6)
    left, right = (TextColumn(figure, grid[0, i].get_position(figure), axis) for i in (0, 2))
    cell = {"va": "center", "fontsize": 9}
    head = {"va": "center", "fontsize": 9, "weight": "bold"}
    left.text(0.0, top, "Study", **head)
    left.text(0.97, top, "n", ha="right", **head)
    right.text(0.3, top, "Weight", ha="right", **head)
    right.text(0.98, top, "SMD [95% CI]", ha="right", **head)
    y = rows - 1
    for i, row in studies.iterrows():
        axis.plot([row["ci_low"], row["ci_high"]], [y, y], color="black", lw=1)
        size = 4 + 10 * np.sqrt(weights[i] / 100) if np.isfinite(weights[i]) else 5
        axis.plot(row["estimate"], y, "s", color="tab:blue", markersize=size)
        left.text(0.0, y, str(row["study"]), **cell)
        left.text(0.97, y, f"{int(row['n']):,}", ha="right", **cell)
        right.text(0.3, y, f"{weights[i]:.1f}%" if np.isfinite(weights[i]) else "", ha="right", **cell)
        right.text(0.98, y, interval_text(row), ha="right", family="monospace", **cell)
        y -= 1
    y -= 1
    if pooled is not None:
        e, lo, hi = pooled["estimate"], pooled["ci_low"], pooled["ci_high"]
        if np.isfinite(pooled["pi_low"]):
            draw_prediction_interval(axis, pooled["pi_low"], pooled["pi_high"], y, (low, high))
            label = "RE model (REML) with 95% PI"
            right.text(
                0.98,
                y - 0.42,
                f"PI [{pooled['pi_low']:.2f}, {pooled['pi_high']:.2f}]",
                ha="right",
                family="monospace",
                va="center",
                fontsize=8,
            )
        else:
            label = "RE model (REML), no PI (k < 3)" if pooled["k"] < 3 else "RE model (REML), no PI"
        axis.fill([lo, e, hi, e], [y, y + 0.3, y, y - 0.3], color="tab:red", zorder=3)
        left.text(0.0, y, label, **head)
        left.text(0.97, y, f"{int(studies['n'].sum()):,}", ha="right", **head)
        right.text(0.3, y, "100%", ha="right", **head)
        right.text(0.98, y, interval_text(pooled), ha="right", family="monospace", **head)
    else:
        left.text(0.0, y, "Two-stage: not estimated", **cell)
    y -= 1
    if hksj is not None:
        e, lo, hi = hksj["estimate"], hksj["ci_low"], hksj["ci_high"]
        axis.fill([lo, e, hi, e], [y, y + 0.25, y, y - 0.25], color="white", edgecolor="tab:red", zorder=3)
        left.text(0.0, y, "Knapp-Hartung (REML)", **cell)
        right.text(0.98, y, interval_text(hksj), ha="right", family="monospace", **cell)
        y -= 1
    if one_stage is not None:
        axis.plot([one_stage["ci_low"], one_stage["ci_high"]], [y, y], color="black", lw=1)
        axis.plot(one_stage["estimate"], y, "D", color="white", markeredgecolor="black", markersize=7)
        left.text(0.0, y, "One-stage mixed model", **cell)
        left.text(0.97, y, f"{int(one_stage['n_participants']):,}", ha="right", **cell)
        right.text(0.98, y, interval_text(one_stage), ha="right", family="monospace", **cell)
    else:
        left.text(0.0, y, "One-stage: not estimated", **cell)
    axis.axvline(0, color="grey", lw=0.8)
    axis.set_xlim(low, high)
    axis.set_yticks([])
    axis.spines[["top", "right", "left"]].set_visible(False)
    left_label, right_label = favours(term, spec)
    axis.set_xlabel("Standardized mean difference", fontsize=9)
    axis.text(
        0.0,
        -0.13,
        f"\u2190 {left_label}",
        transform=axis.transAxes,
        ha="left",
        va="top",
        fontsize=8,
        gid="favours-left",
    )
    axis.text(
        1.0,
        -0.13,
        f"{right_label} \u2192",
        transform=axis.transAxes,
        ha="right",
        va="top",
        fontsize=8,
        gid="favours-right",
    )
    lines = []
    if pooled is not None:
        lines.append(heterogeneity_text(pooled))
        test = f"Test for overall effect: {overall_test(pooled)}"
        lines.append(
            test + (f"; Knapp-Hartung: {overall_test(hksj)}" if hksj is not None else "; Knapp-Hartung not computed")
        )
    else:
        lines.append("Fewer than two studies: no meta-analysis")
    figure.text(0.02, 0.02, "\n".join(lines), fontsize=8.5, va="bottom", gid="heterogeneity")
    figure.suptitle(f"{outcome_label(outcome, spec)}: {contrast_label(term)}", fontsize=12, x=0.02, ha="left")
    return figure


class TextColumn:
    """Text laid out as in an axis of its own beside the plot (x from 0 to 1 across the column,
    y in the plot's data coordinates), without creating one: an Axes costs its ticks and their
    layout at every draw, about a third of a forest plot's drawing time."""

    def __init__(self, figure, box, axis):
        column = BboxTransformTo(TransformedBbox(box, figure.transFigure))
        self.figure, self.transform = figure, blended_transform_factory(column, axis.transData)

    def text(self, x: float, y: float, text: str, **properties):
        return self.figure.text(x, y, text, transform=self.transform, **properties)


def axis_limits(studies: pd.DataFrame, *rows: pd.Series | None) -> tuple[float, float]:
    """x-axis from the confidence intervals and 0, with 5% padding on each side. Not the
    prediction interval, which can be far wider (t(1) = 12.7 SEs with three studies)."""
    ends = [0.0, *studies["ci_low"], *studies["ci_high"]]
    for row in rows:
        if row is not None:
            ends += [row["ci_low"], row["ci_high"]]
    ends = np.array(ends, dtype=float)
    ends = ends[np.isfinite(ends)]
    low, high = float(ends.min()), float(ends.max())
    if high - low == 0:  # no interval at all: a unit axis around 0
        return -1.0, 1.0
    pad = 0.05 * (high - low)
    return low - pad, high + pad


def draw_prediction_interval(axis, low: float, high: float, y: float, limits: tuple[float, float]) -> None:
    """Dotted line through the diamond's row, clipped to the axis; an end beyond it gets an
    arrow head at the axis edge."""
    left, right = limits
    axis.plot(
        [max(low, left), min(high, right)],
        [y, y],
        color="tab:red",
        lw=1.2,
        ls="--",
        zorder=2,
        gid="prediction-interval",
    )
    for side, beyond, edge, marker in (("low", low < left, left, "<"), ("high", high > right, right, ">")):
        if beyond:
            axis.plot(edge, y, marker, color="tab:red", markersize=6, clip_on=False, gid=f"pi-clipped-{side}")


def pooled_weights(studies: pd.DataFrame, tau2: float) -> np.ndarray:
    """Random-effects weights in percent, 1 / (SE^2 + tau^2) normalized, as metafor's weights()."""
    inverse = 1.0 / (studies["se"].to_numpy(dtype=float) ** 2 + tau2)
    return 100 * inverse / inverse.sum()


def flow_counts(flow: pd.DataFrame, study: str) -> dict[tuple[str, str], dict[str, int | None]]:
    """(stage, reason) -> {"IPS", "SAU", "total"} as integers, for one study or "all". Blank
    reasons read back as NaN and counts as floats (a column with blanks), so both are fixed
    here; suppressed counts ("<5") stay text."""
    rows = flow[flow["study"] == study]
    out = {}
    for row in rows.to_dict("records"):
        reason = "" if missing(row["reason"]) else str(row["reason"])
        out[(row["stage"], reason)] = {arm: whole(row[arm]) for arm in ("IPS", "SAU", "total")}
    return out


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def whole(value):
    if isinstance(value, str):
        return value
    return None if missing(value) else int(value)


# The outcome columns of the diagram's table: why participants who reached the outcome's stage
# were left out (flow.tsv's reasons, in the order they apply), then those analysed.
FLOW_COLUMNS = (
    ("O: not collected", "outcome not measured in this study", "Not measured\nin the study"),
    ("O: excluded", "no baseline score", "No baseline\nscore"),
    ("O: excluded", "no follow-up score", "No follow-up\nscore"),
    ("O: analysable", "baseline, follow-up and employment known", "Analysed"),
)
ARM_NAMES = {"IPS": "IPS", "SAU": "usual services"}
FLOW_WIDTH = 9.0  # inches: shown at this size in the report, so 9-pt text reads as 9 pt


def flow_figure(flow: pd.DataFrame, stem: Path, study: str = "all", outcomes: dict | None = None, **saving) -> None:
    """flow_diagram saved in each format (`saving`: formats and dpi, as for save)."""
    save(flow_diagram(flow, study, outcomes), stem, **saving)


def flow_diagram(flow: pd.DataFrame, study: str = "all", outcomes: dict | None = None) -> plt.Figure:
    """CONSORT 2010 / PRISMA-IPD diagram for one study (or "all"). Per arm a chain of boxes, each
    the one above minus the exclusion beside the arrow between them: allocated, followed up,
    followed up with employment known; employment ascertainment of all allocated as a branch of
    its own; then a table per outcome of those excluded (by reason, in words) and analysed."""
    counts = flow_counts(flow, study)
    names = list(dict.fromkeys(s.split(":")[0] for s, _ in counts if ":" in s))
    names.sort(key=lambda name: list(outcomes or {}).index(name) if name in (outcomes or {}) else len(names))
    height = 5.5 + 0.3 * max(len(names) - 1, 0)
    figure = plt.figure(figsize=(FLOW_WIDTH, height))
    axis = figure.add_axes((0, 0, 1, 1))
    axis.set_xlim(0, FLOW_WIDTH)
    axis.set_ylim(0, height)
    axis.axis("off")

    def n(stage, reason, arm):
        value = counts.get((stage, reason), {}).get(arm)
        return "-" if value is None else f"{value:,}" if isinstance(value, int) else value

    def box(x, y, text, gid, colour="#e8f0fa", edge="#4a6fa5", ha="center"):
        style = {"boxstyle": "round,pad=0.35", "fc": colour, "ec": edge}
        axis.text(x, y, text, ha=ha, va="center", fontsize=9, bbox=style, gid=gid)

    def arrow(start, end, dashed=False):
        props = {"arrowstyle": "->", "color": "#555555", "linestyle": "--" if dashed else "-"}
        axis.annotate("", xy=end, xytext=start, arrowprops=props)

    exclusion = {"colour": "#fbeaea", "edge": "#b05050", "ha": "left"}
    top = height - 0.35
    randomized = ("randomized participants", "unique participant ids in the participants table")
    box(FLOW_WIDTH / 2, top, f"Randomized (n = {n(*randomized, 'total')})", "randomized")
    for half, arm in enumerate(("IPS", "SAU")):
        x = 1.0 + half * FLOW_WIDTH / 2  # the chain's centre; exclusions to its right
        side = x + 0.95
        rows = (top - 0.85, top - 2.05, top - 3.25)
        arrow((FLOW_WIDTH / 2, top - 0.2), (x, rows[0] + 0.25))
        box(x, rows[0], f"Allocated to\n{ARM_NAMES[arm]}\n(n = {n(*randomized, arm)})", f"allocated-{arm}")
        arrow((x + 0.62, rows[0]), (side, rows[0]), dashed=True)
        known, unknown = n("employment known", "", arm), n("employment unknown", "records cannot tell", arm)
        box(
            side,
            rows[0],
            f"Employment ascertained:\nknown (n = {known}),\nunknown (n = {unknown})",
            f"ascertained-{arm}",
            colour="#f2f2f2",
            edge="#888888",
            ha="left",
        )
        lost = n("without a follow-up assessment", "no follow-up assessment in the window", arm)
        unknown = n("followed up, employment unknown", "records cannot tell", arm)
        for (upper, lower), text, gid in (
            (rows[:2], f"No follow-up assessment\nin the window\n(n = {lost})", f"lost-{arm}"),
            (rows[1:], f"Employment during\nfollow-up unknown\n(n = {unknown})", f"unknown-{arm}"),
        ):
            middle = (upper + lower) / 2 - 0.12  # clear of the ascertainment box
            arrow((x, upper - 0.35), (x, lower + 0.25))
            arrow((x, middle), (side, middle))
            box(side, middle, text, gid, **exclusion)
        box(x, rows[1], f"Followed up (n = {n('with a follow-up assessment', '', arm)})", f"followed-{arm}")
        box(
            x,
            rows[2],
            f"Followed up, employment\nknown (n = {n('followed up, employment known', '', arm)})",
            f"known-{arm}",
        )
        arrow((x, rows[2] - 0.3), (x, rows[2] - 0.65))
    outcome_table(axis, counts, names, outcomes or {}, n, top - 4.05)
    title = "all studies" if study == "all" else f"study {study}"
    axis.text(0.1, top, f"Participant flow,\n{title}", fontsize=10, va="center", weight="bold", gid="title")
    return figure


def outcome_table(axis, counts: dict, names: list[str], outcomes: dict, n, top: float) -> None:
    """Per outcome and arm: those of the box above excluded by each reason, and those analysed."""
    width, gap = 0.86, 0.2
    label_width = FLOW_WIDTH - 8 * width - gap - 0.1
    axis.text(0.1, top - 0.25, "Outcome", fontsize=9, weight="bold", va="center")
    for half, arm in enumerate(("IPS", "SAU")):
        start = label_width + half * (4 * width + gap)
        axis.text(start + 2 * width, top + 0.05, ARM_NAMES[arm], fontsize=9, weight="bold", ha="center")
        axis.plot([start + 0.05, start + 4 * width - 0.05], [top - 0.02] * 2, color="#555555", lw=0.8)
        for column, (_, _, header) in enumerate(FLOW_COLUMNS):
            axis.text(start + (column + 0.9) * width, top - 0.25, header, fontsize=9, ha="right", va="center")
    axis.plot([0.1, FLOW_WIDTH - 0.1], [top - 0.5] * 2, color="#555555", lw=0.8)
    for row, name in enumerate(names):
        y = top - 0.7 - 0.3 * row
        axis.text(0.1, y, outcome_label(name, outcomes.get(name)), fontsize=9, va="center", gid=f"outcome-{row}")
        for half, arm in enumerate(("IPS", "SAU")):
            start = label_width + half * (4 * width + gap)
            for column, (stage, reason, _) in enumerate(FLOW_COLUMNS):
                key = (stage.replace("O", name, 1), reason)
                axis.text(
                    start + (column + 0.9) * width,
                    y,
                    n(*key, arm) if key in counts else "-",
                    fontsize=9,
                    ha="right",
                    va="center",
                    family="monospace",
                    gid=f"cell-{name}-{arm}-{column}",
                )


def status_figure(status: pd.DataFrame, stem: Path, **saving) -> None:
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
    save(figure, stem, **saving)


def distributions_figure(counts: list[dict], study: str) -> plt.Figure:
    """One panel per variable: raw values after missing codes (grey) against harmonized values
    (blue), from the counts the harmonization job wrote (ipdpool.harmonize.audit)."""
    panels: dict[str, list[dict]] = {}
    for row in counts:
        panels.setdefault(row["variable"], []).append(row)
    columns = 4
    rows = max(1, math.ceil(len(panels) / columns))
    height = 3.0 * rows + 0.4
    # Fixed margins instead of tight_layout, which measured every tick label (half the drawing time):
    # the grid is regular and category labels are wrapped to at most two lines of 12 characters.
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, height), squeeze=False)
    figure.subplots_adjust(
        left=0.04, right=0.99, top=1 - 1.1 / height, bottom=1.0 / height, wspace=0.25, hspace=1.3 / 1.7
    )
    for axis, (variable, panel) in zip(axes.flat, panels.items()):
        sides = {side: [row for row in panel if row["side"] == side] for side in ("raw", "harmonized")}
        if panel[0]["kind"] == "categories":
            _bars(axis, sides["raw"], sides["harmonized"])
        else:
            _histograms(axis, sides["raw"], sides["harmonized"])
        axis.set_title(variable, fontsize=9)
        axis.tick_params(labelsize=8)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    figure.suptitle(f"{study}: raw and harmonized values; missing excluded", fontsize=11)
    handles = [
        matplotlib.patches.Patch(color="0.6", label="raw, as delivered (after missing-value codes)"),
        matplotlib.patches.Patch(color="tab:blue", label="harmonized"),
    ]
    figure.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.45 / height), ncol=2, fontsize=9)
    return figure


def _bars(axis, raw: list[dict], harmonized: list[dict]) -> None:
    labels = [row["category"] for row in raw] + ([""] if raw else []) + [row["category"] for row in harmonized]
    axis.bar(np.arange(len(raw)), [int(row["count"]) for row in raw], color="0.6", label="raw")
    offset = len(raw) + 1 if raw else 0
    axis.bar(
        offset + np.arange(len(harmonized)),
        [int(row["count"]) for row in harmonized],
        color="tab:blue",
        label="harmonized",
    )
    axis.set_xticks(range(len(labels)))
    axis.set_xticklabels([category_label(label) for label in labels], rotation=60, ha="right", rotation_mode="anchor")


def category_label(label) -> str:
    """A category's label whole, wrapped to two lines; beyond 24 characters shortened with an
    ellipsis (the full value is in the harmonization summary)."""
    text = str(label)
    if len(text) > 24:
        text = text[:23] + "\u2026"
    if len(text) <= 12:
        return text
    lines = textwrap.wrap(text.replace("_", "_ "), 14, break_long_words=True)  # also break after "_"
    return "\n".join(line.replace("_ ", "_") for line in lines[:2])


def _histograms(axis, raw: list[dict], harmonized: list[dict]) -> None:
    for rows, colour, alpha, label in ((raw, "0.6", 0.7, "raw"), (harmonized, "tab:blue", 0.6, "harmonized")):
        if rows:
            edges = [float(rows[0]["bin_low"])] + [float(row["bin_high"]) for row in rows]
            axis.stairs([int(row["count"]) for row in rows], edges, fill=True, color=colour, alpha=alpha, label=label)
