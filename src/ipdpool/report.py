"""HTML for Snakemake's report: every result table as a readable page, and the landing page
with the headline results and the participant flow.

datavzrd, Snakemake's convention for tables in reports, is a Rust program distributed through
bioconda and crates.io, neither of which this project's machines reach (nor does PyPI carry
it), so tables are rendered here as plain styled HTML: no JavaScript, no external resources,
identical bytes for identical tables. Each page carries its TSV as a download link.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 14px; margin: 1em; color: #222; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
th { background: #f0f3f7; position: sticky; top: 0; }
td.number { text-align: right; }
tr:hover td { background: #fafcff; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; }
p.note { color: #555; max-width: 60em; }
/* A wide tidy table shrinks to the window (cells wrap anywhere) rather than scroll sideways. */
table.tidy { width: 100%; font-size: 12px; }
table.tidy th, table.tidy td { overflow-wrap: anywhere; padding: 2px 4px; }
"""


def cell(value) -> str:
    """Numbers with four significant digits (integers whole), text escaped, missing as blank."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return html.escape(str(value))


def table_html(frame: pd.DataFrame, caption: str = "", table_id: str = "table") -> str:
    """A DataFrame as an HTML table; numeric columns right-aligned."""
    numeric = {
        c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    }
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = "".join(
            f'<td class="number">{cell(v)}</td>' if c in numeric else f"<td>{cell(v)}</td>"
            for c, v in zip(frame.columns, row)
        )
        body.append(f"<tr>{cells}</tr>")
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (
        f'<table id="{table_id}" class="tidy">{title}<thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(body)
        + "\n</tbody></table>"
    )


def page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


DOWNLOAD_TYPES = {".tsv": "text/tab-separated-values", ".tex": "application/x-tex"}


def download_link(path: Path) -> str:
    """A table's file (TSV, LaTeX) embedded as a data URI (the report is one self-contained file)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    kind = DOWNLOAD_TYPES.get(Path(path).suffix, "text/plain")
    return f'<a download="{Path(path).name}" href="data:{kind};base64,{data}">Download {Path(path).name}</a>'


def table_page(source: Path, title: str, frame: pd.DataFrame | None = None) -> str:
    """One result table as a page: title, row count, TSV download, the table."""
    from .tables import read_table

    frame = read_table(source) if frame is None else frame
    note = f'<p class="note">{len(frame):,} rows. {download_link(source)}</p>'
    return page(title, f"<h2>{html.escape(title)}</h2>\n{note}\n{table_html(frame)}")


IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}


def image_tag(path: Path, alt: str, style: str = "width: 100%") -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    kind = IMAGE_TYPES[Path(path).suffix]
    return f'<img alt="{html.escape(alt)}" style="{style}" src="data:{kind};base64,{data}">'


# Snakemake's report shows the first page in a 32rem column beside its rule graph, vertically
# centred (which cuts off the top of a long page). The first page takes the whole width and
# starts at the top; the rule graph shows on a page of its own (the "Rule graph" link).
LANDING_STYLE = """
div.h-screen:has(#ipdpool-headline) { align-items: flex-start; justify-content: flex-start; }
div.prose:has(#ipdpool-headline) { max-width: none; }
body:not(.ipdpool-rulegraph) #rulegraph { display: none; }
body.ipdpool-rulegraph div.prose:has(#ipdpool-headline) .document > :not(#ipdpool-nav) { display: none; }
#ipdpool-headline h2 { margin: 0.6em 0 0.3em; }
#ipdpool-headline p.note { margin: 0.2em 0 0.6em; max-width: 62em; }
#ipdpool-headline table { font-size: 12.5px; margin: 0 0 0.4em; border-collapse: collapse; }
#ipdpool-headline caption { text-align: left; font-weight: 600; padding: 2px 0; }
#ipdpool-headline th, #ipdpool-headline td { padding: 2px 7px; border-bottom: 1px solid #ddd; text-align: left; }
#ipdpool-headline td { white-space: nowrap; }
#ipdpool-headline td.flagged { color: #a33; font-weight: 600; }
#ipdpool-headline ol.footnotes { font-size: 12px; margin: 0 0 1em; color: #444; }
"""
NAV_STYLE = "#ipdpool-nav { margin: 0 0 0.4em; font-size: 13px; }"


def headline_fragment(rows: pd.DataFrame, caption: str, table_id: str) -> str:
    """One contrast's headline table (flagged rows marked) and its numbered footnotes."""
    from .summary import footnotes, shown_columns

    columns = shown_columns(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows.to_dict("records"):
        cells = "".join(
            f'<td class="flagged">{html.escape(row[c])}</td>'
            if c == "agreement" and row["notes"]
            else f"<td>{html.escape(row[c])}</td>"
            for c in columns
        )
        body.append(f"<tr>{cells}</tr>")
    notes = "".join(f"<li>{html.escape(outcome)}: {html.escape(note)}.</li>" for _, outcome, note in footnotes(rows))
    return (
        f'<table id="{table_id}"><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead><tbody>'
        + "".join(body)
        + "</tbody></table>"
        + (f'<ol class="footnotes">{notes}</ol>' if notes else "")
    )


def landing_html(headline: pd.DataFrame, introduction: list[str], flow_figure: Path) -> str:
    """The report's first page, inserted into its workflow description: what the numbers are
    (`ipdpool.summary.introduction`), the headline table by contrast with heterogeneity and
    agreement flags, then the pooled participant flow at its own size (its text is 9 pt there;
    a fragment, not a page: the report's own page holds it)."""
    parts = [
        '<div id="ipdpool-headline">',
        '<meta charset="utf-8">',
        f"<style>{LANDING_STYLE}</style>",
        "<h2>Results</h2>",
        f'<p class="note">{html.escape(" ".join(introduction))}</p>',
    ]
    if headline["MI one-stage (FMI)"].ne("").any():
        # the MI column would push the table past a laptop's width: summary.md and the MI page carry it
        headline = headline.assign(**{"MI one-stage (FMI)": ""})
        parts.append(
            '<p class="note">Estimates after multiple imputation, with their FMI: results/summary.md and '
            "the Sensitivity pages (multiple imputation, tipping point).</p>"
        )
    for number, (contrast, rows) in enumerate(headline.groupby("contrast", sort=False)):
        parts.append(headline_fragment(rows, contrast[0].upper() + contrast[1:], f"headline-{number}"))
    width = flow_width(flow_figure)
    parts += [
        "<h2>Participant flow</h2>",
        image_tag(flow_figure, "Participant flow, all studies", style=f"width: {width}px; max-width: 100%"),
        "</div>",
    ]
    return "\n".join(parts) + "\n"


def flow_width(figure: Path) -> int:
    """The CSS width of an SVG drawn in points (96 px per 72 pt): its own size."""
    import re

    match = re.search(rb'<svg[^>]*\swidth="([\d.]+)pt"', Path(figure).read_bytes())
    return round(float(match.group(1)) * 96 / 72) if match else 864


# The report's categories, linked from its first page (rst targets that Snakemake defines).
SECTIONS = [
    "Summary",
    "Data and harmonization",
    "One-stage models",
    "Forest plots",
    "Two-stage and aggregate data",
    "Sensitivity",
    "Replication",
    "Causal analysis",
]
RULE_GRAPH_LINK = (
    '<div id="ipdpool-nav"><style>' + NAV_STYLE + "</style>"
    "<a href=\"javascript:document.body.classList.add('ipdpool-rulegraph')\">Rule graph</a>"
    " (own page; "
    "<a href=\"javascript:document.body.classList.remove('ipdpool-rulegraph')\">back to the results</a>)</div>"
)


def landing_rst(description: str, html_path: str) -> str:
    """The report's first page: the headline fragment, links into each section, then the
    workflow's own description (Jinja and rst as Snakemake renders them)."""
    links = ", ".join(f"`{section}`_" for section in SECTIONS)
    return (
        f".. raw:: html\n\n   {RULE_GRAPH_LINK}\n\n"
        f".. raw:: html\n   :file: {html_path}\n\nSections: {links}.\n\n{description}"
    )
