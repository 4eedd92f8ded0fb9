"""Read a trial's raw exports exactly as delivered, each whole or not at all.

Values are kept as delivered (codes, text, user-missing codes); interpreting
them is harmonization's job. Every failure is a RawDataError naming the study,
the file and, where known, the variable, line, sheet or cell. Messages name
columns, lines and cells, never cell values (they may be identifiers).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyreadstat
import python_calamine

from .paths import sha256_of  # noqa: F401  (re-exported: readers and inventory use it from here)

# Extensions each format reads; the extension picks the reader within a format.
EXTENSIONS = {
    "spss": (".sav", ".zsav", ".por"),
    "stata": (".dta",),
    "sas": (".sas7bdat", ".xpt"),
    "csv": None,  # any name: delimited text is recognised by its declaration, not its name
    "excel": (".xlsx", ".xlsm", ".ods"),
}
FORMATS = tuple(EXTENSIONS)


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
    notes: list[str] = field(default_factory=list)  # worth knowing, not wrong: hidden sheets and rows
    warnings: list[str] = field(default_factory=list)  # probably wrong: likely mojibake


def check_encoding(study: str, file: str, name: str) -> str:
    try:
        codecs.lookup(name)
    except LookupError as error:
        raise RawDataError(
            study, file, f"unknown encoding {name!r} in the rule file; use a name such as utf-8, latin-1 or cp1252"
        ) from error
    return name


def _mojibake(text: str) -> str | None:
    """The encoding under which `text` is UTF-8 bytes decoded as a legacy 8-bit code page, if it is."""
    if text.isascii():
        return None
    for legacy in ("latin-1", "cp1252"):
        try:
            repaired = text.encode(legacy).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if repaired != text:
            return legacy
    return None


def mojibake_warnings(
    frame: pd.DataFrame, value_labels: dict[str, dict], distinct_values: dict | None = None
) -> list[str]:
    """Columns whose text (or value labels) look like UTF-8 read as Latin-1/cp1252; names columns, not values.
    `distinct_values`: each column's distinct values in order of appearance, where the reader has them."""
    suspects, undecodable = [], []
    for column in frame.columns:
        distinct = frame[column].dropna().unique() if distinct_values is None else distinct_values[column]
        # A character that could not be decoded is in a cell only if it is in one of the column's distinct values.
        if any(isinstance(v, str) and "\ufffd" in v for v in distinct):
            undecodable.append(str(column))
        texts = [v for v in distinct[:5000] if isinstance(v, str)]
        texts += [v for v in value_labels.get(column, {}).values() if isinstance(v, str)]
        if any(_mojibake(t) for t in texts) or _mojibake(str(column)):
            suspects.append(str(column))
    warnings = (
        [
            f"text in {', '.join(map(repr, undecodable[:15]))} has characters that could not be decoded "
            "(shown as U+FFFD); ask for the file in another format or encoding"
        ]
        if undecodable
        else []
    )
    if not suspects:
        return warnings
    return warnings + [
        f"text in {', '.join(map(repr, suspects[:15]))} looks like UTF-8 decoded as Latin-1/cp1252 "
        "(e.g. 'Ã¤' for 'ä'); set `encoding: utf-8` for this file"
    ]


# ------------------------------------------------------------ SPSS, Stata, SAS (pyreadstat)


# ------------------------------------------------------------ damaged files
# pyreadstat reads some files cut short without an error: a Stata file loses the value labels at its end,
# a portable or transport file its last rows. Each format's own structure says whether the file is whole;
# these checks run before the file is parsed, so a damaged file never reaches a rule. (SPSS .sav/.zsav:
# the header's row count, checked after reading; spreadsheets: the zip directory at the end.)

SAS7BDAT_MAGIC = bytes(12) + bytes.fromhex("c2ea8160b31411cfbd92080009c7318c181f1011")
STATA_WIDTH = {251: 1, 252: 2, 253: 4, 254: 4, 255: 8}  # byte, int, long, float, double (formats 113-115)


def _old_stata_complete(handle, size: int) -> bool:
    """Whether a Stata file of format 113-115 (Stata 8-12) ends where its value-label tables end: its
    header, descriptors and data, then each table (length, name, padding, contents) up to the last byte."""
    head = handle.read(109)
    if len(head) < 109 or head[0] not in (113, 114, 115) or head[1] not in (1, 2):
        return True  # older formats are rare; pyreadstat's own checks apply
    order = "<" if head[1] == 2 else ">"
    nvar, nobs = struct.unpack(order + "Hi", head[4:10])
    if nobs < 0:
        return False
    types = handle.read(nvar)
    fmt_width = 12 if head[0] == 113 else 49
    at = 109 + nvar + 33 * nvar + 2 * (nvar + 1) + fmt_width * nvar + 33 * nvar + 81 * nvar

    def int32_at(offset: int) -> int | None:
        handle.seek(offset)
        raw = handle.read(4)
        return struct.unpack(order + "i", raw)[0] if len(raw) == 4 else None

    while True:  # expansion fields: type byte, int32 length, contents; type 0 ends them
        handle.seek(at)
        kind, length = handle.read(1), int32_at(at + 1)
        if not kind or length is None or length < 0:
            return False
        at += 5 + length
        if kind == b"\0":
            break
    at += nobs * sum(STATA_WIDTH.get(t, t) for t in types)
    while at < size:
        length = int32_at(at)
        if length is None or length < 0 or at + 40 > size:
            return False
        at += 40 + length
    return at == size


def _sas7bdat_complete(handle, size: int) -> bool:
    """Whether a SAS7BDAT file is as long as its header says: header length + pages x page size."""
    head = handle.read(220)
    if len(head) < 220 or head[:32] != SAS7BDAT_MAGIC:
        return False
    wide = 4 if head[32] == 0x33 else 0  # 64-bit page count
    shift = 4 if head[35] == 0x33 else 0
    order = "<" if head[37] == 1 else ">"
    header, page = struct.unpack(order + "ii", head[196 + shift : 204 + shift])
    pages = struct.unpack(order + ("q" if wide else "i"), head[204 + shift : 208 + shift + wide])[0]
    return size == header + page * pages


class _Short(Exception):
    """A record reaches past the end of the file."""


def _sav_dictionary_ok(handle, size: int) -> bool:
    """Whether an SPSS .sav/.zsav dictionary is well formed: every record of a known type, each string
    variable followed by its continuation records, every length inside the file, ending with record 999.
    ReadStat crashes the process (SIGSEGV) on some malformed dictionaries instead of refusing them."""
    head = handle.read(176)
    if len(head) < 176 or head[:4] not in (b"$FL2", b"$FL3"):
        return False
    order = "<" if struct.unpack("<i", head[64:68])[0] in (2, 3) else ">"
    if struct.unpack(order + "i", head[64:68])[0] not in (2, 3):
        return False

    def ints(n: int) -> tuple:
        data = handle.read(4 * n)
        if len(data) < 4 * n:
            raise _Short
        return struct.unpack(order + "i" * n, data)

    def skip(n: int) -> None:
        if n < 0 or handle.tell() + n > size:
            raise _Short
        handle.seek(n, 1)

    continuation, widths = 0, []  # widths: per variable record, -1 for a string's continuation
    try:
        while True:
            (record,) = ints(1)
            if record == 2:
                width, has_label, n_missing, print_format, _ = ints(5)
                skip(8)  # name
                widths.append(width)
                # A string variable has a string display format (A or AHEX), a number any other.
                if width >= 0 and (width > 0) != ((print_format >> 16) & 0xFF in (1, 2)):
                    return False
                if continuation:
                    if width != -1:
                        return False
                    continuation -= 1
                elif not 0 <= width <= 255:
                    return False
                else:
                    continuation = max(0, (width + 7) // 8 - 1)
                if has_label not in (0, 1) or n_missing not in (-3, -2, 0, 1, 2, 3):
                    return False
                if has_label:
                    skip((ints(1)[0] + 3) // 4 * 4)
                skip(8 * abs(n_missing))
            elif record == 3:
                (count,) = ints(1)
                for _ in range(count if 0 <= count <= size else -1):
                    skip(8)
                    length = handle.read(1)
                    if not length:
                        raise _Short
                    skip((length[0] + 8) // 8 * 8 - 1)
                if count < 0 or count > size or ints(1)[0] != 4:
                    return False
                (labelled,) = ints(1)
                if not 0 < labelled <= len(widths) or not _labels_fit(ints(labelled), widths):
                    return False
            elif record == 6:
                skip(80 * ints(1)[0])
            elif record == 7:
                _, item, count = ints(3)
                if item < 0 or count < 0:
                    return False
                skip(item * count)
            elif record == 999:
                ints(1)
                return continuation == 0 and _sav_data_length_fits(head, order, size - handle.tell(), len(widths))
            else:
                return False
    except _Short:
        return False


def _sav_data_length_fits(head: bytes, order: str, data_bytes: int, segments: int) -> bool:
    """Uncompressed data are rows of 8-byte segments: as many rows as the header declares, or when it
    declares -1 (unknown: PSPP writing to a pipe), whole rows. Compressed data are left to the reader."""
    compression, _, cases = struct.unpack(order + "iii", head[72:84])
    if compression != 0 or segments == 0:
        return True
    return data_bytes == cases * 8 * segments if cases >= 0 else data_bytes % (8 * segments) == 0


def _labels_fit(indexes: tuple, widths: list[int]) -> bool:
    """Value labels go to existing variables (1-based, not continuations), all numeric or all short strings."""
    if not all(0 < i <= len(widths) and widths[i - 1] != -1 for i in indexes):
        return False
    kinds = {widths[i - 1] == 0 for i in indexes}
    return len(kinds) == 1 and (kinds == {True} or all(widths[i - 1] <= 8 for i in indexes))


def _tail(handle, size: int, n: int) -> bytes:
    handle.seek(max(0, size - n))
    return handle.read()


DAMAGED = "is damaged: it is cut short, or its header or end is broken (ask for a new export)"


def damage(path: Path) -> str | None:
    """Why a raw file is not whole (cut short, or its ending lost), or None when its format's structure
    holds (read from its head and tail only). Cut exactly at a row boundary, a file without a row count or
    an end mark (CSV, SAS transport) cannot be told from a shorter whole one."""
    suffix, size = path.suffix.lower(), path.stat().st_size
    if suffix not in (".dta", ".por", ".xpt", ".sas7bdat", ".sav", ".zsav"):
        return None
    try:
        whole = _structure_holds(path, suffix, size)
    except (OSError, ValueError, struct.error):  # a header field out of range (a negative count or offset)
        whole = False
    return None if whole else DAMAGED


def _structure_holds(path: Path, suffix: str, size: int) -> bool:
    with open(path, "rb") as handle:
        if suffix in (".sav", ".zsav"):
            return _sav_dictionary_ok(handle, size)
        if suffix == ".dta":
            new_format = handle.read(11) == b"<stata_dta>"
            handle.seek(0)
            whole = (
                _tail(handle, size, 16).rstrip(b"\r\n").endswith(b"</stata_dta>")
                if new_format
                else _old_stata_complete(handle, size)
            )
        elif suffix == ".por":
            # 80-character lines; the data end with a Z, and Z pads the last line to its full length.
            last = _tail(handle, size, 200).rstrip(b"\r\n").rsplit(b"\n", 1)[-1].rstrip(b"\r")
            whole = last.endswith(b"Z") and len(last) == 80
        elif suffix == ".xpt":
            whole = size % 80 == 0  # records of 80 bytes, the last one padded
        else:
            whole = _sas7bdat_complete(handle, size)
    return whole


def _xport_rows_fill_data(path: Path, rows: int, meta) -> bool:
    """A SAS transport file holds no row count: its data are whole rows, padded with blanks to the last
    80-byte record. A cut on a record boundary that falls inside a row leaves that row's start where only
    blanks may stand (the reader silently drops the partial row)."""
    data = path.read_bytes()
    start = max(data.rfind(b"HEADER RECORD*******OBS     HEADER RECORD"), data.rfind(b"HEADER RECORD*******OBSV8"))
    width = sum(getattr(meta, "variable_storage_width", {}).values())
    if start < 0 or width <= 0:
        return False
    body = data[start + 80 :]
    used = rows * width
    return len(body) == -(-used // 80) * 80 and body[used:].strip(b" ") == b""


def _read_statistical(study: str, path: Path, spec: dict) -> RawTable:
    suffix = path.suffix.lower()
    reader = {
        ".sav": pyreadstat.read_sav,
        ".zsav": pyreadstat.read_sav,
        ".por": pyreadstat.read_por,
        ".dta": pyreadstat.read_dta,
        ".sas7bdat": pyreadstat.read_sas7bdat,
        ".xpt": pyreadstat.read_xport,
    }[suffix]
    options = {}
    if "encoding" in spec and suffix == ".por":
        raise RawDataError(
            study,
            path.name,
            "`encoding` does not apply to SPSS portable (.por) files, which hold 7-bit text; remove it",
        )
    if "encoding" in spec:
        options["encoding"] = check_encoding(study, path.name, spec["encoding"])
    if reader in (pyreadstat.read_sav, pyreadstat.read_dta, pyreadstat.read_sas7bdat):
        options["user_missing"] = True
    if spec.get("catalog"):
        catalog = path.parent / spec["catalog"]
        if not catalog.is_file():
            raise RawDataError(study, spec["catalog"], f"format catalog not found (looked in {path.parent})")
        options["catalog_file"] = str(catalog)
    why = damage(path)
    if why:
        raise RawDataError(study, path.name, why)
    try:
        frame, meta = reader(str(path), **options)
    except Exception as error:  # pyreadstat raises several unrelated types for damaged files
        raise RawDataError(
            study, path.name, f"is damaged or not a {suffix[1:].upper()} file: cannot be read ({type(error).__name__})"
        ) from error
    # A damaged file must not pass as a smaller valid one: compare with the row count its header declares.
    declared = getattr(meta, "number_rows", None)
    if declared is not None and declared >= 0 and declared != len(frame):
        raise RawDataError(
            study,
            path.name,
            f"declares {declared} rows but {len(frame)} could be read; the file is truncated or damaged",
        )
    if suffix == ".xpt" and not _xport_rows_fill_data(path, len(frame), meta):
        raise RawDataError(study, path.name, DAMAGED)
    labels = dict(meta.variable_value_labels)
    missing = {
        column: [r["lo"] if r["lo"] == r["hi"] else (r["lo"], r["hi"]) for r in ranges]
        for column, ranges in meta.missing_ranges.items()
    }
    missing.update({column: list(values) for column, values in getattr(meta, "missing_user_values", {}).items()})
    warnings = [] if "encoding" in spec else mojibake_warnings(frame, labels)
    return RawTable(study, "", path, frame, labels, missing, warnings=warnings)


# ------------------------------------------------------------ delimited text


def _read_csv(study: str, path: Path, spec: dict) -> RawTable:
    # Not pandas.read_csv: it fills short rows with NaN and renames duplicate headers (age.1), silently;
    # here every record is checked against the header, by line.
    encoding = check_encoding(study, path.name, spec.get("encoding", "utf-8"))
    delimiter = spec.get("delimiter", ",")
    data = path.read_bytes()
    utf8 = codecs.lookup(encoding).name == "utf-8"
    try:
        text = data.decode("utf-8-sig" if utf8 else encoding)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        if error.reason == "unexpected end of data":
            raise RawDataError(
                study, path.name, f"is damaged: it ends inside a character (line {line}), so the file is cut short"
            ) from error
        raise RawDataError(
            study,
            path.name,
            f"is not valid {encoding} text (line {line}, byte {error.start}); set `encoding` for this file",
        ) from error
    # Every exporter ends the last record with a line break: without one the file was cut short (a cut
    # just after a line break leaves a valid shorter file, which nothing can tell from a whole one).
    if not text.endswith(("\n", "\r")):
        raise RawDataError(
            study,
            path.name,
            f"is damaged: its last line (line {text.count(chr(10)) + 1}) has no line break, so the file is cut "
            "short; if it is whole, ask for a new export or add the line break",
        )
    # Valid UTF-8 decodes and encodes back to the same bytes, so only other encodings are re-encoded.
    encoded = data.removeprefix(codecs.BOM_UTF8) if utf8 else text.encode("utf-8")
    records = _records_unquoted(encoded, delimiter)
    if records is None:
        records = _records_strict(study, path.name, text, delimiter)
    if records is None:
        raise RawDataError(study, path.name, "has no header row")
    header, columns = records
    if len(header) == 1 and any(other in header[0] for other in ";,\t|" if other != delimiter):
        raise RawDataError(
            study, path.name, f"has a single column {header[0]!r}: is the delimiter {delimiter!r} right?"
        )
    _check_header(study, path.name, header, lambda position: f"line 1, field {position}")
    if columns is None:
        _refuse_ragged(study, path.name, text, delimiter, len(header))
    frame, distinct = _text_frame(header, columns)
    warnings = [] if utf8 else mojibake_warnings(frame, {}, distinct)
    return RawTable(study, "", path, frame, warnings=warnings)


def _records_strict(study: str, file: str, text: str, delimiter: str) -> tuple[list[str], list[pa.Array] | None] | None:
    """Header and columns by Python's csv module in strict mode (it refuses malformed quoting such as
    "x"y, which pyarrow reads as xy); columns None when records differ in length from the header
    (refused after the header checks); None for a file without any record."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        rows = [row for row in reader if row]
    except csv.Error as error:
        raise RawDataError(
            study,
            file,
            f"cannot be parsed as delimited text with delimiter {delimiter!r}: line {reader.line_num}: {error}",
        ) from error
    if not rows:
        return None
    header, body = rows[0], rows[1:]
    if any(len(row) != len(header) for row in body):
        return header, None
    return header, [pa.array([row[i] for row in body], pa.string()) for i in range(len(header))]


FIRST_RECORD = re.compile(rb"[\r\n]*([^\r\n]*)")


def _records_unquoted(data: bytes, delimiter: str) -> tuple[list[str], list[pa.Array]] | None:
    """Header and columns by pyarrow's CSV parser with quoting off, or None where it could differ from
    the csv module: a quote character in the file (quoting rules apply only then), a delimiter that is
    not one byte, a field over the csv module's size limit, or anything pyarrow refuses (ragged records,
    an empty file); the strict reader then decides."""
    if b'"' in data or len(delimiter.encode("utf-8")) != 1:
        return None
    width = FIRST_RECORD.match(data).group(1).count(delimiter.encode("utf-8")) + 1
    options = (
        pacsv.ReadOptions(use_threads=False, autogenerate_column_names=True),
        pacsv.ParseOptions(delimiter=delimiter, quote_char=False, newlines_in_values=False, ignore_empty_lines=True),
        pacsv.ConvertOptions(
            column_types={f"f{i}": pa.string() for i in range(width)},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=[],
        ),
    )
    try:
        table = pacsv.read_csv(io.BytesIO(data), *options)
    except pa.ArrowInvalid:
        return None
    columns = [column.combine_chunks() for column in table.columns]
    longest = max((pc.max(pc.utf8_length(column)).as_py() or 0 for column in columns), default=0)
    if table.num_columns != width or longest >= csv.field_size_limit():
        return None
    return [column[0].as_py() for column in columns], [column.slice(1) for column in columns]


def _text_frame(header: list[str], columns: list[pa.Array]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Object columns of str whose equal cells share one str (built once per distinct value: long
    tables repeat codes, dates and ids), and each column's distinct values in order of appearance."""
    arrays, distinct = {}, {}
    for name, column in zip(header, columns):
        encoded = column.dictionary_encode()
        distinct[name] = encoded.dictionary.to_numpy(zero_copy_only=False)
        arrays[name] = distinct[name][encoded.indices.to_numpy(zero_copy_only=False)]
    return pd.DataFrame(arrays, columns=header, dtype=object), distinct


def _refuse_ragged(study: str, file: str, text: str, delimiter: str, width: int) -> None:
    """Name the records whose number of fields differs from the header's, by line (read again: line numbers
    slow down the reading of every file that is not refused)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records = [(reader.line_num, row) for row in reader if row]
    short = [(line, len(row)) for line, row in records[1:] if len(row) != width]
    line, fields = short[0]
    ends = " (the file ends mid-row: truncated?)" if line == records[-1][0] and fields < width else ""
    lines = ", ".join(str(n) for n, _ in short[:5]) + (f" ... ({len(short)} lines)" if len(short) > 5 else "")
    raise RawDataError(study, file, f"line {line} has {fields} fields but the header has {width}{ends}; lines {lines}")


def _check_header(study: str, file: str, header: list, where) -> None:
    """No empty and no repeated column names: a rule must name exactly one column."""
    for position, name in enumerate(header, start=1):
        if name.strip() == "":
            raise RawDataError(study, file, f"header has an empty column name at {where(position)}")
    seen = {}
    for position, name in enumerate(header, start=1):
        if name in seen:
            raise RawDataError(
                study, file, f"header repeats the column name {name!r} at {where(seen[name])} and {where(position)}"
            )
        seen[name] = position


# ------------------------------------------------------------ spreadsheets (.xlsx, .ods)


def _cell_name(row: int, column: int) -> str:
    letters = ""
    column += 1
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(65 + rest) + letters
    return f"{letters}{row + 1}"


FORMULA_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s/>]")
NS = {
    "m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
}


def _xlsx_sheet_part(archive: zipfile.ZipFile, sheet: str) -> str:
    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    targets = {rel.get("Id"): rel.get("Target") for rel in rels}
    for element in workbook.iterfind("m:sheets/m:sheet", NS):
        if element.get("name") == sheet:
            target = targets[element.get(f"{{{NS['r']}}}id")]
            return target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    raise KeyError(sheet)


def _xlsx_cells_calamine_cannot_see(path: Path, sheet: str) -> tuple[list[str], int]:
    """Formula cells without a cached value, and the number of hidden rows, from the sheet's XML.

    calamine returns the cached value of a formula and an empty cell when there is none, and
    it does not report row visibility; both are read here in one pass over the XML."""
    uncached, hidden = [], 0
    with zipfile.ZipFile(path) as archive:
        xml = archive.read(_xlsx_sheet_part(archive, sheet))
    # Walking every cell in Python is most of the reading time; a sheet without any formula tag (text
    # cannot hold a raw "<") and without the word "hidden" has neither, and needs no walk. A formula
    # tag's name follows "<" or a namespace prefix's ":", so without either substring (a plain byte
    # search, faster than the pattern) there is none.
    formulas = (b"<f" in xml or b":f" in xml) and FORMULA_TAG.search(xml)
    if not formulas and b"hidden" not in xml:
        return uncached, hidden
    for _, element in ElementTree.iterparse(io.BytesIO(xml)):
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "c":
            formula, value = element.find("m:f", NS), element.find("m:v", NS)
            if formula is not None and (value is None or value.text is None) and element.get("t") != "inlineStr":
                uncached.append(element.get("r", "?"))
            element.clear()
        elif tag == "row":
            hidden += element.get("hidden") in ("1", "true")
            element.clear()
    return uncached, hidden


def _header_name(cell) -> str:
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))  # calamine returns every number as float; a header "2020" is not "2020.0"
    return "" if cell is None else str(cell).strip()


def _zip_damage(path: Path) -> str | None:
    """Why a workbook's zip container is damaged (an entry failing its CRC-32, an unreadable directory), or
    None. calamine reads an entry with a bad checksum as it is: one flipped byte could change cells."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = archive.namelist()
    except Exception as error:  # BadZipFile, zlib errors, unsupported zip versions
        return f"is damaged or not a spreadsheet: its zip container cannot be read ({type(error).__name__})"
    if bad:
        return f"is damaged: zip entry {bad!r} fails its checksum (ask for a new export)"
    # Two entries of one name: readers take one of them, so part of what was written would go unread
    twice = sorted({name for name in names if names.count(name) > 1})
    return f"is damaged: zip entries {twice} stand twice (ask for a new export)" if twice else None


def _read_spreadsheet(study: str, path: Path, spec: dict) -> RawTable:
    # python-calamine reads every cell of the sheet's data, whatever its <dimension> tag says
    # (openpyxl's read-only mode trusts the tag), and reads .ods too; see bench/bench_excel_readers.py.
    sheet = spec.get("sheet")
    damaged = _zip_damage(path)
    if damaged:
        raise RawDataError(study, path.name, damaged)
    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
    except Exception as error:  # calamine raises its own error types and zip/XML errors
        # Only the error's kind: the parser's own message can quote cells (ids, names) of any column.
        raise RawDataError(
            study, path.name, f"is damaged or not a spreadsheet: cannot be read ({type(error).__name__})"
        ) from error
    try:
        names = workbook.sheet_names
        if sheet is None and len(names) > 1:  # the first sheet may be notes: never guess which holds the table
            raise RawDataError(
                study, path.name, f"has {len(names)} sheets {names}: name the one holding the table with `sheet:`"
            )
        if sheet is None:
            sheet = names[0]
        if sheet not in names:
            raise RawDataError(study, path.name, f"has no sheet {sheet!r}; sheets are {names}")
        file = f"{path.name} [{sheet}]"
        try:
            worksheet = workbook.get_sheet_by_name(sheet)
            rows = worksheet.to_python(skip_empty_area=False)
        except Exception as error:
            raise RawDataError(study, file, f"is damaged: the sheet cannot be read ({type(error).__name__})") from error
        merged = worksheet.merged_cell_ranges or []
        visible = {meta.name: str(meta.visible) for meta in workbook.sheets_metadata}
    finally:
        workbook.close()
    notes = []
    if not visible.get(sheet, "").endswith("Visible"):
        notes.append("hidden sheet (read all the same)")
    if path.suffix.lower() != ".ods":
        try:
            uncached, hidden_rows = _xlsx_cells_calamine_cannot_see(path, sheet)
        except Exception as error:  # XML or zip damage calamine did not meet
            raise RawDataError(
                study, file, f"is damaged: the sheet's XML cannot be read ({type(error).__name__})"
            ) from error
        if uncached:
            raise RawDataError(
                study,
                file,
                "formula cells without a cached value (the file was never recalculated "
                f"and saved by a spreadsheet program); cells {', '.join(uncached[:5])}"
                + (f" ... ({len(uncached)} cells)" if len(uncached) > 5 else ""),
            )
        if hidden_rows:
            notes.append(f"{hidden_rows} hidden rows (read all the same)")
    if not rows:
        raise RawDataError(study, file, "sheet is empty (no header row)")
    for (first_row, first_column), (last_row, last_column) in merged:
        if first_row == 0:
            raise RawDataError(
                study,
                file,
                f"header has merged cells {_cell_name(first_row, first_column)}:{_cell_name(last_row, last_column)}; "
                "unmerge them so that every column has its own name",
            )
    header = [_header_name(c) for c in rows[0]]
    while (
        header and header[-1] == "" and all(len(r) < len(header) or r[len(header) - 1] in ("", None) for r in rows[1:])
    ):
        header.pop()  # a trailing column with neither name nor values is not a column
    _check_header(study, file, header, lambda position: f"cell {_cell_name(0, position - 1)}")
    width = len(header)
    body = [[None if v == "" else v for v in row[:width]] + [None] * (width - len(row)) for row in rows[1:]]
    # Trailing rows without any value (formatting only) are not data rows.
    while body and all(v is None for v in body[-1]):
        body.pop()
    frame = pd.DataFrame(body, columns=header, dtype=object)
    return RawTable(study, "", path, frame, notes=notes, warnings=mojibake_warnings(frame, {}))


def confined(study: str, raw_dir: Path, name: str) -> Path:
    """`name` inside `raw_dir` with every link resolved; a path that leaves raw_dir (`..`, an absolute
    path, a symbolic link pointing elsewhere) is refused before anything is opened."""
    root = Path(raw_dir).resolve()
    path = (root / name).resolve()
    if path == root or not path.is_relative_to(root):
        raise RawDataError(
            study, name, "is outside the study's raw_dir (after following links); every raw file must be inside raw_dir"
        )
    return path


def holds_secret(path: Path, secret: bytes) -> bool:
    """Whether the file contains `secret` (read in blocks that overlap by len(secret) - 1 bytes)."""
    tail = b""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            if secret in tail + block:
                return True
            tail = block[-(len(secret) - 1) :] if len(secret) > 1 else b""
    return False


def read_table(study: str, name: str, spec: dict, raw_dir: Path, secret: bytes = b"") -> RawTable:
    """Read one table declared in a study's rule file (`tables: {name: spec}`).

    `secret` (the pseudonym key) must not occur in the file: a key file is never read as a table,
    and a table's messages could otherwise quote it."""
    path = confined(study, raw_dir, spec["file"])
    if not path.is_file():
        raise RawDataError(study, spec["file"], f"not found (looked in {raw_dir})")
    if path.stat().st_size == 0:
        raise RawDataError(study, spec["file"], "is empty (0 bytes)")
    if secret and holds_secret(path, secret):
        raise RawDataError(study, spec["file"], "holds the pseudonym key: a key file is never read as a table")
    if spec.get("catalog"):
        confined(study, raw_dir, spec["catalog"])
    kind = spec["format"]
    if kind not in EXTENSIONS:
        raise RawDataError(study, spec["file"], f"unknown format {kind!r}; expected one of {FORMATS}")
    if EXTENSIONS[kind] and path.suffix.lower() not in EXTENSIONS[kind]:
        raise RawDataError(
            study,
            spec["file"],
            f"format {kind} reads files ending in {', '.join(EXTENSIONS[kind])}, not {path.suffix or '(no extension)'}",
        )
    if kind == "csv":
        table = _read_csv(study, path, spec)
    elif kind == "excel":
        table = _read_spreadsheet(study, path, spec)
    else:
        table = _read_statistical(study, path, spec)
    table.name = name
    return table
