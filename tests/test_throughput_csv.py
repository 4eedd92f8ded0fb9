"""Delimited files without quote characters are parsed by pyarrow (fast); every other file by the csv
module (strict). Both must give the same frame, or refuse the file with the same message."""

import csv
import random

import numpy as np
import pandas as pd
import pytest

from ipdpool import rawio
from ipdpool.rawio import RawDataError, read_table


def read(tmp_path, content: bytes, strict: bool, monkeypatch, **spec):
    """The table read from `content`, or the RawDataError message; `strict` disables the pyarrow path."""
    (tmp_path / "t.csv").write_bytes(content)
    with monkeypatch.context() as patch:
        if strict:
            patch.setattr(rawio, "_records_unquoted", lambda data, delimiter: None)
        try:
            return read_table("X", "t", {"file": "t.csv", "format": "csv", **spec}, tmp_path)
        except RawDataError as error:
            return str(error)


def assert_same(fast, strict):
    if isinstance(strict, str):
        assert fast == strict
        return
    pd.testing.assert_frame_equal(fast.frame, strict.frame, check_exact=True)
    assert (
        list(fast.frame.columns) == list(strict.frame.columns)
        and fast.frame.columns.dtype == strict.frame.columns.dtype
    )
    assert all(dtype == np.dtype(object) for dtype in fast.frame.dtypes) and fast.warnings == strict.warnings


TRICKY = {
    "crlf": (b"id;x\r\n1;a\r\n2;b\r\n", {"delimiter": ";"}),
    "bom": (b"\xef\xbb\xbfid,x\n1,a\n", {}),
    "bom_kept_in_latin1": (b"\xef\xbb\xbfid,x\n1,a\n", {"encoding": "latin-1"}),
    "empty_cells": (b"id,x,y\n1,,\n2,a,\n,,\n", {}),
    "trailing_delimiter_every_line": (b"id,x,\n1,a,\n", {}),
    "trailing_delimiter_rows_only": (b"id,x\n1,a,\n2,b,\n", {}),
    "latin1": ("løbenr;by\n1;København\n2;Århus\n".encode("latin-1"), {"delimiter": ";", "encoding": "latin-1"}),
    "cp1252": ("id;name\n1;€uro – dash\n".encode("cp1252"), {"delimiter": ";", "encoding": "cp1252"}),
    "utf8_read_as_latin1": ("id;by\n1;København\n".encode(), {"delimiter": ";", "encoding": "latin-1"}),
    "utf16": ("id\tx\n1\tä\n".encode("utf-16"), {"delimiter": "\t", "encoding": "utf-16"}),
    "blank_lines_and_no_final_newline": (b"\n\nid,x\n\n1,a\n\r\n2,b", {}),
    "lone_carriage_returns": (b"id,x\r1,a\r2,b\r", {}),
    "whitespace_kept": (b"id,x\n 1 , a \n", {}),
    "header_only": (b"id,x,y\n", {}),
    "one_column": (b"id\n1\n\n2\n", {}),
    "tab_delimited": (b"id\tx\n1\t2,5\n", {"delimiter": "\t"}),
    "non_ascii_delimiter": ("id§x\n1§a\n".encode(), {"delimiter": "§"}),
    "nul_and_control_characters": (b"id,x\n1,a\x00b\x0bc\x1c\n", {}),
    "quotes_take_the_strict_path": (b'id,x\n1,"a, b"\n2,"say ""hi"""\n', {}),
    # Malformed: both paths refuse with the same message.
    "short_row": (b"id,x,y\n1,a,b\n2,a\n3,a,b\n", {}),
    "long_row": (b"id,x\n1,a\n2,a,b\n", {}),
    "ends_mid_row": (b"id,x,y\n1,a,b\n2,a", {}),
    "repeated_header": (b"id,x,x\n1,a,b\n", {}),
    "empty_header_name": (b"id,,y\n1,a,b\n", {}),
    "malformed_quoting": (b'id,x\n1,"x"y\n', {}),
    "wrong_delimiter": (b"id;x;y\n1;a;b\n", {}),
    "only_blank_lines": (b"\n\r\n\n", {}),
    "not_utf8": ("id,x\n1,ø\n".encode("latin-1"), {}),
}


@pytest.mark.parametrize("name", TRICKY)
def test_fast_and_strict_paths_agree(tmp_path, monkeypatch, name):
    content, spec = TRICKY[name]
    assert_same(read(tmp_path, content, False, monkeypatch, **spec), read(tmp_path, content, True, monkeypatch, **spec))


def test_malformed_files_keep_their_messages(tmp_path, monkeypatch):
    def message(name):
        content, spec = TRICKY[name]
        return read(tmp_path, content, False, monkeypatch, **spec)

    assert message("short_row").endswith("line 3 has 2 fields but the header has 3; lines 3")
    # a file whose last line has no line break is refused as cut short before its fields are counted
    assert message("ends_mid_row").endswith(
        "is damaged: its last line (line 3) has no line break, so the file is cut short; "
        "if it is whole, ask for a new export or add the line break"
    )
    assert message("long_row").endswith("line 3 has 3 fields but the header has 2; lines 3")
    assert message("repeated_header").endswith(
        "header repeats the column name 'x' at line 1, field 2 and line 1, field 3"
    )
    assert message("empty_header_name").endswith("header has an empty column name at line 1, field 2")
    assert message("malformed_quoting").endswith(
        "cannot be parsed as delimited text with delimiter ',': line 2: ',' expected after '\"'"
    )
    assert message("only_blank_lines").endswith("has no header row")


def test_the_fast_path_is_taken_only_without_quote_characters(tmp_path, monkeypatch):
    taken = []
    unquoted = rawio._records_unquoted
    monkeypatch.setattr(
        rawio, "_records_unquoted", lambda data, delimiter: taken.append(unquoted(data, delimiter)) or taken[-1]
    )
    for name in ("crlf", "latin1", "quotes_take_the_strict_path", "non_ascii_delimiter"):
        content, spec = TRICKY[name]
        read(tmp_path, content, False, monkeypatch, **spec)
    assert [result is not None for result in taken] == [True, True, False, False]


@pytest.fixture
def default_field_limit():
    """The csv module's default field limit (frictionless raises it process-wide when imported)."""
    previous = csv.field_size_limit(131_072)
    yield
    csv.field_size_limit(previous)


def test_fields_over_the_csv_modules_limit_take_the_strict_path(tmp_path, monkeypatch, default_field_limit):
    content = b"id,x\n1," + b"a" * 200_000 + b"\n"
    assert rawio._records_unquoted(content, ",") is None
    fast, strict = read(tmp_path, content, False, monkeypatch), read(tmp_path, content, True, monkeypatch)
    assert fast == strict and "field larger than field limit" in fast


FIELDS = ["", "a", " ", "é", "1,5", "07", "x y", "\t", "\x00"]
ENDINGS = ["\n", "\r\n", "\r", "\n\n", "\r\r\n"]


def random_file(rng: random.Random) -> bytes:
    """A few lines of 1-4 fields, mostly rectangular, with mixed line endings and blank lines."""
    width = rng.randint(1, 4)
    lines = [
        ";".join(rng.choice(FIELDS) for _ in range(width if rng.random() < 0.9 else rng.randint(1, 5)))
        for _ in range(rng.randint(0, 6))
    ]
    text = rng.choice(["", "\n"]) + "".join(line + rng.choice(ENDINGS) for line in lines)
    return (text.rstrip("\r\n") if rng.random() < 0.3 else text).encode("utf-8")


def test_random_unquoted_files_read_the_same_on_both_paths(tmp_path, monkeypatch):
    rng = random.Random(14)
    for _ in range(400):
        content = random_file(rng)
        if not content:
            continue
        assert_same(
            read(tmp_path, content, False, monkeypatch, delimiter=";"),
            read(tmp_path, content, True, monkeypatch, delimiter=";"),
        )
