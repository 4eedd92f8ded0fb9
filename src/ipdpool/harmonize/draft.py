"""A draft rule file for a new trial, from its raw folder: tables (non-tabular sheets skipped, saying
so), the participants table, ids, `id_format`, `site` and `rows` decided from the data (draft_link), every
column described, and every variable and outcome `undetermined` with a proposed rule and the columns it
would read (draft_propose).

    python -m ipdpool.harmonize draft RAW_DIR --study ID [--out config/studies/ID.yaml]

The draft passes the rule-file schema; checking it fails only on what the user must decide (which
columns hold site, arm and arm_original). Values are listed only for coded columns (few distinct
values, not ids, dates or names), capped, as YAML comments; ids are described by their shape only.
bench/bench_draft.py measures how often the draft is right.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import python_calamine
import yaml

from ..rawio import RawDataError, RawTable, read_table
from .draft_link import link, linkage_report
from .draft_propose import HINTS, Context, Proposal, is_date_column, propose_outcome, propose_variable
from .values import code_key, parse_dates

FORMAT_OF = {
    ".sav": "spss",
    ".zsav": "spss",
    ".por": "spss",
    ".dta": "stata",
    ".sas7bdat": "sas",
    ".xpt": "sas",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".ods": "excel",
}
SAMPLE = 8  # distinct values shown per coded column
CODED = 12  # at most this many distinct values for a column to count as coded
DATE_FORMATS = ("%d.%m.%Y", "%d-%m-%Y", "%d/%m/%Y", "%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d")
# Names of columns whose values may identify a person: never sampled.
PERSONAL = re.compile(
    r"(name|navn|namn|naam|nimi|cpr|ssn|hetu|personnummer|bsn|birth|fød|föd|geboorte|synty|address|adresse|osoite|phone|email|note|comment|bemærk|opmerk|kommentar|huom)",
    re.IGNORECASE,
)
VARIABLES = ("site", "arm", "arm_original", "employed", "followup_months", "age", "sex", "diagnosis")
TRANSLITERATE = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "ð": "d", "þ": "th", "ł": "l"})
MAX_HEADER_WORDS = 6  # a header cell with more words is a sentence: the sheet holds notes, not a table


def _table_name(text: str, taken: set) -> str:
    """A rule-file table name from a file or sheet name: letters transliterated ("Oppfølging" ->
    "Oppfolging"), other characters as _; the sheet itself is kept as written under `sheet:`."""
    plain = unicodedata.normalize("NFKD", text.translate(TRANSLITERATE)).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9_]+", "_", plain).strip("_") or "table"
    name = name if name[0].isalpha() else f"t_{name}"
    while name in taken:
        name += "_"
    return name


def _csv_spec(path: Path) -> dict:
    data = path.read_bytes()
    try:
        text, encoding = data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = data.decode("cp1252", errors="replace"), "cp1252"
    first = text.splitlines()[0] if text else ""
    delimiter = max(";,\t|", key=first.count)
    sample = text[:20000]
    decimal = "," if delimiter != "," and re.search(r"\d,\d", sample) and not re.search(r"\d\.\d", sample) else "."
    spec = {"format": "csv", "delimiter": delimiter, "encoding": encoding}
    if decimal == ",":
        spec["decimal"] = ","
    return spec


def discover(raw_dir: Path) -> list[tuple[str, dict]]:
    """(table name, table spec without id) for every readable file, one per sheet of a workbook (named
    by the sheet when the workbook has several)."""
    tables, taken = [], set()
    for path in sorted(raw_dir.iterdir()):
        kind = FORMAT_OF.get(path.suffix.lower())
        if kind is None or not path.is_file():
            continue
        if kind == "excel":
            try:
                workbook = python_calamine.CalamineWorkbook.from_path(str(path))
            except Exception:  # a damaged workbook: read_table reports it below
                sheets = [None]
            else:
                sheets = workbook.sheet_names
                workbook.close()
            for sheet in sheets:
                name = _table_name(sheet if sheet and len(sheets) > 1 else path.stem, taken)
                taken.add(name)
                tables.append((name, {"file": path.name, "format": "excel", **({"sheet": sheet} if sheet else {})}))
            continue
        name = _table_name(path.stem, taken)
        taken.add(name)
        spec = _csv_spec(path) if kind == "csv" else {"format": kind}
        tables.append((name, {"file": path.name, **spec}))
    return tables


def not_a_table(raw: RawTable) -> str | None:
    """Why a sheet is not a data table (an instructions or notes sheet), or None."""
    header = [str(c) for c in raw.frame.columns]
    if len(header) < 2:
        return "a single column (notes or instructions?), not a table of participants"
    sentences = [c for c in header if len(c.split()) > MAX_HEADER_WORDS]
    if sentences:
        return f"{len(sentences)} header cell(s) of more than {MAX_HEADER_WORDS} words (notes or instructions?)"
    return None


def _kind(values: pd.Series) -> str:
    present = values.dropna()
    present = present[present.map(lambda v: not (isinstance(v, str) and v.strip() == ""))]
    if present.empty:
        return "empty"
    if present.map(lambda v: isinstance(v, (dt.date, dt.datetime, pd.Timestamp))).all():
        return "date"
    if present.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all():
        return "number"
    text = present.astype(str).str.strip()
    if pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce").notna().all():
        return "number (as text)"
    return "text"


def _date_format(values: pd.Series) -> str | None:
    text = values.dropna().astype(str).str.strip()
    text = text[text != ""]
    for candidate in DATE_FORMATS:
        if len(text) and not parse_dates(text, candidate)[1].any():
            return candidate
    return None


def _describe(name: str, raw: RawTable, id_column: str, dates: set) -> list[str]:
    lines = [f"{name} ({raw.path.name}): {len(raw.frame)} rows"]
    for column in raw.frame.columns:
        values = raw.frame[column]
        kind = "date (text)" if column in dates and _kind(values) == "text" else _kind(values)
        parts = [f"  {column}: {kind}"]
        labels = raw.value_labels.get(column)
        if labels:
            parts.append("labels " + ", ".join(f"{code_key(k)}={v}" for k, v in list(labels.items())[:SAMPLE]))
        if raw.user_missing.get(column):
            parts.append(f"declared missing {raw.user_missing[column]}")
        distinct = values.dropna().map(code_key).loc[lambda s: s != ""].unique()
        identifying = column == id_column or column in dates or kind == "date" or PERSONAL.search(str(column))
        if not identifying and len(distinct) <= CODED:
            parts.append("values " + ", ".join(sorted(map(str, distinct))[:SAMPLE]))
        elif not identifying:
            parts.append(f"{len(distinct)} distinct values")
        lines.append("; ".join(parts))
    return lines


def _read(raw_dir: Path, study: str) -> tuple[dict[str, dict], dict[str, RawTable], list[str]]:
    """Every table the folder holds, read; notes say what was skipped and why."""
    specs, tables, notes = {}, {}, []
    for name, spec in discover(raw_dir):
        where = f"{spec['file']}" + (f" [{spec['sheet']}]" if spec.get("sheet") else "")
        try:
            raw = read_table(study, name, {**spec, "id": ""}, raw_dir)
        except RawDataError as error:
            notes.append(f"skipped {where}: not read ({error.message})")
            continue
        if raw.warnings and spec["format"] in ("spss", "stata", "sas"):
            spec["encoding"] = "utf-8"  # the reader suspected UTF-8 read as a legacy code page
            raw = read_table(study, name, {**spec, "id": ""}, raw_dir)
        why = not_a_table(raw)
        if why:
            notes.append(f"skipped {where}: {why}")
            continue
        specs[name], tables[name] = spec, raw
    return specs, tables, notes


def _arm_ranks(tables: dict[str, RawTable]) -> dict[str, int]:
    """1 for tables with a column named or labelled like the randomized arm: the participants table's mark."""
    pattern = re.compile(HINTS["arm"], re.IGNORECASE)
    return {name: int(any(pattern.search(str(c)) for c in raw.frame.columns)) for name, raw in tables.items()}


def _undetermined(what: str, proposal: Proposal) -> dict:
    text = f"TODO: {what}; proposed rule: {proposal.kind}; columns: {', '.join(proposal.columns) or 'none'}"
    return {"undetermined": text + (f"; {proposal.note}" if proposal.note else "")}


@dataclass
class Draft:
    text: str
    linkage: list[str]  # match rate per table, and why where ids did not link
    skipped: list[str]


def _decide_tables(specs: dict, tables: dict[str, RawTable], linkage) -> dict[str, list[str]]:
    """Write the id decisions into each table's spec; returns each table's date columns."""
    dates = {}
    for name, raw in tables.items():
        choice, spec = linkage.choices[name], specs[name]
        spec["id"] = choice.column
        if choice.id_format:
            spec["id_format"] = dict(choice.id_format)
        if choice.site:
            spec["site"] = choice.site
        if linkage.rows_many(name):
            spec["rows"] = "many"
        columns = [c for c in map(str, raw.frame.columns) if c not in (choice.column, choice.site)]
        text_dates = [c for c in columns if _kind(raw.frame[c]) == "text" and _date_format(raw.frame[c])]
        if text_dates:
            spec["date_format"] = _date_format(raw.frame[text_dates[0]])
        dates[name] = [c for c in columns if is_date_column(raw.frame[c], DATE_FORMATS)]
    return dates


def _proposals(context: Context, outcomes) -> tuple[dict, dict, list[str]]:
    """(variables, outcomes, commented sketches): every entry undetermined with its proposal."""
    variables, scores, sketches = {}, {}, []
    for variable in VARIABLES:
        proposal = propose_variable(variable, context)
        variables[variable] = _undetermined(f"confirm or change the rule for {variable}", proposal)
        sketches += proposal.sketch or _recode_sketch(variable, proposal, context.tables)
    variables = {"site": variables["site"], "participant_id": {"pseudonym": True}, **variables}
    for outcome in outcomes:
        proposal = propose_outcome(outcome, context)
        scores[outcome] = _undetermined(
            "instrument, range, direction and score rules, or not_collected: true", proposal
        )
        sketches += proposal.sketch
    return variables, scores, sketches


def draft(raw_dir: Path, study: str, outcomes, written_raw_dir: str | None = None) -> Draft:
    """The draft rule file of the trial in `raw_dir`; `outcomes`: the common schema's outcome names;
    `written_raw_dir`: raw_dir as the rule file gives it (default: as given here)."""
    raw_dir = Path(raw_dir)
    specs, tables, notes = _read(raw_dir, study)
    if not tables:
        raise ValueError(
            f"no readable table in {raw_dir} (looked for {', '.join(sorted(FORMAT_OF))}); " + "; ".join(notes)
        )
    linkage = link(tables, _arm_ranks(tables))
    if linkage is None:
        raise ValueError(f"no table in {raw_dir} has a column of unique participant ids; " + "; ".join(notes))
    files = {n: specs[n]["file"] + (f" [{specs[n]['sheet']}]" if specs[n].get("sheet") else "") for n in tables}
    dates = _decide_tables(specs, tables, linkage)
    many = {n for n in tables if linkage.rows_many(n)}
    context = Context(tables, linkage.participants, many, dates, linkage.choices[linkage.participants].site)
    report = linkage_report(linkage, tables, files)
    variables, scores, sketches = _proposals(context, outcomes)
    rules = {
        "study": study,
        "title": f"TODO: a readable name for {study}",
        "raw_dir": written_raw_dir or str(raw_dir),
        "tables": specs,
        "participants": {"table": linkage.participants, "id_type": linkage.id_type},
        "variables": variables,
        "outcomes": scores,
    }
    described = []
    for name, raw in tables.items():
        described += _describe(name, raw, linkage.choices[name].column, set(dates[name]))
    return Draft(_text(study, raw_dir, rules, notes, report, described, sketches), report, notes)


def _recode_sketch(variable: str, proposal: Proposal, tables: dict[str, RawTable]) -> list[str]:
    """A recode map from the value labels of the proposed column, ready to complete."""
    if proposal.kind != "recode" or not proposal.columns:
        return []
    table, column = proposal.columns[0].split(".", 1)
    labels = tables[table].value_labels.get(column)
    if not labels:
        return []
    lines = [f"{variable}:", "  recode:", f"    table: {table}", f"    column: {column}", "    map:"]
    return lines + [f"      {code_key(code)}: TODO   # {label}" for code, label in labels.items()]


def _text(study, raw_dir, rules, notes, report, described, sketches) -> str:
    header = [
        f"Draft rule file for {study}, written by `python -m ipdpool.harmonize draft` from {raw_dir}.",
        "Tables, ids and rows are decided from the data; every variable and outcome is `undetermined` with the",
        "rule proposed and the columns it would read. Replace each by its rule (config/README.md, section 5),",
        "then check it: python -m ipdpool.harmonize THIS_FILE",
        "",
        *report,
        *notes,
        "",
        "Tables and columns found (coded columns with their values; ids, dates and names never shown):",
        *described,
    ]
    if sketches:
        header += ["", "Rules proposed, to complete and move into variables, selections and outcomes:", *sketches]
    body = yaml.safe_dump(rules, sort_keys=False, allow_unicode=True, width=200)
    return "\n".join(f"# {line}".rstrip() for line in header) + "\n\n" + body


def draft_rule_file(raw_dir: Path, study: str, outcomes) -> str:
    """The draft's text (see `draft`)."""
    return draft(raw_dir, study, outcomes).text
