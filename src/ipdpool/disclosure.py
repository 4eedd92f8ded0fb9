"""Disclosure control for what leaves the project: small counts suppressed, and a share
folder that only ever receives aggregate outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from .figures import DEFAULT_FORMATS, PNG_DPI, flow_figure
from .summary import headline_summary
from .tables import read_table, write_table

# Count columns of each shareable table (file name -> columns).
COUNT_COLUMNS = {
    "flow.tsv": ["IPS", "SAU", "total"],
    "reconciliation.tsv": ["raw_participants", "pooled", "excluded", "difference"],
    "codebook.tsv": ["non_missing"],
    "per_study.tsv": ["n"],
    "aggregate_trials.tsv": ["n_ips", "n_sau"],
    "one_stage.tsv": ["n_participants"],
    "sensitivity.tsv": ["n_participants"],
}
SHAREABLE_SUFFIXES = (".tsv", ".png", ".svg")
# Aggregate, but with single participants' values (raw minima and maxima) and raw category
# labels: for the consortium, never for the share folder.
CONSORTIUM_ONLY = ("harmonization_summary.tsv",)


class ShareRefused(Exception):
    pass


def suppress_small_counts(frame: pd.DataFrame, columns: list[str], threshold: int) -> pd.DataFrame:
    """Counts from 1 to threshold - 1 become "<threshold" (DataSHIELD-style small-cell rule)."""
    out = frame.copy()
    for column in columns:
        if column in out:
            values = pd.to_numeric(out[column], errors="coerce")
            small = values.notna() & (values > 0) & (values < threshold)
            whole = values.where(values.isna() | (values % 1 != 0), values.round().astype("Int64").astype(object))
            out[column] = whole.astype(object).where(~small, f"<{threshold}")
    return out


def suppress_table1(frame: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """Table 1 under the small-cell rule: a count from 1 to threshold - 1 is suppressed with
    its percentage (which would give it back) and the other levels' counts; a mean and SD of fewer than threshold people
    are removed, as DataSHIELD's nfilter.tab and nfilter.glm do."""
    out = suppress_small_counts(frame, ["count"], threshold)
    small_count = out["count"].astype(str).str.startswith("<")
    # The other levels of the same characteristic would give a suppressed count back (n minus
    # their sum): they are withheld too.
    group = out.groupby(["study", "arm", "characteristic"], sort=False)["count"].transform(
        lambda c: c.astype(str).str.startswith("<").any()
    )
    out["count"] = out["count"].where(~(group & ~small_count), "suppressed")
    out["percent"] = out["percent"].astype(object).where(~group, None)
    n = pd.to_numeric(frame["n"], errors="coerce")
    few = n.notna() & (n > 0) & (n < threshold)
    for column in ("mean", "sd", "percent"):
        out[column] = out[column].astype(object).where(~few, None)
    out["n"] = suppress_small_counts(frame, ["n"], threshold)["n"]
    return out


def is_participant_level(path: Path) -> bool:
    """Harmonized data (Parquet, CSV, anything in a harmonized folder but the codebook), the
    per-study distribution plots, the harmonization summaries, and any file type not known to be aggregate."""
    path = Path(path)
    in_harmonized = "harmonized" in path.parts and path.name != "codebook.tsv"
    per_participant = path.stem == "distributions" or path.name in CONSORTIUM_ONLY
    return (
        path.suffix in (".parquet", ".csv") or in_harmonized or per_participant or path.suffix not in SHAREABLE_SUFFIXES
    )


def collect_shareable(
    sources: list[Path], out_dir: Path, threshold: int, formats=DEFAULT_FORMATS, dpi=PNG_DPI
) -> list[Path]:
    """Copy aggregate outputs into out_dir with small counts suppressed; refuse anything
    participant-level (naming it) before writing a single file. The participant flow is
    redrawn from the suppressed counts, in `formats`."""
    refused = [str(p) for p in sources if is_participant_level(Path(p))]
    if refused:
        raise ShareRefused(f"participant-level files cannot be shared: {', '.join(refused)}")
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    written = []
    for source in map(Path, sources):
        kind = "tables" if source.suffix == ".tsv" else "figures"
        target = (
            out_dir
            / kind
            / (source.name if "forest" not in source.parts else f"forest_{source.parent.name}_{source.name}")
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.name == "table1.tsv":
            write_table(suppress_table1(read_table(source), threshold), target)
        elif source.name in COUNT_COLUMNS:
            write_table(suppress_small_counts(read_table(source), COUNT_COLUMNS[source.name], threshold), target)
        elif source.suffix == ".tsv":
            shutil.copyfile(source, target)
        elif source.name.startswith("participant_flow"):
            continue  # redrawn below from the suppressed counts
        else:
            shutil.copyfile(source, target)
        written.append(target)
    tables = out_dir / "tables"
    if (tables / "flow.tsv").exists():
        flow_figure(read_table(tables / "flow.tsv"), out_dir / "figures" / "participant_flow", formats=formats, dpi=dpi)
        written += [out_dir / "figures" / f"participant_flow.{suffix}" for suffix in formats]
    if all((tables / name).exists() for name in ("one_stage.tsv", "two_stage.tsv", "replication.tsv")):
        summary = headline_summary(
            read_table(tables / "one_stage.tsv"),
            read_table(tables / "two_stage.tsv"),
            read_table(tables / "replication.tsv"),
            read_table(tables / "sensitivity.tsv") if (tables / "sensitivity.tsv").exists() else None,
        )
        (out_dir / "summary.md").write_text(summary, encoding="utf-8")
        written.append(out_dir / "summary.md")
    return written
