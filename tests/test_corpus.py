"""Exports written by independent tools (PSPP, R haven/foreign/openxlsx, LibreOffice) read back
cell by cell, and the sixth trial FI added from a draft by writing only its rule file.

The corpus is built once per session (tests/corpus.py, about 15 s); without the tools these tests
skip with the reason, except in CI (CI=true), where they fail.
"""

import datetime as dt
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from corpus import build_corpus, fi_truth, known_values, require_tools

from ipdpool.harmonize.__main__ import main as harmonize_main
from ipdpool.harmonize.problems import HarmonizationError
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.harmonize.study import harmonize_study
from ipdpool.rawio import RawDataError, read_table

REPO = Path(__file__).resolve().parents[1]
KEY = b"corpus-key-0123456789"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    require_tools()
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def same(read, known) -> bool:
    if isinstance(known, dt.date):
        return isinstance(read, (dt.date, dt.datetime)) and (read.year, read.month, read.day) == (
            known.year,
            known.month,
            known.day,
        )
    if isinstance(known, str):
        return read == known
    return isinstance(read, (int, float)) and math.isclose(float(read), float(known), rel_tol=1e-12)


CORPUS_FILES = [f"haven_v{v}.dta" for v in range(8, 16)] + [
    "foreign_v10.dta",
    "haven.sav",
    "haven.xpt",
    "pspp.sav",
    "pspp.por",
    "openxlsx.xlsx",
    "openxlsx.ods",
    "dimension_a1.xlsx",
]
PRE_UNICODE = [f"haven_v{v}.dta" for v in range(8, 14)] + ["foreign_v10.dta"]
FORMAT = {".dta": "stata", ".sav": "spss", ".por": "spss", ".xpt": "sas", ".xlsx": "excel", ".ods": "excel"}


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_every_cell_of_every_export_reads_back(corpus, name):
    spec = {"file": name, "format": FORMAT[Path(name).suffix], "id": "id"}
    if spec["format"] == "excel":
        spec["sheet"] = "known"
    if name in PRE_UNICODE:
        spec["encoding"] = "utf-8"  # pre-Unicode .dta: the bytes are the R session's UTF-8, undeclared
    table = read_table("C", "known", spec, corpus / "corpus")
    frame = table.frame.rename(columns=str.lower)  # .por and .xpt upper-case the names
    known = known_values()
    assert len(frame) == len(known), "rows lost or added"
    for column in known.columns:
        read = frame[column].tolist()
        if name == "pspp.por" and column == "town":  # a portable file holds 7-bit text: PSPP cannot store 'ä' in it
            assert table.warnings == [
                "text in 'TOWN' has characters that could not be decoded "
                "(shown as U+FFFD); ask for the file in another format or encoding"
            ]
            read, known = [r if k.isascii() else k for r, k in zip(read, known[column])], known.copy()
        if name == "foreign_v10.dta" and column == "visit":
            read = [
                dt.date(1960, 1, 1) + dt.timedelta(days=int(v)) for v in read
            ]  # written as plain numbers, no date format
        bad = [i + 1 for i, (r, k) in enumerate(zip(read, known[column])) if not same(r, k)]
        assert not bad, f"{name}: column {column} differs in rows {bad}"
    if name.endswith((".sav", ".dta")) and name != "foreign_v10.dta":
        assert {float(k): v for k, v in table.value_labels["code"].items()} == {1.0: "one", 2.0: "two", 3.0: "three"}
    if name == "pspp.sav":
        assert table.user_missing["code"] == [9.0]


def test_a_pre_unicode_stata_file_without_encoding_is_flagged(corpus):
    table = read_table("C", "known", {"file": "foreign_v10.dta", "format": "stata", "id": "id"}, corpus / "corpus")
    assert table.warnings == [
        "text in 'town' looks like UTF-8 decoded as Latin-1/cp1252 "
        "(e.g. 'Ã¤' for 'ä'); set `encoding: utf-8` for this file"
    ]


def test_unknown_encoding_is_a_clear_error(corpus):
    with pytest.raises(
        RawDataError, match="unknown encoding 'utf-9' in the rule file; use a name such as utf-8, latin-1 or cp1252"
    ):
        read_table(
            "C",
            "known",
            {"file": "foreign_v10.dta", "format": "stata", "id": "id", "encoding": "utf-9"},
            corpus / "corpus",
        )


def fi_rules(corpus, tmp_path, text=None) -> Path:
    text = text or (REPO / "tests" / "data" / "FI.yaml").read_text(encoding="utf-8")
    path = tmp_path / "FI.yaml"
    path.write_text(text.replace("RAW_DIR", str(corpus / "FI")), encoding="utf-8")
    return path


def test_the_draft_passes_the_schema_and_fails_only_on_decisions(corpus, tmp_path, capsys):
    out = tmp_path / "FI_draft.yaml"
    assert harmonize_main(["draft", str(corpus / "FI"), "--study", "FI", "--out", str(out)]) == 0
    rules = load_rules(out)  # passes the rule-file schema
    assert rules["participants"] == {"table": "fi_osallistujat", "id_type": "integer"}
    assert rules["tables"]["fi_seuranta"]["encoding"] == "utf-8" and rules["tables"]["fi_tyojaksot"]["rows"] == "many"
    text = out.read_text(encoding="utf-8")
    assert "1: TODO   # IPS" in text and "FI-0" not in text  # labels offered, ids never shown
    capsys.readouterr()
    assert harmonize_main([str(out)]) == 1
    printed = capsys.readouterr().out
    problems = [line for line in printed.splitlines() if line.startswith("  - ")]
    assert [p.split(", variable ")[1].split(":")[0] for p in problems] == ["site", "arm", "arm_original"]
    assert all("is undetermined" in p and "decide which column holds it" in p for p in problems)


def test_the_draft_lists_the_outcomes_of_the_schema_it_is_given(corpus, tmp_path):
    schema = (REPO / "config" / "schema.yaml").read_text(encoding="utf-8")
    extra = schema.replace(
        "outcomes:\n",
        "outcomes:\n  loneliness:\n    label: Loneliness\n    better: lower\n    construct: loneliness\n"
        "    higher_means: lonelier\n",
        1,
    )
    (tmp_path / "schema.yaml").write_text(extra, encoding="utf-8")
    out = tmp_path / "FI_draft.yaml"
    args = ["draft", str(corpus / "FI"), "--study", "FI", "--out", str(out), "--schema", str(tmp_path / "schema.yaml")]
    assert harmonize_main(args) == 0
    # (the rule-file JSON Schema names the outcomes too, so a new outcome is added there as well)
    outcomes = list(yaml.safe_load(out.read_text(encoding="utf-8"))["outcomes"])
    assert outcomes == ["loneliness", *load_schema(REPO / "config" / "schema.yaml")["outcomes"]]


def test_the_sixth_trial_harmonizes_to_the_known_truth(corpus, tmp_path):
    result = harmonize_study(load_rules(fi_rules(corpus, tmp_path)), load_schema(REPO / "config" / "schema.yaml"), KEY)
    truth = fi_truth()
    for column in truth.columns:
        got, want = result.data[column].astype(object).tolist(), truth[column].astype(object).tolist()
        bad = [
            i + 1
            for i, (g, w) in enumerate(zip(got, want))
            if not (
                (pd.isna(g) and pd.isna(w))
                or (not pd.isna(g) and not pd.isna(w) and (g == w or math.isclose(g, w, rel_tol=1e-12)))
            )
        ]
        assert not bad, f"{column} differs from the truth in rows {bad}"
    notes = result.rule_log.set_index("variable").loc["participant_id", "notes"]
    assert notes == (
        "osallistujat: 40 rows, 40 ids reformatted, 40 matched; "
        "seuranta: 32 rows, 0 ids reformatted, 32 matched; "
        "tyojaksot: 17 rows, 17 ids reformatted, 17 matched"
    )
    assert result.warnings == []


def test_the_day_window_and_the_encoding_matter(corpus, tmp_path):
    text = (REPO / "tests" / "data" / "FI.yaml").read_text(encoding="utf-8")
    months = harmonize_study(
        load_rules(fi_rules(corpus, tmp_path, text.replace("days: 548", "months: 18"))),
        load_schema(REPO / "config" / "schema.yaml"),
        KEY,
    )
    assert months.data["employed"].iloc[2] == 1 and fi_truth()["employed"].iloc[2] == 0  # the job started on day 549
    with pytest.raises(HarmonizationError) as caught:
        harmonize_study(
            load_rules(fi_rules(corpus, tmp_path, text.replace("    encoding: utf-8", ""))),
            load_schema(REPO / "config" / "schema.yaml"),
            KEY,
        )
    assert "codes in 'diagnoosi' missing from the recode map" in str(caught.value)


# Every format rawio reads, from the corpus (independent tools) and from pyreadstat and pandas for the
# variants the corpus lacks (.zsav, .xlsm, CSV); each file is cut at about 20 offsets.
TRUNCATED = {
    "haven_v8.dta": "stata",  # format 113
    "foreign_v10.dta": "stata",  # format 114, as R foreign writes it
    "haven_v12.dta": "stata",  # format 115
    "haven_v13.dta": "stata",  # format 117, tags
    "haven_v15.dta": "stata",  # format 119
    "haven.sav": "spss",
    "pspp.sav": "spss",
    "written.zsav": "spss",
    "pspp.por": "spss",
    "haven.xpt": "sas",
    "haven_v8.xpt": "sas",
    "haven.sas7bdat": "sas",
    "openxlsx.xlsx": "excel",
    "written.xlsm": "excel",
    "openxlsx.ods": "excel",
    "written.csv": "csv",
}
HEADER_BOUNDARIES = (1, 4, 11, 32, 64, 109, 128, 176, 210, 512)  # magic numbers, Stata 113-115 and SAS headers


def cut_offsets(data: bytes, suffix: str) -> list[int]:
    """Header boundaries, 8 offsets through the body, and the last bytes (end marks, padding, value labels).
    Left out where the format cannot tell a cut: just after a CSV line break, on an 80-byte SAS transport
    record boundary (both leave a valid, shorter file)."""
    n = len(data)
    offsets = {*HEADER_BOUNDARIES, *(n * k // 9 for k in range(1, 9)), n - 40, n - 8, n - 3, n - 1}
    if suffix == ".csv":
        offsets = {o for o in offsets if data[o - 1 : o] not in (b"\n", b"\r")}
    if suffix == ".xpt":
        offsets = {o for o in offsets if o % 80}
    return sorted(o for o in offsets if 0 < o < n)


@pytest.fixture(scope="module")
def formats(corpus):
    import pyreadstat

    folder = corpus / "corpus"
    known = known_values()
    pyreadstat.write_sav(known, folder / "written.zsav", compress=True, variable_value_labels={"code": {1: "one"}})
    (folder / "written.xlsm").write_bytes((folder / "openxlsx.xlsx").read_bytes())
    known.to_csv(folder / "written.csv", index=False)
    return folder


@pytest.mark.parametrize("name", TRUNCATED)
def test_a_file_cut_short_anywhere_is_refused_as_damaged(formats, tmp_path, name):
    data = (formats / name).read_bytes()
    spec = {"file": f"cut{Path(name).suffix}", "format": TRUNCATED[name], "id": "id"}
    whole = read_table("C", "t", {**spec, "file": name}, formats)
    assert len(whole.frame) == len(known_values())
    offsets = cut_offsets(data, Path(name).suffix)
    assert len(offsets) >= 15
    for cut in offsets:
        (tmp_path / spec["file"]).write_bytes(data[:cut])
        if name.endswith(".por") and data[cut:].strip(b"\r\n") == b"":
            # Only the last line break is gone: every byte of data is there, and is read whole.
            assert read_table("C", "t", spec, tmp_path).frame.equals(whole.frame)
            continue
        with pytest.raises(RawDataError) as caught:
            read_table("C", "t", spec, tmp_path)
        message = str(caught.value)
        assert f"file {spec['file']}" in message and "damaged" in message, f"{name} cut at {cut}: {message}"


@pytest.mark.parametrize("name", [n for n in TRUNCATED if not n.endswith(".csv")])
def test_a_file_with_a_damaged_header_is_refused_as_damaged(formats, tmp_path, name):
    data = bytearray((formats / name).read_bytes())
    # The magic number overwritten: at the start, but a portable file's first 200 bytes are a free-text
    # splash that readers skip (its signature follows them), and a SAS7BDAT magic number starts with 12 zeros.
    at = data.index(b"SPSSPORT") if name.endswith(".por") else 12 if name.endswith(".sas7bdat") else 0
    data[at : at + 8] = bytes(8)
    spec = {"file": f"bad{Path(name).suffix}", "format": TRUNCATED[name], "id": "id"}
    (tmp_path / spec["file"]).write_bytes(bytes(data))
    with pytest.raises(RawDataError) as caught:
        read_table("C", "t", spec, tmp_path)
    assert f"file {spec['file']}" in str(caught.value) and "damaged" in str(caught.value)


def test_a_damaged_stata_file_is_reported_before_any_rule_reads_its_columns(corpus, tmp_path):
    """The FI follow-up file cut short anywhere: one problem, for the whole file, never a rule's."""
    data = (corpus / "FI" / "fi_seuranta.dta").read_bytes()
    raw = tmp_path / "raw"
    shutil.copytree(corpus / "FI", raw)
    schema = load_schema(REPO / "config" / "schema.yaml")
    text = (REPO / "tests" / "data" / "FI.yaml").read_text(encoding="utf-8").replace("RAW_DIR", str(raw))
    (tmp_path / "FI.yaml").write_text(text, encoding="utf-8")
    for cut in (200, len(data) // 2, len(data) - 30, len(data) - 1):
        (raw / "fi_seuranta.dta").write_bytes(data[:cut])
        with pytest.raises(HarmonizationError) as caught:
            harmonize_study(load_rules(tmp_path / "FI.yaml"), schema, KEY)
        about_file = [p for p in caught.value.problems if p.file == "fi_seuranta.dta"]
        assert [(p.variable, "damaged" in p.message) for p in about_file] == [("(whole file)", True)], about_file


def test_harmonization_says_why_rows_do_not_link_by_id_shapes(corpus, tmp_path):
    text = (REPO / "tests/data/FI.yaml").read_text(encoding="utf-8").replace("RAW_DIR", str(corpus / "FI"))
    (tmp_path / "FI.yaml").write_text(text.replace('    id_format: {extract: "^FI-([0-9]+)$"}', ""))
    with pytest.raises(HarmonizationError) as caught:
        harmonize_study(load_rules(tmp_path / "FI.yaml"), load_schema(REPO / "config" / "schema.yaml"), KEY)
    message = str(caught.value)
    assert "participant id missing or not a valid integer id" in message  # "FI-001" is not an integer
    (tmp_path / "FI.yaml").write_text(
        text.replace('    id_format: {extract: "^FI-([0-9]+)$"}', "").replace("id_type: integer", "id_type: text")
    )
    with pytest.raises(HarmonizationError) as caught:
        harmonize_study(load_rules(tmp_path / "FI.yaml"), load_schema(REPO / "config" / "schema.yaml"), KEY)
    message = str(caught.value)
    assert "ids as written look like `99` or `9` in these rows and like `AA-999` in fi_osallistujat.sav" in message
    assert "FI-0" not in message


FLIP_SCAN = """
import json, sys
from pathlib import Path
from ipdpool.rawio import RawDataError, read_table
folder = Path(sys.argv[1])
refused = {}
for name, kind, first, last, step in json.loads(sys.argv[2]):
    data, spec = (folder / name).read_bytes(), {"file": "flipped" + Path(name).suffix, "format": kind, "id": "id"}
    refused[name] = 0
    for at in range(first, last, step):
        (folder / "flips" / spec["file"]).write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])
        try:
            read_table("C", "t", spec, folder / "flips")
        except RawDataError as error:
            refused[name] += "flipped" in str(error)
print(json.dumps(refused))
"""
# (file, first, last, step): the low byte of every 4-byte field of the first SPSS dictionary records
# (record types, widths, label and missing-value counts, formats, value-label indexes), every other byte
# of an old Stata header (row and variable counts, types).
FLIPS = [("pspp.sav", 176, 480, 4), ("haven.sav", 176, 480, 4), ("haven_v8.dta", 0, 120, 2)]


def test_a_flipped_header_byte_never_crashes_the_reader(formats):
    """Header and dictionary bytes flipped in turn: each file is read or refused with a RawDataError
    naming it, never a crash (ReadStat segfaulted on some SPSS dictionaries, attack finding ONB-1; a
    negative Stata row count raised a bare OSError, ONB-2). In a child process: a segfault would
    otherwise end the test session."""
    import json
    import subprocess
    import sys

    (formats / "flips").mkdir(exist_ok=True)
    flips = [(name, TRUNCATED[name], first, last, step) for name, first, last, step in FLIPS]
    run = subprocess.run(
        [sys.executable, "-c", FLIP_SCAN, str(formats), json.dumps(flips)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-1500:]}"
    assert all(count > 0 for count in json.loads(run.stdout).values()), run.stdout  # damage seen, not only survived


@pytest.mark.parametrize("name", ["openxlsx.xlsx", "openxlsx.ods"])
def test_a_flipped_workbook_byte_is_refused_or_harmless_and_never_quoted(formats, tmp_path, name):
    """One byte flipped at every 23rd offset: the workbook is refused (a bad zip checksum included: calamine
    reads such an entry as it is, attack finding ONB-5) or reads the same cells, and no message quotes a
    cell (calamine's own parser messages did, ONB-11)."""
    data = (formats / name).read_bytes()
    spec = {"file": f"flipped{Path(name).suffix}", "format": "excel", "id": "id"}
    whole = read_table("C", "t", {**spec, "file": name}, formats).frame
    cells = {str(v) for v in whole.to_numpy().ravel() if v is not None}  # column names may be named
    refused = 0
    for at in range(0, len(data), 23):
        (tmp_path / spec["file"]).write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])
        try:
            frame = read_table("C", "t", spec, tmp_path).frame
        except RawDataError as error:
            refused += 1
            message = str(error).split(": ", 1)[1]
            assert not [c for c in cells if len(c) > 3 and c in message], message
            continue
        assert frame.equals(whole), f"{name}: byte {at} flipped changed cells without an error"
    assert refused > 0


@pytest.mark.parametrize("name", ["haven.xpt", "haven_v8.xpt"])
def test_a_transport_file_cut_on_a_record_boundary_is_refused_unless_it_ends_on_a_row(formats, tmp_path, name):
    """A SAS transport file has no row count, so a cut on an 80-byte record boundary is caught only where it
    falls inside a row (the partial row's bytes stand where only padding blanks may); at a row boundary
    the shorter file is valid and holds exactly the first rows."""
    import pyreadstat

    data = (formats / name).read_bytes()
    whole = read_table("C", "t", {"file": name, "format": "sas", "id": "id"}, formats).frame
    width = sum(pyreadstat.read_xport(str(formats / name), metadataonly=True)[1].variable_storage_width.values())
    start = max(data.rfind(b"HEADER RECORD*******OBS     HEADER RECORD"), data.rfind(b"HEADER RECORD*******OBSV8")) + 80
    spec = {"file": "cut.xpt", "format": "sas", "id": "id"}
    inside_a_row = 0
    for cut in range(start + 80, len(data), 80):
        (tmp_path / "cut.xpt").write_bytes(data[:cut])
        if (cut - start) % width == 0:
            assert read_table("C", "t", spec, tmp_path).frame.equals(whole.iloc[: (cut - start) // width])
        else:
            inside_a_row += 1
            with pytest.raises(RawDataError, match="damaged"):
                read_table("C", "t", spec, tmp_path)
    assert inside_a_row >= 5


def test_a_workbook_holding_an_entry_twice_is_refused(formats, tmp_path):
    """A zip may hold two entries of one name (appended by a zip tool): the reader would take one of
    them and leave the other unread, so the workbook is refused whichever copy comes first."""
    import zipfile

    with zipfile.ZipFile(formats / "openxlsx.xlsx") as archive:
        entries = [(info.filename, archive.read(info.filename)) for info in archive.infolist()]
    sheet = next(item for item in entries if item[0].startswith("xl/worksheets/"))
    for order in (entries + [sheet], [sheet] + entries):
        with zipfile.ZipFile(tmp_path / "twice.xlsx", "w", zipfile.ZIP_DEFLATED) as out:
            for name, data in order:
                out.writestr(name, data)
        with pytest.raises(RawDataError, match=r"file twice\.xlsx: is damaged: zip entries .* stand twice"):
            read_table("C", "t", {"file": "twice.xlsx", "format": "excel", "id": "id"}, tmp_path)
