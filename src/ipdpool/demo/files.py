"""Writers for the demo's raw files, byte-reproducible across runs.

pyreadstat stamps the write time into SPSS and Stata headers and openpyxl into
the workbook properties and zip entries, with no option to fix them; the
writers below overwrite those stamps with one fixed time so that regenerating
the demo gives identical bytes.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pandas as pd
import pyreadstat

FIXED_STAMP = pd.Timestamp("2026-01-01 00:00:00")


@dataclass
class RawFile:
    """One raw export as a trial would send it.

    kind: 'sav', 'dta', 'csv' or 'xlsx'. `sheets` maps sheet name -> frame for
    xlsx; other kinds use the single entry under ''. `options` carries the
    format's own metadata (value labels, user-missing codes, encoding, ...).
    """

    name: str
    kind: str
    sheets: dict[str, pd.DataFrame]
    options: dict = field(default_factory=dict)

    @property
    def frame(self) -> pd.DataFrame:
        return self.sheets[""]


def _patch_sav_timestamp(path: Path) -> None:
    # SAV header: creation date (9 bytes, "dd Mon yy") at offset 92, time (8 bytes) at 101.
    data = bytearray(path.read_bytes())
    if data[:4] != b"$FL2":
        raise ValueError(f"{path}: not an SPSS system file")
    data[92:101] = FIXED_STAMP.strftime("%d %b %y").encode("ascii")
    data[101:109] = FIXED_STAMP.strftime("%H:%M:%S").encode("ascii")
    path.write_bytes(bytes(data))


def _patch_dta_timestamp(path: Path) -> None:
    # Stata 118/119: <timestamp> then a length byte (17) and "dd Mon yyyy hh:mm".
    data = path.read_bytes()
    stamp = FIXED_STAMP.strftime("%d %b %Y %H:%M").encode("ascii")
    patched, count = re.subn(
        rb"<timestamp>\x11.{17}</timestamp>", b"<timestamp>\x11" + stamp + b"</timestamp>", data, count=1, flags=re.S
    )
    if count != 1:
        raise ValueError(f"{path}: Stata timestamp not found")
    path.write_bytes(patched)


def _normalize_xlsx(path: Path) -> None:
    fixed = FIXED_STAMP.strftime("%Y-%m-%dT%H:%M:%SZ").encode("ascii")
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(<)", rb"\g<1>" + fixed + rb"\2", content)
            entry = zipfile.ZipInfo(info.filename, date_time=FIXED_STAMP.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(entry, content)
    path.write_bytes(out.getvalue())


def write_sav(raw: RawFile, path: Path) -> None:
    pyreadstat.write_sav(
        raw.frame,
        str(path),
        file_label=raw.options.get("file_label", ""),
        column_labels=raw.options.get("column_labels"),
        variable_value_labels=raw.options.get("value_labels"),
        missing_ranges=raw.options.get("missing_ranges"),
        variable_format=raw.options.get("variable_format"),
    )
    _patch_sav_timestamp(path)


def write_dta(raw: RawFile, path: Path) -> None:
    pyreadstat.write_dta(
        raw.frame,
        str(path),
        file_label=raw.options.get("file_label", ""),
        column_labels=raw.options.get("column_labels"),
        variable_value_labels=raw.options.get("value_labels"),
        variable_format=raw.options.get("variable_format"),
    )
    _patch_dta_timestamp(path)


def write_csv(raw: RawFile, path: Path) -> None:
    """Cells must already be strings (the trial's own number and date formatting)."""
    frame = raw.frame
    buffer = io.StringIO()
    writer = csv.writer(
        buffer, delimiter=raw.options.get("delimiter", ","), lineterminator=raw.options.get("newline", "\n")
    )
    writer.writerow(frame.columns)
    writer.writerows(frame.itertuples(index=False, name=None))
    path.write_bytes(buffer.getvalue().encode(raw.options.get("encoding", "utf-8")))


def write_xlsx(raw: RawFile, path: Path) -> None:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    workbook.properties.creator = "synthetic demo generator"
    for sheet_name, frame in raw.sheets.items():
        sheet = workbook.create_sheet(sheet_name)
        sheet.append(list(frame.columns))
        for row in frame.itertuples(index=False, name=None):
            sheet.append([None if (isinstance(v, float) and v != v) else v for v in row])
        for cell in sheet[1]:
            cell.font = openpyxl.styles.Font(bold=True)
        for column in sheet.iter_cols(min_row=2):
            for cell in column:
                if cell.is_date:
                    cell.number_format = "yyyy-mm-dd"
    workbook.save(path)
    _normalize_xlsx(path)


WRITERS = {"sav": write_sav, "dta": write_dta, "csv": write_csv, "xlsx": write_xlsx}


def write_raw_file(raw: RawFile, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / raw.name
    WRITERS[raw.kind](raw, path)
    return path
