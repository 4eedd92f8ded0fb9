"""Excel readers compared on correctness and speed: openpyxl (read-only, as the tag says and with
reset_dimensions()), python-calamine and fastexcel. ipdpool reads spreadsheets with the winner.

    python bench/bench_excel_readers.py [--rows 50000]

Correctness cases, each a workbook written by openpyxl and then edited the way exporters get it wrong:
a <dimension> tag of A1, a tag covering half the rows, a mixed column (numbers and the word
"unknown"), dates, and the 1904 date system. A reader passes a case when it returns every row with
the cell types as stored. Speed: seconds to read one sheet of --rows x 20 cells (best of 3).
fastexcel is optional here (not a dependency of ipdpool); it is skipped when not installed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import tempfile
import time
import zipfile
from pathlib import Path

import openpyxl
import python_calamine

try:
    import fastexcel
except ImportError:  # only compared when present
    fastexcel = None


def write_workbook(path: Path, rows: int, columns: int = 20, epoch_1904: bool = False) -> list[list]:
    workbook = openpyxl.Workbook(write_only=True)
    if epoch_1904:
        workbook.epoch = openpyxl.utils.datetime.CALENDAR_MAC_1904
    sheet = workbook.create_sheet("data")
    header = ["id", "date", "mixed"] + [f"x{i}" for i in range(columns - 3)]
    sheet.append(header)
    expected = [header]
    for row in range(rows):
        values = [
            row + 1,
            dt.datetime(2020, 1, 1) + dt.timedelta(days=row % 900),
            "unknown" if row % 7 == 0 else row % 50,
        ] + [float(row * i % 97) for i in range(columns - 3)]
        sheet.append(values)
        expected.append(values)
    workbook.save(path)
    return expected


def set_dimension(path: Path, ref: str) -> None:
    """Rewrite the sheet's <dimension> tag in place, as a faulty exporter would write it."""
    source = zipfile.ZipFile(path)
    items = [(item, source.read(item.filename)) for item in source.infolist()]
    source.close()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for item, data in items:
            if item.filename.startswith("xl/worksheets/sheet"):
                data = re.sub(rb"<dimension ref=\"[^\"]*\"\s*/>", f'<dimension ref="{ref}"/>'.encode(), data)
                if b"<dimension" not in data:
                    data = data.replace(b"<sheetData", f'<dimension ref="{ref}"/><sheetData'.encode(), 1)
            target.writestr(item, data)


def read_openpyxl(path: Path, reset: bool) -> list[list]:
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    sheet = workbook["data"]
    if reset:
        sheet.reset_dimensions()
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    workbook.close()
    return rows


def read_calamine(path: Path) -> list[list]:
    workbook = python_calamine.CalamineWorkbook.from_path(str(path))
    rows = workbook.get_sheet_by_name("data").to_python(skip_empty_area=False)
    workbook.close()
    return rows


def read_fastexcel(path: Path) -> list[list]:
    sheet = fastexcel.read_excel(str(path)).load_sheet_by_name("data")
    frame = sheet.to_arrow().to_pydict()
    return [list(frame)] + [list(values) for values in zip(*frame.values())]


READERS = {
    "openpyxl read-only": lambda p: read_openpyxl(p, reset=False),
    "openpyxl + reset_dimensions()": lambda p: read_openpyxl(p, reset=True),
    "python-calamine": read_calamine,
}
if fastexcel is not None:
    READERS["fastexcel"] = read_fastexcel


def same(value, expected) -> bool:
    if isinstance(expected, dt.datetime):
        return isinstance(value, (dt.date, dt.datetime)) and dt.datetime(value.year, value.month, value.day) == expected
    if isinstance(expected, str):
        return value == expected
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value) == float(expected)


def verdict(rows: list[list], expected: list[list]) -> str:
    if len(rows) != len(expected):
        return f"WRONG: {len(rows) - 1} of {len(expected) - 1} rows"
    bad = sum(not same(v, e) for row, want in zip(rows[1:], expected[1:]) for v, e in zip(row, want))
    return "ok" if bad == 0 else f"WRONG: {bad} cells differ in value or type"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        cases = {}
        for name, dimension, epoch in (
            ("dimension tag correct", None, False),
            ("dimension tag A1", "A1", False),
            ("dimension tag: half the rows", "A1:T51", False),
            ("1904 date system", None, True),
        ):
            path = folder / f"{len(cases)}.xlsx"
            expected = write_workbook(path, 100, epoch_1904=epoch)
            if dimension:
                set_dimension(path, dimension)
            cases[name] = (path, expected)
        print("Correctness (100 rows x 20 columns; a mixed column of numbers and text; dates):")
        print(f"{'reader':32s}" + "".join(f"{name:>34s}" for name in cases))
        for reader_name, reader in READERS.items():
            cells = []
            for path, expected in cases.values():
                try:
                    cells.append(verdict(reader(path), expected))
                except Exception as error:  # a reader that refuses is reported, not fatal
                    cells.append(f"error: {type(error).__name__}")
            print(f"{reader_name:32s}" + "".join(f"{c:>34s}" for c in cells))
        big = folder / "big.xlsx"
        write_workbook(big, args.rows)
        print(f"\nSpeed: one sheet of {args.rows} rows x 20 columns ({big.stat().st_size / 1e6:.1f} MB), best of 3:")
        for reader_name, reader in READERS.items():
            times = []
            for _ in range(3):
                start = time.perf_counter()
                rows = reader(big)
                times.append(time.perf_counter() - start)
            print(f"{reader_name:32s}{min(times):8.2f} s  ({len(rows) - 1} rows)")


if __name__ == "__main__":
    main()
