"""Result tables as tidy TSV, written the same way every time (byte-identical reruns)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# A spreadsheet program runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def _guarded(value):
    """Text that a spreadsheet would run as a formula, prefixed with ' so that it stays text;
    numbers (also negative numbers written as text) are left alone. A carriage return becomes a
    line feed: the writers end lines with \n, so a bare \r would not be quoted and would start a new row."""
    if not isinstance(value, str):
        return value
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    if not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def formula_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every text cell safe to open in a spreadsheet; numeric columns untouched."""
    text = [
        c
        for c in frame.columns
        if not pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_datetime64_any_dtype(frame[c])
    ]
    if not text:
        return frame
    guarded = frame.copy()
    for column in text:
        guarded[column] = frame[column].map(_guarded, na_action="ignore").astype(frame[column].dtype)
    return guarded


def write_table(frame: pd.DataFrame, path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    formula_safe(frame).to_csv(path, sep="\t", index=False, lineterminator="\n", float_format="%.10g")


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""])
