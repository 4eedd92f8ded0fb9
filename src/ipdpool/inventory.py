"""Inventory of a study's raw files: what was read, its checksum and its shape.

This is the audit record of the inputs (no participant values, only counts and
hashes), and the first stage of the workflow.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .rawio import RawTable, read_table, sha256_of

INVENTORY_COLUMNS = ["study", "table", "file", "format", "sheet", "sha256", "bytes", "rows", "columns", "notes"]


def inventory_study(study_rules: dict) -> pd.DataFrame:
    """One row per table declared in the study's rule file, read with its native reader."""
    raw_dir = Path(study_rules["raw_dir"])
    tables = {
        name: read_table(study_rules["study"], name, spec, raw_dir) for name, spec in study_rules["tables"].items()
    }
    return inventory_of(study_rules, tables)


def inventory_of(study_rules: dict, tables: dict[str, RawTable]) -> pd.DataFrame:
    """The inventory of tables already read (the harmonization job's, so each file is read once)."""
    study = study_rules["study"]
    rows = []
    for name, spec in study_rules["tables"].items():
        table = tables[name]
        rows.append(
            {
                "study": study,
                "table": name,
                "file": spec["file"],
                "format": spec["format"],
                "sheet": spec.get("sheet", ""),
                "sha256": sha256_of(table.path),
                "bytes": table.path.stat().st_size,
                "rows": len(table.frame),
                "columns": table.frame.shape[1],
                "notes": "; ".join(table.notes + table.warnings),
            }
        )
    return pd.DataFrame(rows, columns=INVENTORY_COLUMNS)


def combine_inventories(paths: list[Path]) -> pd.DataFrame:
    frames = [pd.read_csv(p, sep="\t", dtype={"sheet": str, "notes": str}, keep_default_na=False) for p in paths]
    return pd.concat(frames, ignore_index=True).sort_values(["study", "table"], kind="stable").reset_index(drop=True)
