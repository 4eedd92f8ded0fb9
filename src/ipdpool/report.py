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
        f'<table id="{table_id}">{title}<thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(body)
        + "\n</tbody></table>"
    )


def page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def download_link(path: Path) -> str:
    """The table's TSV embedded as a data URI (the report is one self-contained file)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f'<a download="{Path(path).name}" href="data:text/tab-separated-values;base64,{data}">'
        f"Download {Path(path).name}</a>"
    )


def table_page(source: Path, title: str, frame: pd.DataFrame | None = None) -> str:
    """One result table as a page: title, row count, TSV download, the table."""
    from .tables import read_table

    frame = read_table(source) if frame is None else frame
    note = f'<p class="note">{len(frame):,} rows. {download_link(source)}</p>'
    return page(title, f"<h2>{html.escape(title)}</h2>\n{note}\n{table_html(frame)}")


IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}


def image_tag(path: Path, alt: str, width: str = "100%") -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    kind = IMAGE_TYPES[Path(path).suffix]
    return f'<img alt="{html.escape(alt)}" style="width: {width}; max-width: none;" src="data:{kind};base64,{data}">'


def landing_html(headline: pd.DataFrame, introduction: list[str], flow_figure: Path) -> str:
    """The report's first page, inserted into its workflow description: what the numbers are
    (`ipdpool.summary.introduction`), the headline table by contrast, then the pooled participant
    flow (a fragment, not a page: the report's own page holds it)."""
    parts = [
        '<div id="ipdpool-headline">',
        '<meta charset="utf-8">',
        f"<style>#ipdpool-headline table {{ font-size: 12px; margin-bottom: 1em; }} {HEADLINE_STYLE}</style>",
        "<h2>Results</h2>",
        f'<p class="note">{html.escape(" ".join(introduction))}</p>',
    ]
    for contrast, rows in headline.groupby("contrast", sort=False):
        optional = ("published", "true (demo)", "MI one-stage (FMI)")
        columns = [c for c in headline.columns[1:] if c not in optional or rows[c].ne("").any()]
        parts.append(
            table_html(
                rows[columns].reset_index(drop=True),
                caption=contrast[0].upper() + contrast[1:],
                table_id=f"headline-{len(parts)}",
            )
        )
    # wider than the report's narrow text column, so that the boxes can be read
    parts += [
        "<h2>Participant flow</h2>",
        image_tag(flow_figure, "Participant flow, all studies", width="56rem"),
        "</div>",
    ]
    return "\n".join(parts) + "\n"


HEADLINE_STYLE = (
    "#ipdpool-headline th, #ipdpool-headline td { padding: 2px 6px; border-bottom: 1px solid #ddd; text-align: left; }"
)
# The report's categories, linked from its first page (rst targets that Snakemake defines).
SECTIONS = [
    "Summary",
    "Data and harmonization",
    "One-stage models",
    "Forest plots",
    "Two-stage and aggregate data",
    "Sensitivity",
    "Replication",
]


def landing_rst(description: str, html_path: str) -> str:
    """The report's first page: the headline fragment, links into each section, then the
    workflow's own description (Jinja and rst as Snakemake renders them)."""
    links = ", ".join(f"`{section}`_" for section in SECTIONS)
    return f".. raw:: html\n   :file: {html_path}\n\nSections: {links}.\n\n{description}"
