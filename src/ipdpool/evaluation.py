"""Harmonization evaluation in the way of madshapR's dataset summaries: every variable summarized
by study and arm in its raw and its harmonized form; and the rules of all studies side by side, as
Rmonize's Data Processing Elements table lists them."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .harmonize.problems import identifier_like
from .harmonize.values import code_keys

ARMS = ("IPS", "SAU")
MAX_CATEGORIES = 12  # categories listed per summary row; rarer ones are counted together
SUMMARY_COLUMNS = ["study", "variable", "form", "arm", "n", "missing", "mean", "sd", "min", "max", "categories"]
# Filled from the rule file's structure, or a constant: nothing to compare.
NOT_SUMMARIZED = ("study", "participant_id")


def summarize(values: pd.Series, categorical: bool) -> dict:
    """n, missing, and mean/SD/min/max (numbers) or category counts (most frequent first,
    beyond MAX_CATEGORIES one "other" entry, so a summary stays readable for any column)."""
    present = values.dropna()
    row = {
        "n": len(values),
        "missing": len(values) - len(present),
        "mean": None,
        "sd": None,
        "min": None,
        "max": None,
        "categories": "",
    }
    if categorical:
        row["categories"] = category_text(code_keys(present).value_counts())
    elif len(present):
        numbers = pd.to_numeric(present).astype(float)
        # Rounded: the last digits of a mean depend on summation order, and nobody reads them.
        row |= {
            "mean": round(numbers.mean(), 4),
            "sd": round(numbers.std(ddof=1), 4) if len(numbers) > 1 else None,
            "min": numbers.min(),
            "max": numbers.max(),
        }
    return row


def category_text(counts: pd.Series) -> str:
    """ "label: count; ..." by falling count, ties by label (the same text on every run)."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = ordered if len(ordered) <= MAX_CATEGORIES else ordered[: MAX_CATEGORIES - 1]
    parts = [f"{label}: {count}" for label, count in shown]
    rest = ordered[len(shown) :]
    if rest:
        parts.append(f"{len(rest)} other values: {sum(count for _, count in rest)}")
    return "; ".join(parts)


def withheld(values: pd.Series) -> dict:
    """n and missing only, for raw cells that look like identifiers or free text."""
    present = int(values.notna().sum())
    return {
        "n": len(values),
        "missing": len(values) - present,
        "mean": None,
        "sd": None,
        "min": None,
        "max": None,
        "categories": "values not shown (identifier-like column)",
    }


def as_numbers(values: pd.Series) -> pd.Series | None:
    """The cells as numbers, read with a decimal point or else a decimal comma (exports from
    Danish or German settings); None when some present cell is not a number."""
    present = values.dropna()
    if not len(present):
        return None
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.isna().any():
        numbers = pd.to_numeric(present.astype(str).str.replace(",", ".", regex=False), errors="coerce")
    return None if numbers.isna().any() else numbers.astype(float).reindex(values.index)


def harmonized_is_categorical(variable: str, schema: dict) -> bool:
    spec = schema["variables"].get(variable)
    return spec is not None and (spec["type"] in ("category", "string") or "allowed" in spec)


def raw_is_categorical(numbers: pd.Series | None, harmonized_categorical: bool) -> bool:
    """Raw codes of a categorical variable are categories (sex 1/2) unless there are too many to
    list (days worked behind `employed`: summarized as numbers); text is always categories."""
    if numbers is None:
        return True
    return harmonized_categorical and numbers.dropna().nunique() <= MAX_CATEGORIES


def summary_variables(data: pd.DataFrame, schema: dict) -> list[str]:
    """Schema variables and outcome scores; not identity columns, instruments or z-scores (a
    linear function of the scores)."""
    outcomes = [f"{outcome}_{when}" for outcome in schema["outcomes"] for when in ("bl", "fu")]
    return [v for v in [*schema["variables"], *outcomes] if v in data.columns and v not in NOT_SUMMARIZED]


def harmonization_summary(
    study: str, data: pd.DataFrame, raw: dict[str, pd.Series], sources: dict[str, str], schema: dict
) -> pd.DataFrame:
    """One row per variable, form (raw | harmonized) and arm (IPS, SAU, all).

    `raw` holds a variable's raw cells after the rule's missing codes, in the order of `data`'s
    rows (variables derived from several columns or rows have none); `sources` names the raw
    column(s) per variable. Raw values of a column that looks like identifiers or free text are
    never listed: its raw rows give n and missing only."""
    arms = data["arm"].astype(object).to_numpy()
    groups = [(arm, arms == arm) for arm in ARMS] + [("all", np.ones(len(data), dtype=bool))]
    rows = []
    for variable in summary_variables(data, schema):
        categorical = harmonized_is_categorical(variable, schema)
        forms = []
        if variable in raw:
            cells = pd.Series(raw[variable].to_numpy(), dtype=object)
            numbers = as_numbers(cells)
            column = sources.get(variable, "").split(": ", 1)[-1]
            listable = identifier_like(column, cells if numbers is None else numbers) is None
            kind = raw_is_categorical(numbers, categorical) if listable else None
            forms.append(("raw", cells if numbers is None or kind else numbers, kind))
        forms.append(("harmonized", pd.Series(data[variable].to_numpy(), dtype=object), categorical))
        for form, values, kind in forms:
            for arm, mask in groups:
                part = values[mask]
                row = summarize(part, kind) if kind is not None else withheld(part)
                rows.append({"study": study, "variable": variable, "form": form, "arm": arm, **row})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype({"n": "Int64", "missing": "Int64"})


# ------------------------------------------------------------ rules overview


OVERVIEW_COLUMNS = ["study", "variable", "part", "rule", "source_tables", "source_columns", "parameters"]
# Keys of a rule that name where its values come from; everything else is a parameter.
TABLE_KEYS = ("table",)
COLUMN_KEYS = ("column", "columns", "week", "hours", "start", "end")
NESTED_SOURCES = ("start", "end", "anchor")  # {table, column} of a date


def rule_sources(spec) -> tuple[list[str], list[str], dict]:
    """(tables, columns, parameters) of one rule's specification."""
    if not isinstance(spec, dict):  # constant, pseudonym: true, not_collected: true, undetermined: <reason>
        return [], [], {} if spec is True else {"value": spec}
    tables, columns, parameters = [], [], {}
    for key, value in spec.items():
        if key in NESTED_SOURCES and isinstance(value, dict):
            tables.append(str(value["table"]))
            columns.append(f"{value['table']}.{value['column']}")
        elif key == "waves":
            for wave in value:
                tables.append(str(wave["table"]))
                columns.append(f"{wave['table']}.{wave['column']}")
                parameters |= (
                    {f"missing {wave['table']}.{wave['column']}": wave["missing"]} if "missing" in wave else {}
                )
        elif key in TABLE_KEYS:
            tables.append(str(value))
        elif key in COLUMN_KEYS:
            columns += [str(value)] if isinstance(value, str) else [str(v) for v in value]
        else:
            parameters[key] = value
    return list(dict.fromkeys(tables)), columns, parameters


def overview_row(study: str, variable: str, part: str, rule: dict, extra: dict | None = None) -> dict:
    ((name, spec),) = rule.items()
    tables, columns, parameters = rule_sources(spec)
    parameters = {**(extra or {}), **parameters}
    return {
        "study": study,
        "variable": variable,
        "part": part,
        "rule": name,
        "source_tables": ", ".join(tables),
        "source_columns": ", ".join(columns),
        # Compact JSON with sorted keys: readable, and the same text on every run.
        "parameters": json.dumps(parameters, sort_keys=True, ensure_ascii=False, default=str) if parameters else "",
    }


def rules_overview(rule_files: list[dict], schema: dict) -> pd.DataFrame:
    """Study x variable x rule x source tables and columns x parameters, in schema order."""
    rows = []
    for rules in rule_files:
        study = rules["study"]
        for variable in schema["variables"]:
            if variable in rules["variables"]:
                rows.append(overview_row(study, variable, "", rules["variables"][variable]))
        for outcome in schema["outcomes"]:
            rule = rules["outcomes"][outcome]
            if "not_collected" in rule or "undetermined" in rule:
                rows.append(
                    overview_row(
                        study, outcome, "", {k: v for k, v in rule.items() if k in ("not_collected", "undetermined")}
                    )
                )
                continue
            scale = {key: rule[key] for key in ("instrument", "range", "direction")}
            for part in ("baseline", "followup"):
                rows.append(overview_row(study, outcome, part, rule[part], scale))
    return pd.DataFrame(rows, columns=OVERVIEW_COLUMNS)


FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can carry
XLSX_TIMESTAMP = re.compile(rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)")


def write_xlsx(frame: pd.DataFrame, path: Path, sheet: str) -> None:
    """One sheet (see write_workbook)."""
    write_workbook({sheet: frame}, path)


def write_workbook(sheets: dict[str, pd.DataFrame], path: Path) -> None:
    """Sheets in order; the workbook's save time and the zip entries' times fixed, so that the
    same tables give the same bytes on every run."""
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for sheet, frame in sheets.items():
            frame.to_excel(writer, sheet_name=sheet, index=False)
    Path(path).write_bytes(stable_zip(buffer.getvalue()))


def stable_zip(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            content = source.read(name)
            if name == "docProps/core.xml":
                content = XLSX_TIMESTAMP.sub(rb"\g<1>2000-01-01T00:00:00Z\g<3>", content)
            target.writestr(zipfile.ZipInfo(name, date_time=FIXED_TIME), content, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()
