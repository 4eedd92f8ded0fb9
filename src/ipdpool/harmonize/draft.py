"""A draft rule file for a new trial, from its raw folder: every table, every column described,
ids and dates guessed, every schema variable `undetermined` with candidate columns.

    python -m ipdpool.harmonize draft RAW_DIR --study ID [--out config/studies/ID.yaml]

The draft passes the rule-file schema; checking it fails only on what the user must decide
(which columns hold site, arm and arm_original, and the codes' meaning). Values are listed only
for coded columns (few distinct values, not ids, dates or names), capped, as YAML comments.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import python_calamine
import yaml

from ..rawio import RawDataError, RawTable, read_table
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
ID_NAMES = re.compile(
    r"^(id|pid|subject|record_?id|study_?id|.*_id|id_.*|tunnus|respnr|løbenr|lobenr|lopnr|löpnr|deelnemer.*|nr|nummer|deltager.*)$",
    re.IGNORECASE,
)
# Names of columns whose values may identify a person: never sampled.
PERSONAL = re.compile(
    r"(name|navn|namn|naam|nimi|cpr|ssn|hetu|personnummer|bsn|birth|fød|föd|geboorte|synty|address|adresse|osoite|phone|email|note|comment|bemærk|opmerk|kommentar|huom)",
    re.IGNORECASE,
)
# Words (several languages) naming each schema variable or outcome, matched in column names and value labels.
HINTS = {
    "site": r"site|cent(re|er)|locati|^by$|kunta|paikka|^ort$|stad|city|clinic|klinik|sairaala",
    "arm": r"^arm|group|groep|grupp|ryhm|condition|allocat|random.*arm|behandling|interventi|^ips$",
    "arm_original": r"^arm|group|groep|grupp|ryhm|condition|allocat",
    "employed": r"job|work|employ|arbeid|arbete|työ|tyo|timer|hours|baan|banen|ansæt|anställ",
    "followup_months": r"follow|seuranta|opfølg|uppfölj|fu_?dat|meting|besøg|visit",
    "age": r"^age|alder|ålder|leeftijd|^ik[aä]|alter",
    "sex": r"^sex|gender|geslacht|køn|^k[oö]n$|sukupuoli|geschlecht",
    "diagnosis": r"diag|^dx",
    "self_esteem": r"rses|rosenberg|self.?est|itsetunto",
    "empowerment": r"mdes|empower",
    "quality_of_life": r"qol|whoqol|mansa|manchester|livskval|elämänlaatu",
    "depression": r"bdi|hamd|madrs|phq|depress|masennus",
    "negative_symptoms": r"panss_?n|sans|negat",
    "positive_symptoms": r"panss_?p|saps|posit",
    "anxiety": r"bai|gad|anx|ahdist|angst",
    "functioning": r"gaf|whodas|sofas|funct|toimintakyky",
}
VARIABLES = ("site", "arm", "arm_original", "employed", "followup_months", "age", "sex", "diagnosis")


def _table_name(text: str, taken: set) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_") or "table"
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
    """(table name, table spec without id) for every readable file, one per sheet of a workbook."""
    tables, taken = [], set()
    for path in sorted(raw_dir.iterdir()):
        kind = FORMAT_OF.get(path.suffix.lower())
        if kind is None or not path.is_file():
            continue
        if kind == "excel":
            workbook = python_calamine.CalamineWorkbook.from_path(str(path))
            sheets = workbook.sheet_names
            workbook.close()
            for sheet in sheets:
                name = _table_name(f"{path.stem}_{sheet}" if len(sheets) > 1 else path.stem, taken)
                taken.add(name)
                tables.append((name, {"file": path.name, "format": "excel", "sheet": sheet}))
            continue
        name = _table_name(path.stem, taken)
        taken.add(name)
        spec = _csv_spec(path) if kind == "csv" else {"format": kind}
        tables.append((name, {"file": path.name, **spec}))
    return tables


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


def _guess_id(raw: RawTable) -> str:
    named = [c for c in raw.frame.columns if ID_NAMES.match(str(c))]
    return named[0] if named else str(raw.frame.columns[0])


def _id_format(ids: pd.Series) -> dict | None:
    """`extract` the digits when ids carry letters around a number ("FI-001", "fi001", "001/A")."""
    text = ids.dropna().map(code_key)
    if text.empty or text.str.fullmatch(r"[0-9]+").all():
        return None
    if text.str.fullmatch(r"\D*[0-9]+\D*").all():
        return {"extract": "([0-9]+)"}
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


def _candidates(target: str, described: dict[str, RawTable]) -> list[str]:
    # An outcome the common schema gained without a hint here is looked for by its own name.
    pattern = re.compile(HINTS.get(target, re.escape(target)), re.IGNORECASE)
    found = []
    for name, raw in described.items():
        for column in raw.frame.columns:
            labels = " ".join(map(str, raw.value_labels.get(column, {}).values()))
            # Employment is often a table of its own (job episodes, an hours log): match its name too.
            if (
                pattern.search(str(column))
                or (labels and pattern.search(labels))
                or (target == "employed" and pattern.search(name))
            ):
                found.append(f"{name}.{column}")
    return found


def _recode_sketch(target: str, candidates: list[str], described: dict[str, RawTable]) -> list[str]:
    """A commented recode rule from the first candidate with value labels, its map ready to complete."""
    for candidate in candidates:
        table, column = candidate.split(".", 1)
        labels = described[table].value_labels.get(column)
        if labels:
            lines = [f"{target}:", "  recode:", f"    table: {table}", f"    column: {column}", "    map:"]
            lines += [f"      {code_key(code)}: TODO   # {label}" for code, label in labels.items()]
            return lines
    return []


def draft_rule_file(raw_dir: Path, study: str, outcomes) -> str:
    """The draft's text; `outcomes`: the common schema's outcome names (every one gets an entry)."""
    raw_dir = Path(raw_dir)
    tables, described, notes = {}, {}, []
    for name, spec in discover(raw_dir):
        try:
            raw = read_table(study, name, {**spec, "id": ""}, raw_dir)
        except RawDataError as error:
            notes.append(f"not read: {error}")
            continue
        if raw.warnings and spec["format"] in ("spss", "stata", "sas"):
            spec["encoding"] = "utf-8"  # the reader suspected UTF-8 read as a legacy code page
            raw = read_table(study, name, {**spec, "id": ""}, raw_dir)
        id_column = _guess_id(raw)
        spec["id"] = id_column
        id_format = _id_format(raw.frame[id_column])
        if id_format:
            spec["id_format"] = id_format
        if raw.frame[id_column].duplicated().any():
            spec["rows"] = "many"
        dates = {c for c in raw.frame.columns if _kind(raw.frame[c]) == "text" and _date_format(raw.frame[c])}
        if dates:
            spec["date_format"] = _date_format(raw.frame[sorted(dates)[0]])
        tables[name] = spec
        described[name] = raw
        notes += _describe(name, raw, id_column, dates)
    if not tables:
        raise ValueError(f"no readable raw file in {raw_dir} (looked for {', '.join(sorted(FORMAT_OF))})")
    one_row = [n for n, s in tables.items() if s.get("rows") != "many"] or list(tables)
    participants = max(one_row, key=lambda n: len(described[n].frame))
    integer_ids = all(
        _id_format(described[n].frame[s["id"]])
        or pd.to_numeric(described[n].frame[s["id"]].map(code_key), errors="coerce").notna().all()
        for n, s in tables.items()
    )

    rules = {
        "study": study,
        "title": f"TODO: a readable name for {study}",
        "raw_dir": str(raw_dir),
        "tables": tables,
        "participants": {"table": participants, "id_type": "integer" if integer_ids else "text"},
        "variables": {},
        "outcomes": {},
    }
    sketches = []
    for variable in VARIABLES:
        found = _candidates(variable, described)
        rules["variables"][variable] = {
            "undetermined": (
                f"TODO: decide the rule for {variable}; candidate columns: {', '.join(found[:6]) or 'none found'}"
            )
        }
        if variable in ("arm", "sex", "diagnosis"):
            sketches += _recode_sketch(variable, found, described)
    rules["variables"] = {
        "site": rules["variables"]["site"],
        "participant_id": {"pseudonym": True},
        **{v: rules["variables"][v] for v in VARIABLES[1:]},
    }
    for outcome in outcomes:
        found = _candidates(outcome, described)
        rules["outcomes"][outcome] = {
            "undetermined": (
                "TODO: instrument, range, direction and score rules, or not_collected: true; "
                f"candidate columns: {', '.join(found[:6]) or 'none found'}"
            )
        }
    header = [
        f"Draft rule file for {study}, written by `python -m ipdpool.harmonize draft` from {raw_dir}.",
        "Complete every TODO (config/README.md, section 5), then check it: python -m ipdpool.harmonize THIS_FILE",
        "A single-site trial: site: {constant: <site name>} (the site enters the pseudonym).",
        "",
        "Tables and columns found (coded columns with their values; ids, dates and names never shown):",
        *notes,
    ]
    if sketches:
        header += ["", "Recode maps from the value labels, to complete and move into variables:", *sketches]
    body = yaml.safe_dump(rules, sort_keys=False, allow_unicode=True, width=200)
    return "\n".join(f"# {line}".rstrip() for line in header) + "\n\n" + body
