"""Hand-off files of the pooled data for colleagues in R, Stata and SPSS, all from
config/schema.yaml: Stata .dta and SPSS .sav with variable and value labels, Parquet with
categorical columns, CSV with 0/1 integers, a Maelstrom-style data dictionary (Variables and
Categories, TSV and XLSX) and a frictionless datapackage.json describing the CSV.

Participant-level like the harmonized data: written owner-only (0600), never shared.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pandas as pd
import pyreadstat

from .evaluation import write_workbook
from .harmonize.schema import column_types
from .labels import outcome_label
from .tables import formula_safe

# Value labels of integer-coded 0/1 columns (the schema's "allowed: [0, 1]").
BINARY_LABELS = {"employed": {0: "did not work during follow-up", 1: "worked during follow-up"}}
MAELSTROM_TYPES = {"string": "text", "category": "text", "integer": "integer", "float": "decimal", "boolean": "boolean"}
FRICTIONLESS_TYPES = {
    "string": "string",
    "category": "string",
    "integer": "integer",
    "float": "number",
    "boolean": "integer",
}


def variable_labels(schema: dict) -> dict[str, str]:
    """A short label per column (Stata allows 80 characters)."""
    labels = {name: " ".join(spec["description"].split()) for name, spec in schema["variables"].items()}
    for outcome, spec in schema["outcomes"].items():
        name = outcome_label(outcome, spec)
        labels |= {
            f"{outcome}_bl": f"{name} at baseline, instrument scale",
            f"{outcome}_fu": f"{name} at follow-up, instrument scale",
            f"{outcome}_instrument": f"{name}: instrument (missing = not collected)",
            f"{outcome}_bl_z": f"{name} at baseline, standardized",
            f"{outcome}_fu_z": f"{name} at follow-up, standardized",
        }
    return {name: label if len(label) <= 80 else label[:77] + "..." for name, label in labels.items()}


def categories(schema: dict) -> dict[str, dict[int, str]]:
    """Integer codes and labels of every categorical column, in the schema's order (1, 2, ...)."""
    out = {}
    for name, spec in schema["variables"].items():
        if spec["type"] == "category":
            out[name] = {i + 1: str(level) for i, level in enumerate(spec["allowed"])}
        elif name in BINARY_LABELS:
            out[name] = BINARY_LABELS[name]
    return out


def coded(pooled: pd.DataFrame, schema: dict) -> pd.DataFrame:
    """Categories as their integer codes, 0/1 and booleans as small integers (Stata and SPSS
    have no categorical or logical type; value labels carry the meaning)."""
    out = pooled.copy()
    for name, codes in categories(schema).items():
        if schema["variables"][name]["type"] == "category":
            out[name] = out[name].map({label: code for code, label in codes.items()}).astype("Int64")
    for name in out.columns:
        if pd.api.types.is_bool_dtype(out[name]) or str(out[name].dtype) == "Int64":
            out[name] = out[name].astype("float64")  # pyreadstat writes missing integers from floats
    for name, kind in column_types(schema).items():
        if kind in ("string",):
            out[name] = out[name].astype(object).where(out[name].notna(), "")
    return out


def as_categoricals(pooled: pd.DataFrame, schema: dict) -> pd.DataFrame:
    """Categorical columns with the schema's levels in order (R arrow and pandas read factors)."""
    out = pooled.copy()
    for name, spec in schema["variables"].items():
        if spec["type"] == "category":
            out[name] = pd.Categorical(out[name], categories=[str(v) for v in spec["allowed"]])
    return out


def variables_table(schema: dict) -> pd.DataFrame:
    """Maelstrom / Opal "Variables": one row per column."""
    labels, types = variable_labels(schema), column_types(schema)
    units = {name: spec.get("unit", "") for name, spec in schema["variables"].items()}
    rows = []
    for index, name in enumerate(types, start=1):
        unit = "SD units" if name.endswith("_z") else units.get(name, "")
        rows.append(
            {
                "table": "pooled",
                "index": index,
                "name": name,
                "label:en": labels[name],
                "valueType": MAELSTROM_TYPES[types[name]],
                "unit": unit,
            }
        )
    return pd.DataFrame(rows)


def categories_table(schema: dict) -> pd.DataFrame:
    """Maelstrom / Opal "Categories": one row per code of a categorical column."""
    rows = [
        {"table": "pooled", "variable": name, "name": code, "label:en": label, "missing": 0}
        for name, codes in categories(schema).items()
        for code, label in codes.items()
    ]
    return pd.DataFrame(rows)


def datapackage(schema: dict, csv_name: str) -> dict:
    """Frictionless Data Package with one tabular resource (the CSV): types, labels and the
    allowed codes or ranges of every field."""
    labels, types = variable_labels(schema), column_types(schema)
    fields = []
    for name, kind in types.items():
        field = {"name": name, "type": FRICTIONLESS_TYPES[kind], "title": labels[name]}
        spec = schema["variables"].get(name, {})
        if name in categories(schema):
            field["type"] = "integer"  # the CSV holds the codes
            field["constraints"] = {"enum": list(categories(schema)[name])}
            field["description"] = "; ".join(f"{code} = {label}" for code, label in categories(schema)[name].items())
        elif "range" in spec:
            field["constraints"] = {"minimum": spec["range"][0], "maximum": spec["range"][1]}
        fields.append(field)
    resource = {
        "name": "pooled",
        "path": csv_name,
        "profile": "tabular-data-resource",
        "format": "csv",
        "encoding": "utf-8",
        "schema": {"fields": fields, "missingValues": [""]},
    }
    return {
        "name": "ipdpool-pooled",
        "title": "Pooled harmonized participant data (ipdpool)",
        "profile": "tabular-data-package",
        "resources": [resource],
    }


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # not the locale's
SAV_DATE = slice(92, 101)  # the SPSS header's creation date ("05 Dec 26") and time ("03:55:09")
SAV_TIME = slice(101, 109)


def write_time() -> dt.datetime:
    """The time stamped into hand-off files: SOURCE_DATE_EPOCH (the reproducible-builds convention) when
    set, else 2000-01-01 00:00 UTC as in the dictionary workbook; never the clock, so that the same
    pooled data give the same bytes on every run."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch and not epoch.isdigit():
        raise ValueError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970-01-01 UTC, not {epoch!r}")
    return dt.datetime.fromtimestamp(int(epoch) if epoch else 946684800, dt.UTC)


def stamp_write_time(path: Path, when: dt.datetime) -> None:
    """Overwrite the write time ReadStat puts in a .dta (<timestamp>, "dd Mon yyyy hh:mm") or .sav
    header (pyreadstat has no option for it: ReadStat takes the clock)."""
    data = bytearray(Path(path).read_bytes())
    month = MONTHS[when.month - 1]
    if data.startswith(b"<stata_dta>"):
        start = data.index(b"<timestamp>", 0, 400) + len(b"<timestamp>")
        stamp = f"{when.day:02d} {month} {when.year:04d} {when.hour:02d}:{when.minute:02d}".encode("ascii")
        if data[start] != len(stamp):
            raise ValueError(f"{path}: unexpected Stata timestamp field")
        data[start + 1 : start + 1 + len(stamp)] = stamp
    elif data.startswith(b"$FL2"):
        data[SAV_DATE] = f"{when.day:02d} {month} {when.year % 100:02d}".encode("ascii")
        data[SAV_TIME] = when.strftime("%H:%M:%S").encode("ascii")
    else:
        raise ValueError(f"{path}: neither a Stata 118/119 nor an SPSS .sav file")
    Path(path).write_bytes(bytes(data))


def private(path: Path) -> Path:
    os.chmod(path, 0o600)
    return path


def write_handoff(pooled: pd.DataFrame, schema: dict, out_dir: Path) -> list[Path]:
    """Every hand-off file into out_dir (an owner-only folder), each 0600."""
    out_dir = Path(out_dir)
    out_dir.mkdir(mode=0o700, exist_ok=True)
    numeric = coded(pooled, schema)
    labels, codes = variable_labels(schema), categories(schema)
    column_labels = [labels[c] for c in numeric.columns]
    written = []
    pyreadstat.write_dta(
        numeric, out_dir / "pooled.dta", column_labels=column_labels, variable_value_labels=codes, version=15
    )
    pyreadstat.write_sav(numeric, out_dir / "pooled.sav", column_labels=column_labels, variable_value_labels=codes)
    written += [out_dir / "pooled.dta", out_dir / "pooled.sav"]
    for path in written:
        stamp_write_time(path, write_time())
    as_categoricals(pooled, schema).to_parquet(out_dir / "pooled.parquet", index=False)
    csv = numeric.copy()
    for name in csv.columns:  # whole numbers print without ".0"
        if name in codes or column_types(schema)[name] == "integer":
            csv[name] = csv[name].astype("Int64")
    formula_safe(csv).to_csv(out_dir / "pooled.csv", index=False, lineterminator="\n")  # opened in spreadsheets
    written += [out_dir / "pooled.parquet", out_dir / "pooled.csv"]
    variables, category_rows = variables_table(schema), categories_table(schema)
    formula_safe(variables).to_csv(out_dir / "variables.tsv", sep="\t", index=False, lineterminator="\n")
    formula_safe(category_rows).to_csv(out_dir / "categories.tsv", sep="\t", index=False, lineterminator="\n")
    write_workbook({"Variables": variables, "Categories": category_rows}, out_dir / "dictionary.xlsx")
    (out_dir / "datapackage.json").write_text(
        json.dumps(datapackage(schema, "pooled.csv"), indent=2) + "\n", encoding="utf-8"
    )
    written += [out_dir / name for name in ("variables.tsv", "categories.tsv", "dictionary.xlsx", "datapackage.json")]
    return [private(path) for path in written]
