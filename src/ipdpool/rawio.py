"""Read a trial's raw exports exactly as delivered, each with its native reader.

Values are kept as delivered (codes, text, user-missing codes); interpreting
them is harmonization's job. Every failure is a RawDataError naming the study,
the file and, where known, the variable.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pandas as pd
import pyreadstat


class RawDataError(Exception):
    """A problem with a raw file, located by study, file and (optionally) variable."""

    def __init__(self, study: str, file: str, message: str, variable: str | None = None):
        self.study, self.file, self.variable, self.message = study, file, variable, message
        where = f"study {study}, file {file}" + (f", variable {variable}" if variable else "")
        super().__init__(f"{where}: {message}")


@dataclass
class RawTable:
    study: str
    name: str
    path: Path
    frame: pd.DataFrame
    value_labels: dict[str, dict] = field(default_factory=dict)
    user_missing: dict[str, list] = field(default_factory=dict)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_statistical(study: str, path: Path, reader) -> RawTable:
    try:
        frame, meta = reader(str(path), user_missing=True)
    except Exception as error:  # pyreadstat raises several unrelated types for damaged files
        raise RawDataError(study, path.name, f"cannot be read as {reader.__name__[5:].upper()} file ({error})") from error
    labels = dict(meta.variable_value_labels)
    missing = {column: [r["lo"] if r["lo"] == r["hi"] else (r["lo"], r["hi"]) for r in ranges] for column, ranges in meta.missing_ranges.items()}
    missing.update({column: list(values) for column, values in getattr(meta, "missing_user_values", {}).items()})
    return RawTable(study, "", path, frame, labels, missing)


def _read_csv(study: str, path: Path, spec: dict) -> RawTable:
    encoding = spec.get("encoding", "utf-8")
    delimiter = spec.get("delimiter", ",")
    try:
        frame = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False, encoding=encoding)
    except UnicodeDecodeError as error:
        raise RawDataError(study, path.name, f"is not valid {encoding} text (byte {error.start}); set `encoding` for this file") from error
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise RawDataError(study, path.name, f"cannot be parsed as delimited text with delimiter {delimiter!r} ({str(error).strip()})") from error
    if frame.shape[1] == 1 and any(other in frame.columns[0] for other in ";,\t|" if other != delimiter):
        raise RawDataError(study, path.name, f"has a single column {frame.columns[0]!r}: is the delimiter {delimiter!r} right?")
    return RawTable(study, "", path, frame)


def _read_excel(study: str, path: Path, spec: dict) -> RawTable:
    sheet = spec.get("sheet")
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as error:
        raise RawDataError(study, path.name, f"cannot be read as an Excel workbook ({error})") from error
    try:
        if sheet is None:
            sheet = workbook.sheetnames[0]
        if sheet not in workbook.sheetnames:
            raise RawDataError(study, path.name, f"has no sheet {sheet!r}; sheets are {workbook.sheetnames}")
        rows = list(workbook[sheet].iter_rows(values_only=True))
    finally:
        workbook.close()
    if not rows:
        raise RawDataError(study, f"{path.name} [{sheet}]", "sheet is empty (no header row)")
    header = [str(c).strip() if c is not None else "" for c in rows[0]]
    if "" in header:
        raise RawDataError(study, f"{path.name} [{sheet}]", f"header row has an empty column name at position {header.index('') + 1}")
    frame = pd.DataFrame(rows[1:], columns=header, dtype=object)
    return RawTable(study, "", path, frame)


FORMATS = ("spss", "stata", "csv", "excel")


def read_table(study: str, name: str, spec: dict, raw_dir: Path) -> RawTable:
    """Read one table declared in a study's rule file (`tables: {name: spec}`)."""
    path = Path(raw_dir) / spec["file"]
    if not path.is_file():
        raise RawDataError(study, spec["file"], f"not found (looked in {raw_dir})")
    if path.stat().st_size == 0:
        raise RawDataError(study, spec["file"], "is empty (0 bytes)")
    kind = spec["format"]
    if kind == "spss":
        table = _read_statistical(study, path, pyreadstat.read_sav)
    elif kind == "stata":
        table = _read_statistical(study, path, pyreadstat.read_dta)
    elif kind == "csv":
        table = _read_csv(study, path, spec)
    elif kind == "excel":
        table = _read_excel(study, path, spec)
    else:
        raise RawDataError(study, spec["file"], f"unknown format {kind!r}; expected one of {FORMATS}")
    table.name = name
    return table
