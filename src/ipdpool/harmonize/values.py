"""Turning raw cells into numbers, dates, codes and ids, vectorized over unique values."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

import numpy as np
import pandas as pd


def code_key(value) -> str | None:
    """Canonical text of a code so that 1, 1.0 and "1" compare equal; None for missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value).strip()


def unique_values(series: pd.Series) -> tuple[np.ndarray, list]:
    """(codes, distinct values): codes index the values, and -1 (missing) picks the None appended last."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes, list(uniques) + [None]


def spread(series: pd.Series, codes: np.ndarray, mapped: list) -> pd.Series:
    """Values computed per distinct value (`mapped`, indexed by `codes`) back on every row of `series`."""
    return pd.Series(np.array(mapped, dtype=object)[codes], index=series.index, dtype=object)


def key_list(uniques: list) -> list:
    """code_key of each value; text, the most common value (every CSV cell), stripped inline."""
    return [u.strip() if type(u) is str else code_key(u) for u in uniques]


def code_keys(series: pd.Series) -> pd.Series:
    codes, uniques = unique_values(series)
    return spread(series, codes, key_list(uniques))


# Numeric text as a trial's files write it: optional sign, digits with one decimal mark, optional exponent.
# Not float(): it also takes "nan", "inf", "2_5" (as 25) and " 1e400" (as inf). Thousands separators are
# refused too: "1,234" and "1.234" mean different numbers in different countries.
PLAIN_NUMBER = {
    ".": re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"),
    ",": re.compile(r"[+-]?(?:[0-9]+(?:,[0-9]*)?|,[0-9]+)(?:[eE][+-]?[0-9]+)?"),
}


def strict_number(text: str, decimal: str = ".") -> float | None:
    """The finite number `text` writes with decimal mark `decimal`, or None: the one parser of numeric text."""
    text = text.strip()
    if not text.isascii() or not PLAIN_NUMBER[decimal].fullmatch(text):
        return None
    number = float(text.replace(",", ".") if decimal == "," else text)
    return number if np.isfinite(number) else None  # 1e400 overflows to inf


def _number(value, decimal: str):
    if value is None:
        return np.nan
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        # A reader's NaN is an empty cell (system-missing); an infinite number is not a measurement.
        return float(value) if not np.isinf(value) else None
    text = str(value).strip()
    if text == "":
        return np.nan  # a blank cell is missing, not malformed
    return strict_number(text, decimal)  # None: unparseable


def parse_numbers(series: pd.Series, decimal: str = ".") -> tuple[pd.Series, pd.Series]:
    """Numbers from cells; returns (values, mask of non-empty cells that did not parse)."""
    codes, uniques = unique_values(series)
    parsed = [_number(u, decimal) for u in uniques]  # None: did not parse
    values = np.array([np.nan if v is None else v for v in parsed], dtype=float)
    unparseable = np.array([v is None for v in parsed], dtype=bool)
    return pd.Series(values[codes], index=series.index), pd.Series(unparseable[codes], index=series.index)


def _date(value, date_format: str | None):
    if value is None:
        return pd.NaT
    if isinstance(value, pd.Timestamp):
        return value.normalize()
    if isinstance(value, (dt.datetime, dt.date)):
        return pd.Timestamp(value).normalize()
    if str(value).strip() == "":
        return pd.NaT  # a blank cell is missing, not malformed
    if date_format is None:
        return None
    try:
        return pd.Timestamp(dt.datetime.strptime(str(value).strip(), date_format))
    except ValueError:
        return None


def parse_dates(series: pd.Series, date_format: str | None) -> tuple[pd.Series, pd.Series]:
    """Dates from date cells or text in `date_format`; returns (dates, mask of cells that did not parse)."""
    codes, uniques = unique_values(series)
    parsed = [_date(u, date_format) for u in uniques]  # None: did not parse
    dates = pd.to_datetime(pd.Series([pd.NaT if d is None else d for d in parsed], dtype=object)).to_numpy()
    unparseable = np.array([d is None for d in parsed], dtype=bool)
    return pd.Series(dates[codes], index=series.index), pd.Series(unparseable[codes], index=series.index)


INTEGER_ID = re.compile(r"[+-]?[0-9]+(?:\.0*)?")


def format_id(text: str, id_format: dict) -> str | None:
    """A table's written id turned into the form shared by all tables (see `id_format` in the rule file);
    None when `extract` does not match."""
    text = {"upper": text.upper(), "lower": text.lower()}.get(id_format.get("case"), text)
    if "extract" in id_format:
        match = re.search(id_format["extract"], text)
        if match is None:
            return None
        text = match.group(1) if match.groups() else match.group(0)
    if "remove_prefix" in id_format:
        text = text.removeprefix(id_format["remove_prefix"])
    if "remove_suffix" in id_format:
        text = text.removesuffix(id_format["remove_suffix"])
    text = text.strip()
    if id_format.get("strip_zeros"):
        text = text.lstrip("0") or ("0" if text else "")
    if "pad_zeros" in id_format:
        text = text.zfill(id_format["pad_zeros"])
    return text


def integer_id(key: str) -> str:
    """An integer id's canonical digits, or "" when `key` is not an integer. Parsed from the digits, never
    through float, so long ids stay exact; plain ASCII digits (most ids) need no parse at all."""
    if key.isascii() and key.isdigit():
        return key.lstrip("0") or "0"
    return str(int(key.split(".")[0])) if INTEGER_ID.fullmatch(key) else ""


def normalize_ids(series: pd.Series, id_type: str, id_format: dict | None = None) -> tuple[pd.Series, pd.Series]:
    """Participant ids as canonical text; returns (ids, mask of ids that are not valid for id_type)."""
    codes, uniques = unique_values(series)
    keys = [None if key == "" else key for key in key_list(uniques)]
    if id_format:
        keys = [key if key is None else (format_id(key, id_format) or "") for key in keys]
    if id_type != "text":
        keys = [key if not key else integer_id(key) for key in keys]
    bad = np.array([not key for key in keys])
    return spread(series, codes, [None if not key else key for key in keys]), pd.Series(bad[codes], index=series.index)


def id_shape(text: str) -> str:
    """An id's shape: digits as 9, letters as A ("FI-001" -> "AA-999"): how ids are written, not which."""
    return re.sub(r"[^\W\d_]", "A", re.sub(r"\d", "9", text))


def common_shapes(values: pd.Series, show: int = 2) -> str:
    """The commonest id shapes of `values`, for messages that must not show the ids themselves."""
    counts = Counter(id_shape(v) for v in code_keys(values).dropna() if v != "")
    return " or ".join(f"`{s}`" for s, _ in counts.most_common(show)) or "(none)"
