"""Bad-input catalogue: corrupted copies of the demo, each stopped with a message that names
study, file and variable (the exact text is recorded here), and nothing written.

Each case runs the stage that reads the input (rule-file check, harmonization of the
study, aggregate-data check, or Snakemake's start-up) on a copy in a temporary folder.
"""

import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import copy_workflow, snakemake

from ipdpool.aggregate import AggregateDataError, read_aggregate
from ipdpool.harmonize.problems import HarmonizationError
from ipdpool.harmonize.rulefile import RuleFileError, load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.harmonize.study import harmonize_study

REPO = Path(__file__).resolve().parents[1]
US, DK_PEOPLE, DK_VISITS, DK_HOURS = "us_hartford_wide.csv", "dk_deltagere.csv", "dk_besoeg.csv", "dk_timer_uge.csv"


def edit_csv(path: Path, change, sep=",", encoding="utf-8"):
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding=encoding)
    changed = change(frame)  # a change edits the frame in place or returns a new one
    frame = frame if changed is None else changed
    frame.to_csv(path, sep=sep, index=False, encoding=encoding, lineterminator="\n")


def us(change):
    return lambda raw: edit_csv(raw / "US" / US, change)


def dk(name, change):
    return lambda raw: edit_csv(raw / "DK" / name, change, sep=";", encoding="latin-1")


def truncate(study, name):
    def corrupt(raw):
        path = raw / study / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])

    return corrupt


def first_where(frame, column, value, new):
    frame.loc[(frame[column] == value).idxmax(), column] = new


def rule_text(study, old, new):
    return lambda rules_dir: (rules_dir / f"{study}.yaml").write_text(
        (rules_dir / f"{study}.yaml").read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8"
    )


def shift_header(raw):
    path = raw / "DK" / DK_VISITS
    path.write_bytes("Eksport fra registreringssystem\r\n".encode("latin-1") + path.read_bytes())


def blank_outcomes(frame):
    for column in frame.columns:
        if column.split("_m")[0] in ("rses", "qoli", "hamd", "bai", "gaf") or column.startswith("bprs_"):
            frame[column] = ""


def follow_up_before_baseline(frame):
    row = (frame["date_m18"] != "").idxmax()
    frame.loc[row, "date_m18"] = "01/01/1990"


def two_arms(frame):
    duplicate = frame.iloc[[3]].copy()
    duplicate["gruppe"] = "Sædvanlig indsats" if frame.iloc[3]["gruppe"] != "Sædvanlig indsats" else "IPS"
    frame.loc[len(frame)] = duplicate.iloc[0]


# (case id, study, raw change, rule change, expected file, expected variable, exact message text)
HARMONIZATION_CASES = [
    (
        "truncated_sav",
        "EU6",
        truncate("EU6", "eu6_baseline.sav"),
        None,
        "eu6_baseline.sav",
        "(whole file)",
        "is damaged or not a SAV file: cannot be read",
    ),
    (
        "truncated_dta",
        "NL",
        truncate("NL", "nl_metingen.dta"),
        None,
        "nl_metingen.dta",
        "(whole file)",
        "is damaged: the file is cut short or its end is missing (ask for a new export)",
    ),
    (
        "truncated_xlsx",
        "SE",
        truncate("SE", "se_ips_malmo.xlsx"),
        None,
        "se_ips_malmo.xlsx",
        "(whole file)",
        "is damaged or not a spreadsheet: cannot be read (invalid Zip archive: Could not find EOCD)",
    ),
    (
        "wrong_encoding",
        "DK",
        None,
        rule_text("DK", "encoding: latin-1", "encoding: utf-8"),
        DK_PEOPLE,
        "(whole file)",
        "is not valid utf-8 text (line 1, byte 1); set `encoding` for this file",
    ),
    (
        "wrong_delimiter",
        "DK",
        None,
        rule_text(
            "DK",
            'delimiter: ";"\n    decimal: ","\n    encoding: latin-1\n    id: løbenr\n    rows: many',
            'delimiter: ","\n    decimal: ","\n    encoding: latin-1\n    id: løbenr\n    rows: many',
        ),
        DK_VISITS,
        "(whole file)",
        (
            "has a single column 'løbenr;besøg;dato;rses;whoqol_psyk;sans_global;saps_global;gaf_f': "
            "is the delimiter ',' right?"
        ),
    ),
    (
        "header_row_shifted",
        "DK",
        shift_header,
        None,
        DK_VISITS,
        "(whole file)",
        "line 2 has 8 fields but the header has 1; lines 2, 3, 4, 5, 6 ... (1283 lines)",
    ),
    (
        "column_renamed",
        "US",
        us(lambda f: f.rename(columns={"condition": "arm_text"})),
        None,
        US,
        "arm",
        "column 'condition' not found; columns are [",
    ),
    (
        "text_in_numeric_column",
        "US",
        us(lambda f: first_where(f, "age", f["age"].iloc[0], "fifty")),
        None,
        US,
        "age",
        (
            "values in 'age' that are not numbers (plain decimals with decimal mark '.'; "
            "no NaN, inf, overflow, underscores or thousands separators); "
            "add them to `missing` if they mean unknown; values 'fifty'"
        ),
    ),
    (
        "unexpected_date_format",
        "DK",
        dk(DK_PEOPLE, lambda f: first_where(f, "randomiseringsdato", f["randomiseringsdato"].iloc[0], "2013/03/25")),
        None,
        DK_PEOPLE,
        "followup_months",
        (
            "dates in 'randomiseringsdato' that do not parse with date_format '%d-%m-%Y'; "
            "1 distinct value not shown "
            "(column 'randomiseringsdato' looks like identifiers: 450 distinct values in 720 cells)"
        ),
    ),
    (
        "recode_misses_a_code",
        "US",
        us(lambda f: first_where(f, "dx", "other", "psychosis NOS")),
        None,
        US,
        "diagnosis",
        "codes in 'dx' missing from the recode map (the map must list every code); values 'psychosis NOS (n=1)'",
    ),
    (
        "duplicate_ids",
        "US",
        us(lambda f: f.__setitem__("study_id", f["study_id"].where(f.index != 7, f["study_id"].iloc[6]))),
        None,
        US,
        "study_id",
        "duplicate participant ids in the participants table; rows 7, 8",
    ),
    (
        "participant_in_two_arms",
        "DK",
        dk(DK_PEOPLE, two_arms),
        None,
        DK_PEOPLE,
        "løbenr",
        "duplicate participant ids in the participants table; rows 4, 721",
    ),
    (
        "follow_up_before_baseline",
        "US",
        us(follow_up_before_baseline),
        None,
        US,
        "followup_months",
        "'date_m18' is before 'randomized' (follow-up before baseline); values '1 participants'",
    ),
    (
        "score_out_of_range",
        "US",
        us(lambda f: first_where(f, "gaf_m0", f["gaf_m0"].iloc[0], "150")),
        None,
        US,
        "functioning_bl",
        "scores outside the GAF range [1, 100]; values 150.0",
    ),
    (
        "all_outcomes_missing",
        "US",
        us(blank_outcomes),
        None,
        US,
        "self_esteem",
        (
            "declared collected but no participant has a baseline or follow-up score; "
            "mark it not_collected or fix the rule"
        ),
    ),
    ("empty_study", "US", us(lambda f: f.iloc[0:0]), None, US, "participants", "the participants table has no rows"),
    (
        "one_arm_only",
        "US",
        us(lambda f: f.__setitem__("condition", "IPS")),
        None,
        US,
        "arm",
        "every participant is in one arm (IPS); a randomized comparison needs both IPS and SAU",
    ),
    (
        "nobody_employed",
        "DK",
        dk(DK_HOURS, lambda f: f.__setitem__("timer", "0")),
        None,
        DK_PEOPLE,
        "employed",
        "nobody was employed during follow-up (720 with known employment): check the employment rule",
    ),
    (
        "missing_raw_file",
        "NL",
        lambda raw: (raw / "NL" / "nl_banen.dta").unlink(),
        None,
        "nl_banen.dta",
        "(whole file)",
        "not found (looked in",
    ),
    (
        "empty_raw_file",
        "EU6",
        lambda raw: (raw / "EU6" / "eu6_followup18.sav").write_bytes(b""),
        None,
        "eu6_followup18.sav",
        "(whole file)",
        "is empty (0 bytes)",
    ),
    (
        "missing_sheet",
        "SE",
        None,
        rule_text("SE", 'sheet: "18 mån"', 'sheet: "18 manader"'),
        "se_ips_malmo.xlsx",
        "(whole file)",
        "has no sheet '18 manader'; sheets are ['Baslinje', '6 mån', '12 mån', '18 mån']",
    ),
    (
        "orphan_follow_up_row",
        "EU6",
        None,
        None,
        "eu6_followup18.sav",
        "pid",
        "rows whose participant is not in the participants table",
    ),
]


def cut_mid_row(raw):
    path = raw / "US" / US
    path.write_bytes(path.read_bytes()[:-40])


def ragged_row(raw):
    path = raw / "US" / US
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[5] += ",extra"
    path.write_text("\n".join(lines), encoding="utf-8")


def repeated_header(raw):
    path = raw / "US" / US
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(",sex,", ",age,", 1), encoding="utf-8")


def xlsx_part(raw, change):
    import zipfile

    path = raw / "SE" / "se_ips_malmo.xlsx"
    with zipfile.ZipFile(path) as source:
        items = [(item, source.read(item.filename)) for item in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for item, data in items:
            target.writestr(item, change(item.filename, data))


def formula_without_value(raw):
    import re

    # The randomization date of the first participant becomes a formula saved without its result.
    xlsx_part(
        raw,
        lambda name, data: (
            re.sub(rb'<c r="E2"[^>]*>.*?</c>', b'<c r="E2"><f>TODAY()</f></c>', data, count=1)
            if name == "xl/worksheets/sheet1.xml"
            else data
        ),
    )


def merged_header(raw):
    xlsx_part(
        raw,
        lambda name, data: (
            data.replace(b"</sheetData>", b'</sheetData><mergeCells count="1"><mergeCell ref="B1:C1"/></mergeCells>', 1)
            if name == "xl/worksheets/sheet1.xml"
            else data
        ),
    )


HARMONIZATION_CASES += [
    (
        "csv_cut_mid_row",
        "US",
        cut_mid_row,
        None,
        US,
        "(whole file)",
        (
            "is damaged: its last line (line 205) has no line break, so the file is cut short; "
            "if it is whole, ask for a new export or add the line break"
        ),
    ),
    (
        "csv_row_with_extra_field",
        "US",
        ragged_row,
        None,
        US,
        "(whole file)",
        "line 6 has 80 fields but the header has 79; lines 6",
    ),
    (
        "csv_repeated_header",
        "US",
        repeated_header,
        None,
        US,
        "(whole file)",
        "header repeats the column name 'age' at line 1, field 7 and line 1, field 8",
    ),
    (
        "unknown_encoding",
        "DK",
        None,
        rule_text("DK", "encoding: latin-1", "encoding: latin-9x"),
        DK_PEOPLE,
        "(whole file)",
        "unknown encoding 'latin-9x' in the rule file; use a name such as utf-8, latin-1 or cp1252",
    ),
    (
        "xlsx_formula_without_cached_value",
        "SE",
        formula_without_value,
        None,
        "se_ips_malmo.xlsx [Baslinje]",
        "(whole file)",
        (
            "formula cells without a cached value (the file was never recalculated "
            "and saved by a spreadsheet program); cells E2"
        ),
    ),
    (
        "xlsx_merged_header",
        "SE",
        merged_header,
        None,
        "se_ips_malmo.xlsx [Baslinje]",
        "(whole file)",
        "header has merged cells B1:C1; unmerge them so that every column has its own name",
    ),
]


# ------------------------------------------------------------ leaks, integrity and resource cases (issue 12)

NAMES = [f"Anna{i:03d} Jensen{i:03d}" for i in range(300)]
SSNS = [f"{100 + i:03d}-{i % 90 + 10:02d}-{1000 + i:04d}" for i in range(300)]


def with_identifiers(frame):
    """Columns no rule should read: names (named as such) and national ids under a neutral name."""
    frame["name"] = NAMES[: len(frame)]
    frame["ref"] = SSNS[: len(frame)]
    frame["cpr"] = [f"{1012345678 + 7 * i}" for i in range(len(frame))]


def symlink_out(raw):
    outside = raw.parent / "outside.csv"
    (raw / "US" / US).rename(outside)
    (raw / "US" / US).symlink_to(outside)


def key_in_raw_dir(raw):
    (raw / "US" / US).write_bytes(CATALOGUE_KEY + b"\n")


def both(*changes):
    def change(folder):
        for one in changes:
            one(folder)

    return change


def empty_followup_file(raw):
    import pyreadstat

    path = raw / "EU6" / "eu6_followup18.sav"
    frame, meta = pyreadstat.read_sav(path, user_missing=True)
    pyreadstat.write_sav(
        frame.iloc[0:0], path, variable_value_labels=meta.variable_value_labels, variable_format={"fudate": "DATE11"}
    )


def arm_without_followup(frame):
    frame.loc[frame["condition"] == "IPS", "rses_m18"] = ""


CATALOGUE_KEY = b"catalogue-key-0123456789"
US_ARM = "arm: {recode: {table: wide, column: condition, map: {IPS: IPS, PSR: SAU, BVR: SAU}}}"
US_TABLE = "file: us_hartford_wide.csv"

HARMONIZATION_CASES += [
    (
        "raw_path_up_to_the_key",
        "US",
        None,
        rule_text("US", US_TABLE, "file: ../../DEMO_ONLY_pseudonym.key"),
        "../../DEMO_ONLY_pseudonym.key",
        "(whole file)",
        "is outside the study's raw_dir (after following links); every raw file must be inside raw_dir",
    ),
    (
        "raw_path_absolute",
        "US",
        None,
        rule_text("US", US_TABLE, "file: /etc/passwd"),
        "/etc/passwd",
        "(whole file)",
        "is outside the study's raw_dir (after following links); every raw file must be inside raw_dir",
    ),
    (
        "raw_file_symlinked_out",
        "US",
        symlink_out,
        None,
        US,
        "(whole file)",
        "is outside the study's raw_dir (after following links); every raw file must be inside raw_dir",
    ),
    (
        "key_copied_into_raw_dir",
        "US",
        key_in_raw_dir,
        None,
        US,
        "(whole file)",
        "holds the pseudonym key: a key file is never read as a table",
    ),
    (
        "names_read_into_age",
        "US",
        us(with_identifiers),
        rule_text("US", "column: age,", "column: name,"),
        US,
        "age",
        (
            "values in 'name' that are not numbers (plain decimals with decimal mark '.'; "
            "no NaN, inf, overflow, underscores or thousands separators); "
            "add them to `missing` if they mean unknown; "
            "204 distinct values not shown (column 'name' is named like an identifier or free text)"
        ),
    ),
    (
        "national_ids_read_into_age",
        "US",
        us(with_identifiers),
        rule_text("US", "column: age,", "column: ref,"),
        US,
        "age",
        (
            "values in 'ref' that are not numbers (plain decimals with decimal mark '.'; "
            "no NaN, inf, overflow, underscores or thousands separators); "
            "add them to `missing` if they mean unknown; "
            "204 distinct values not shown (column 'ref' looks like identifiers: 204 distinct values in 204 cells)"
        ),
    ),
    (
        "national_ids_read_as_scores",
        "US",
        us(with_identifiers),
        rule_text("US", "column: gaf_m0,", "column: cpr,"),
        US,
        "functioning_bl",
        (
            "scores outside the GAF range [1, 100]; "
            "204 distinct values not shown (column 'cpr' is named like an identifier or free text)"
        ),
    ),
    (
        "national_ids_recoded_into_sex",
        "US",
        us(with_identifiers),
        rule_text("US", "sex: {recode: {table: wide, column: sex,", "sex: {recode: {table: wide, column: ref,"),
        US,
        "sex",
        (
            "codes in 'ref' missing from the recode map (the map must list every code); "
            "204 distinct values not shown (column 'ref' looks like identifiers: 204 distinct values in 204 cells)"
        ),
    ),
    (
        "names_copied_into_sex",
        "US",
        us(with_identifiers),
        rule_text(
            "US",
            "sex: {recode: {table: wide, column: sex, map: {M: male, F: female}}}",
            "sex: {copy: {table: wide, column: name}}",
        ),
        "(harmonized data)",
        "sex",
        (
            "column sex: fails isin(['female', 'male']): 204 failing values not shown "
            "(column 'sex' looks like identifiers: 204 distinct values in 204 cells) "
            "(participants 1, 2, 3, 4, 5 in file order)"
        ),
    ),
    (
        "site_copied_from_national_ids",
        "US",
        us(with_identifiers),
        rule_text("US", "site: {constant: Hartford}", "site: {copy: {table: wide, column: ref}}"),
        US,
        "site",
        (
            "free-text field copied from 'ref' looks like identifiers: 204 distinct values in 204 cells; "
            "it may hold identifiers: list its values under `allowed` in the copy rule"
        ),
    ),
    (
        "arm_original_copied_from_names",
        "US",
        us(with_identifiers),
        rule_text(
            "US",
            "arm_original: {copy: {table: wide, column: condition}}",
            "arm_original: {copy: {table: wide, column: name}}",
        ),
        US,
        "arm_original",
        (
            "free-text field copied from 'name' looks like identifiers: 204 distinct values in 204 cells; "
            "it may hold identifiers: list its values under `allowed` in the copy rule"
        ),
    ),
    (
        "site_not_in_allowed",
        "DK",
        None,
        rule_text(
            "DK",
            "site: {copy: {table: participants, column: by}}",
            "site: {copy: {table: participants, column: by, allowed: [Aarhus, København]}}",
        ),
        DK_PEOPLE,
        "site",
        "values in 'by' that are not in `allowed`; values 'Odense'",
    ),
    (
        "selection_keeps_no_rows",
        "DK",
        None,
        rule_text("DK", 'equals: "18 mdr"', 'equals: "18 Mdr"'),
        DK_VISITS,
        "selection followup_visit",
        (
            "keeps no rows; if this is right, "
            'say why in the rule file: `acknowledged: {"empty selection followup_visit": <reason>}`'
        ),
    ),
    (
        "followup_file_without_cases",
        "EU6",
        empty_followup_file,
        None,
        "eu6_followup18.sav",
        "table followup",
        'has no rows; if this is right, say why in the rule file: `acknowledged: {"empty table followup": <reason>}`',
    ),
    (
        "arm_without_followup",
        "US",
        us(arm_without_followup),
        None,
        US,
        "self_esteem_fu",
        (
            "no participant in arm IPS has a follow-up score; "
            'if this is right, say why in the rule file: `acknowledged: {"no follow-up self_esteem IPS": <reason>}`'
        ),
    ),
    (
        "published_n_differs",
        "US",
        None,
        rule_text("US", "  IPS: 68\n", "  IPS: 70\n"),
        US,
        "arm_original",
        (
            "arm 'IPS' has 68 randomized participants, published_n says 70; "
            'if this is right, say why in the rule file: `acknowledged: {"published_n IPS": <reason>}`'
        ),
    ),
    (
        "acknowledged_but_not_happening",
        "US",
        None,
        rule_text(
            "US", "published_n:", 'acknowledged: {"published_n IPS": "the paper counted two withdrawals"}\npublished_n:'
        ),
        "(rule file)",
        "acknowledged",
        "`published_n IPS` is acknowledged but does not happen; remove it",
    ),
]


def orphan_follow_up(raw):
    import pyreadstat

    path = raw / "EU6" / "eu6_followup18.sav"
    frame, meta = pyreadstat.read_sav(path, user_missing=True)
    frame.loc[0, "pid"] = "999"
    pyreadstat.write_sav(
        frame, path, variable_value_labels=meta.variable_value_labels, variable_format={"fudate": "DATE11"}
    )


ORPHAN = [c[0] for c in HARMONIZATION_CASES].index("orphan_follow_up_row")
HARMONIZATION_CASES[ORPHAN] = HARMONIZATION_CASES[ORPHAN][:2] + (orphan_follow_up,) + HARMONIZATION_CASES[ORPHAN][3:]


@pytest.fixture
def workspace(tmp_path):
    shutil.copytree(REPO / "resources" / "demo" / "raw", tmp_path / "raw")
    shutil.copytree(REPO / "config" / "studies", tmp_path / "studies")
    return tmp_path


@pytest.mark.parametrize(
    "case,study,raw_change,rule_change,file,variable,message",
    HARMONIZATION_CASES,
    ids=[c[0] for c in HARMONIZATION_CASES],
)
def test_harmonization_stops_with_a_located_message(
    workspace, case, study, raw_change, rule_change, file, variable, message
):
    if raw_change:
        raw_change(workspace / "raw")
    if rule_change:
        rule_change(workspace / "studies")
    rules = load_rules(workspace / "studies" / f"{study}.yaml")
    rules["raw_dir"] = str(workspace / "raw" / study)
    with pytest.raises(HarmonizationError) as caught:
        harmonize_study(rules, load_schema(REPO / "config" / "schema.yaml"), b"catalogue-key-0123456789")
    text = str(caught.value)
    assert f"study {study}, file {file}, variable {variable}: {message}" in text, text
    assert not (workspace / "results").exists()


# ------------------------------------------------------------ rule files, aggregate data, configuration


def test_rule_file_with_an_unknown_key(workspace):
    rule_text("US", "study: US", "study: US\ncolour: blue")(workspace / "studies")
    with pytest.raises(RuleFileError) as caught:
        load_rules(workspace / "studies" / "US.yaml")
    assert caught.value.problems == [
        "top level: unknown key `colour`; allowed keys: "
        "study, title, raw_dir, published_n, acknowledged, tables, participants, selections, variables, outcomes"
    ]
    assert str(caught.value).startswith(f"rule file {workspace / 'studies' / 'US.yaml'}")


def test_malicious_rule_text_is_rejected_and_never_run(workspace, tmp_path):
    marker = tmp_path / "was_run"
    code = f"__import__('os').system('touch {marker}')"
    rule_text(
        "US",
        "arm: {recode: {table: wide, column: condition, map: {IPS: IPS, PSR: SAU, BVR: SAU}}}",
        f'arm: {{expression: "{code}"}}',
    )(workspace / "studies")
    with pytest.raises(RuleFileError) as caught:
        load_rules(workspace / "studies" / "US.yaml")
    assert caught.value.problems[0].startswith("variables.arm: unknown key `expression`; allowed keys: copy, recode,")
    assert not marker.exists()


# (case id, rule file, old text, new text, the one-sentence problem): every kind of schema failure, no schema dump
RULE_FILE_CASES = [
    (
        "key_not_allowed_for_format",
        "NL",
        "nl_deelnemers.dta, format: stata,",
        "nl_deelnemers.dta, format: stata, delimiter: ';',",
        (
            "tables.participants: `delimiter` is not allowed for format stata; "
            "allowed keys: file, format, id, id_format, site, rows, date_format, encoding"
        ),
    ),
    (
        "encoding_for_excel",
        "SE",
        "sheet: Baslinje,",
        "sheet: Baslinje, encoding: latin-1,",
        (
            "tables.baseline: `encoding` is not allowed for format excel; "
            "allowed keys: file, format, id, id_format, site, rows, date_format, sheet"
        ),
    ),
    (
        "misspelt_table_key",
        "NL",
        "nl_deelnemers.dta, format:",
        "nl_deelnemers.dta, fromat:",
        (
            "tables.participants: unknown key `fromat` (did you mean `format`?); allowed keys: "
            "file, format, delimiter, decimal, encoding, catalog, sheet, id, id_format, site, rows, date_format"
        ),
    ),
    (
        "unknown_format",
        "NL",
        "nl_deelnemers.dta, format: stata",
        "nl_deelnemers.dta, format: dta",
        "tables.participants.format: 'dta' is not allowed; allowed values: spss, stata, sas, csv, excel",
    ),
    (
        "missing_required_key",
        "NL",
        "format: stata, id: respnr}\n  visits",
        "format: stata}\n  visits",
        "tables.participants: `id` is required here; required keys: file, format, id",
    ),
    (
        "misspelt_enum_value",
        "NL",
        "id_type: integer",
        "id_type: int",
        "participants.id_type: 'int' is not allowed (did you mean `integer`?); allowed values: integer, text",
    ),
    (
        "no_rule",
        "NL",
        "arm: {recode: {table: participants, column: groep, map: {1: IPS, 2: SAU}}}",
        "arm: {}",
        (
            "variables.arm: give exactly one rule, "
            "one of copy, recode, linear, months_between, constant, not_collected, undetermined (found 0: none)"
        ),
    ),
    (
        "months_and_days",
        "NL",
        "      months: 18\n",
        "      months: 18\n      days: 548\n",
        "variables.employed.employment_episodes: give exactly one of months, days",
    ),
    (
        "month_days_with_days",
        "NL",
        "months: [15, 21]",
        "days: [457, 639]\n      month_days: 30",
        (
            "selections.followup_visit.visit_window: `month_days` is not allowed together with `days` "
            "(month_days converts months into days)"
        ),
    ),
    (
        "wrong_type",
        "NL",
        "      months: 18\n",
        "      months: eighteen\n",
        "variables.employed.employment_episodes.months: expected a whole number, not the text 'eighteen'",
    ),
    (
        "range_of_one_number",
        "NL",
        "range: [12, 60]",
        "range: [12]",
        "outcomes.functioning.range: must be a list of exactly 2 items, not 1",
    ),
    (
        "bad_table_name",
        "NL",
        "  jobs: {file",
        "  1jobs: {file",
        "tables: '1jobs' is not a valid name (a letter, then letters, digits or _)",
    ),
]


def assert_rule_file_refused(workspace, study: str, old: str, new: str, problem: str) -> None:
    """The rule file with `old` replaced by `new` is refused with exactly this one problem."""
    path = workspace / "studies" / f"{study}.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(RuleFileError) as caught:
        load_rules(path)
    assert caught.value.problems == [problem]


@pytest.mark.parametrize("case,study,old,new,problem", RULE_FILE_CASES, ids=[c[0] for c in RULE_FILE_CASES])
def test_rule_file_errors_are_one_plain_sentence(workspace, case, study, old, new, problem):
    assert_rule_file_refused(workspace, study, old, new, problem)


def test_invalid_yaml_rule_file(workspace):
    rule_text("US", "site: {constant: Hartford}", "site: {constant: Hartford")(workspace / "studies")
    with pytest.raises(RuleFileError) as caught:
        load_rules(workspace / "studies" / "US.yaml")
    assert caught.value.problems[0].startswith("not valid YAML: while parsing a flow mapping")


@pytest.mark.parametrize(
    "column,value,message",
    [
        (
            "sd",
            "-4.8",
            (
                "line 3 (trial 'EU6', outcome 'quality_of_life', arm 'IPS'): "
                "sd: -4.8 is less than or equal to the minimum of 0"
            ),
        ),
        (
            "outcome",
            "wellbeing",
            "line 3 (trial 'EU6', outcome 'wellbeing', arm 'IPS'): outcome: 'wellbeing' is not one of",
        ),
    ],
    ids=["aggregate_negative_sd", "aggregate_unknown_outcome"],
)
def test_aggregate_data_rows(tmp_path, column, value, message):
    lines = (REPO / "config" / "aggregate" / "ips_rcts.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[1].split("\t")
    fields = lines[2].split("\t")
    fields[header.index(column)] = value
    lines[2] = "\t".join(fields)
    path = tmp_path / "aggregate.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(AggregateDataError) as caught:
        read_aggregate(path, REPO / "workflow" / "schemas" / "aggregate.schema.yaml")
    assert any(problem.startswith(message) for problem in caught.value.problems), caught.value.problems


@pytest.mark.workflow
def test_config_pointing_at_a_missing_study_stops_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path)
    (workdir / "config" / "studies" / "NL.yaml").unlink()
    result = snakemake(workdir, "--cores", "1")
    assert result.returncode != 0
    assert (
        "study NL: rule file config/studies/NL.yaml named in the config does not exist" in result.stderr + result.stdout
    )
    assert not (workdir / "results").exists()


@pytest.mark.workflow
def test_a_raw_file_removed_after_a_run_stops_the_next_one(completed_run, tmp_path):
    # Snakemake itself reports nothing to do when the outputs made from a missing input exist.
    workdir = tmp_path / "run"
    shutil.copytree(completed_run, workdir, symlinks=True)
    (workdir / "resources" / "demo" / "raw" / "US" / "us_hartford_wide.csv").unlink()
    for args in (("-n",), ("--cores", "1")):
        result = snakemake(workdir, *args)
        assert result.returncode != 0
        assert (
            "study US: rule file config/studies/US.yaml declares raw file(s) not found in raw_dir "
            "resources/demo/raw/US: us_hartford_wide.csv"
        ) in result.stderr + result.stdout
        assert "Nothing to be done" not in result.stderr + result.stdout


# (case id, rule file, old text, new text, the exact problem): YAML that PyYAML would accept with a silent change
YAML_CASES = [
    (
        "duplicate_map_key",
        "US",
        "map: {IPS: IPS, PSR: SAU, BVR: SAU}",
        "map: {IPS: IPS, PSR: SAU, BVR: SAU, BVR: IPS}",
        "line 27: duplicate key 'BVR' (first at line 27); keys 1, 1.0 and \"1\" are the same key",
    ),
    (
        "second_rule_for_a_variable",
        "US",
        "  sex: {recode: {table: wide, column: sex, map: {M: male, F: female}}}\n",
        (
            "  sex: {recode: {table: wide, column: sex, map: {M: male, F: female}}}\n"
            "  sex: {recode: {table: wide, column: sex, map: {M: female, F: male}}}\n"
        ),
        "line 44: duplicate key 'sex' (first at line 43); keys 1, 1.0 and \"1\" are the same key",
    ),
    (
        "one_and_quoted_one",
        "NL",
        "map: {1: IPS, 2: SAU}",
        'map: {1: IPS, 2: SAU, "1": SAU}',
        "line 33: duplicate key '1' (first at line 33); keys 1, 1.0 and \"1\" are the same key",
    ),
    (
        "anchor_and_alias",
        "US",
        '  age: {copy: {table: wide, column: age, missing: ["999"]}}',
        '  age: &age {copy: {table: wide, column: age, missing: ["999"]}}\n  # reused below',
        "line 42: anchors (&age) are not allowed; write the value out",
    ),
    (
        "merge_key",
        "US",
        "  participant_id: {pseudonym: true}",
        "  participant_id: {<<: {pseudonym: true}}",
        "line 25: merge keys (<<) are not allowed",
    ),
]


@pytest.mark.parametrize("case,study,old,new,problem", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_rule_files_with_duplicate_keys_or_aliases_are_refused(workspace, case, study, old, new, problem):
    assert_rule_file_refused(workspace, study, old, new, problem)


def billion_laughs(levels=9):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


# (case id, hostile text, the exact problem): each refused in well under a second without building anything big
RESOURCE_CASES = [
    ("alias_bomb", billion_laughs(), "line 1: anchors (&a0) are not allowed; write the value out"),
    ("deep_nesting", "x: " + "[" * 20000 + "]" * 20000 + "\n", "line 1: nested more than 50 levels deep"),
    ("huge_rule_file", "title: " + "x" * (2 << 20) + "\n", "more than 1048576 bytes"),
]


@pytest.mark.parametrize("case,text,problem", RESOURCE_CASES, ids=[c[0] for c in RESOURCE_CASES])
def test_hostile_rule_files_fail_fast_with_bounded_memory(tmp_path, case, text, problem):
    import resource
    import time

    path = tmp_path / "hostile.yaml"
    path.write_text(text, encoding="utf-8")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(RuleFileError) as caught:
        load_rules(path)
    assert time.perf_counter() - started < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kB: no expansion
    assert caught.value.problems == [problem]


def test_a_config_with_a_duplicate_key_is_refused(tmp_path):
    from ipdpool.yamlfile import StrictYAMLError, check_files

    config = tmp_path / "config.yaml"
    config.write_text(
        (REPO / "config" / "config.yaml").read_text(encoding="utf-8") + "demo_mode: false\n", encoding="utf-8"
    )
    with pytest.raises(StrictYAMLError, match=r"duplicate key 'demo_mode' \(first at line \d+\)"):
        check_files([config])


# (case id, configuration, environment key, the exact refusal): the demo key by its bytes, weak keys
DEMO_KEY = REPO / "resources" / "demo" / "DEMO_ONLY_pseudonym.key"
KEY_CASES = [
    (
        "demo_key_from_the_environment",
        {"demo_mode": False},
        DEMO_KEY.read_text().strip(),
        (
            "the pseudonym key is the public demo key (recognised by its bytes, whatever file or variable holds it); "
            "it is refused unless demo_mode is true"
        ),
    ),
    (
        "demo_key_copied_elsewhere",
        {"demo_mode": False, "pseudonym": {"key_file": "COPY"}},
        None,
        (
            "the pseudonym key is the public demo key (recognised by its bytes, whatever file or variable holds it); "
            "it is refused unless demo_mode is true"
        ),
    ),
    (
        "short_key",
        {"demo_mode": False},
        "0123456789abcde",
        (
            "the pseudonym key is too weak (shorter than 16 bytes); "
            "use at least 16 random bytes, e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`"
        ),
    ),
    (
        "repetitive_key",
        {"demo_mode": False},
        "abababababababababababab",
        (
            "the pseudonym key is too weak (fewer than 8 distinct bytes); "
            "use at least 16 random bytes, e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`"
        ),
    ),
    (
        "low_entropy_key",
        {"demo_mode": False},
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabcdefgh",
        (
            "the pseudonym key is too weak (1.1 bits of entropy per byte, fewer than 3.0); "
            "use at least 16 random bytes, e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`"
        ),
    ),
]


@pytest.mark.parametrize("case,config,environment,message", KEY_CASES, ids=[c[0] for c in KEY_CASES])
def test_the_demo_key_and_weak_keys_are_refused(tmp_path, monkeypatch, case, config, environment, message):
    from ipdpool.harmonize.pseudonym import ENV_VAR, PseudonymKeyError, load_key

    monkeypatch.delenv(ENV_VAR, raising=False)
    if environment:
        monkeypatch.setenv(ENV_VAR, environment)
    if config.get("pseudonym", {}).get("key_file") == "COPY":
        (tmp_path / "site.key").write_bytes(DEMO_KEY.read_bytes())
        config = {**config, "pseudonym": {"key_file": "site.key"}}
    with pytest.raises(PseudonymKeyError) as caught:
        load_key(config, tmp_path)
    assert str(caught.value) == message


# Every case above in one of four categories; docs/validation.md states what each category guarantees.
CATEGORIES = {
    "leaks": [
        "raw_path_up_to_the_key",
        "raw_path_absolute",
        "raw_file_symlinked_out",
        "key_copied_into_raw_dir",
        "names_read_into_age",
        "national_ids_read_into_age",
        "national_ids_read_as_scores",
        "national_ids_recoded_into_sex",
        "names_copied_into_sex",
        "site_copied_from_national_ids",
        "arm_original_copied_from_names",
        "site_not_in_allowed",
        "malicious_rule_text",
    ]
    + [c[0] for c in KEY_CASES],
    "partial reads": [
        "truncated_sav",
        "truncated_dta",
        "truncated_xlsx",
        "wrong_encoding",
        "wrong_delimiter",
        "header_row_shifted",
        "missing_raw_file",
        "empty_raw_file",
        "missing_sheet",
        "csv_cut_mid_row",
        "csv_row_with_extra_field",
        "csv_repeated_header",
        "unknown_encoding",
        "xlsx_formula_without_cached_value",
        "xlsx_merged_header",
        "selection_keeps_no_rows",
        "followup_file_without_cases",
        "empty_study",
    ],
    "integrity": [
        "column_renamed",
        "text_in_numeric_column",
        "unexpected_date_format",
        "recode_misses_a_code",
        "duplicate_ids",
        "participant_in_two_arms",
        "follow_up_before_baseline",
        "score_out_of_range",
        "all_outcomes_missing",
        "one_arm_only",
        "nobody_employed",
        "orphan_follow_up_row",
        "arm_without_followup",
        "published_n_differs",
        "acknowledged_but_not_happening",
        "rule_file_unknown_key",
        "invalid_yaml",
        "aggregate_negative_sd",
        "aggregate_unknown_outcome",
        "config_missing_study",
        "config_duplicate_key",
    ]
    + [c[0] for c in RULE_FILE_CASES + YAML_CASES],
    "resource": [c[0] for c in RESOURCE_CASES],
}


def test_the_catalogue_has_four_categories_and_at_least_60_cases():
    cases = [c[0] for c in HARMONIZATION_CASES + RULE_FILE_CASES + YAML_CASES + RESOURCE_CASES + KEY_CASES]
    cases += [
        "rule_file_unknown_key",
        "malicious_rule_text",
        "invalid_yaml",
        "aggregate_negative_sd",
        "aggregate_unknown_outcome",
        "config_missing_study",
        "config_duplicate_key",
    ]
    categorized = [case for names in CATEGORIES.values() for case in names]
    assert sorted(categorized) == sorted(cases)  # each case in exactly one category
    assert len(cases) >= 60 and all(CATEGORIES.values())
