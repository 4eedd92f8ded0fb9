"""The common schema (config/schema.yaml): column order, types and its pandera check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # pandera is imported where a frame is validated: reading the schema is every job's work
    import pandera.pandas as pa

from .. import yamlfile
from .problems import identifier_like

OUTCOME_PARTS = ("bl", "fu", "instrument", "bl_z", "fu_z")


def load_schema(path: Path) -> dict:
    return yamlfile.load(path)


def outcome_columns(outcome: str) -> list[str]:
    return [f"{outcome}_{part}" for part in OUTCOME_PARTS]


def columns(schema: dict) -> list[str]:
    return list(schema["variables"]) + [c for o in schema["outcomes"] for c in outcome_columns(o)]


def column_types(schema: dict) -> dict[str, str]:
    types = {name: spec["type"] for name, spec in schema["variables"].items()}
    for outcome in schema["outcomes"]:
        types.update(
            {
                f"{outcome}_bl": "float",
                f"{outcome}_fu": "float",
                f"{outcome}_instrument": "string",
                f"{outcome}_bl_z": "float",
                f"{outcome}_fu_z": "float",
            }
        )
    return types


PANDAS_TYPES = {"string": "string", "category": "string", "float": "float64", "integer": "Int64"}


def conform(frame: pd.DataFrame, schema: dict) -> pd.DataFrame:
    """Columns in schema order with the schema's pandas types."""
    types = column_types(schema)
    return pd.DataFrame(
        {
            c: frame[c].astype(PANDAS_TYPES[types[c]])
            if c in frame
            else pd.Series(index=frame.index, dtype=PANDAS_TYPES[types[c]])
            for c in types
        }
    )


def pandera_schema(schema: dict, outcome_ranges: dict[str, tuple[float, float]] | None = None) -> pa.DataFrameSchema:
    """Types, allowed values, ranges and the uniqueness of participant_id; outcome
    scores are checked against each study's declared instrument range."""
    import pandera.pandas as pa

    checks = {}
    for name, spec in schema["variables"].items():
        column_checks = []
        if "allowed" in spec:
            column_checks.append(pa.Check.isin(spec["allowed"]))
        if "range" in spec:
            column_checks.append(pa.Check.in_range(*spec["range"]))
        if "pattern" in spec:
            column_checks.append(pa.Check.str_matches(spec["pattern"]))
        checks[name] = pa.Column(
            PANDAS_TYPES[spec["type"]],
            column_checks,
            nullable=spec.get("nullable", False),
            unique=name == "participant_id",
        )
    for outcome in schema["outcomes"]:
        limits = (outcome_ranges or {}).get(outcome)
        score_checks = [pa.Check.in_range(*limits)] if limits else []
        checks[f"{outcome}_bl"] = pa.Column("float64", score_checks, nullable=True)
        checks[f"{outcome}_fu"] = pa.Column("float64", score_checks, nullable=True)
        checks[f"{outcome}_instrument"] = pa.Column("string", nullable=True)
        checks[f"{outcome}_bl_z"] = pa.Column("float64", nullable=True)
        checks[f"{outcome}_fu_z"] = pa.Column("float64", nullable=True)
    return pa.DataFrameSchema(checks, strict=True, ordered=True)


def schema_failures(frame: pd.DataFrame, checker: pa.DataFrameSchema) -> list[str]:
    """Readable failure descriptions (empty when the frame conforms)."""
    import pandera.pandas as pa

    try:
        checker.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        out = []
        for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=True):
            why = identifier_like(column, frame[column]) if column in frame else None
            shown = (
                f"{len(group)} failing values not shown ({why})"
                if why
                else ", ".join(repr(v) for v in group["failure_case"].head(5))
            )
            rows = ", ".join(str(int(i) + 1) for i in group["index"].dropna().head(5))
            out.append(
                f"column {column}: fails {check}: {shown}" + (f" (participants {rows} in file order)" if rows else "")
            )
        return out
    return []
