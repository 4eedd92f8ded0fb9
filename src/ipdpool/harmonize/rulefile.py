"""Loading a study rule file: YAML parsing and JSON Schema validation, all errors at once."""

from __future__ import annotations

import difflib
import functools
import json
from pathlib import Path

import jsonschema
import yaml

from ..yamlfile import StrictYAMLError, loads

TYPE_NAMES = {
    "string": "text",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "empty",
    "str": "the text",
    "int": "the number",
    "float": "the number",
    "bool": "the value",
    "dict": "a mapping",
    "list": "a list",
    "NoneType": "an empty value",
}
TABLE_KEYS = (
    "file",
    "format",
    "id",
    "id_format",
    "site",
    "rows",
    "date_format",
    "sheet",
    "delimiter",
    "decimal",
    "encoding",
    "catalog",
)
# Keys each format refuses (the schema's `false` properties), for the list of keys allowed instead.
FORMAT_FORBIDDEN = {
    "spss": ("delimiter", "decimal", "catalog", "sheet"),
    "stata": ("delimiter", "decimal", "catalog", "sheet"),
    "sas": ("delimiter", "decimal", "sheet"),
    "csv": ("catalog", "sheet"),
    "excel": ("delimiter", "decimal", "encoding", "catalog"),
}
DEFAULT_SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "study.schema.yaml"


class RuleFileError(Exception):
    def __init__(self, path: Path, problems: list[str]):
        self.path, self.problems = Path(path), problems
        super().__init__(f"rule file {path}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))


def _where(path) -> str:
    return ".".join(str(part) for part in path) or "top level"


def _keys(names) -> str:
    return ", ".join(f"`{name}`" if not isinstance(name, str) or " " not in name else name for name in names)


def _closest(word: str, options) -> str:
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean `{match[0]}`?)" if match else ""


def _forbidden(error: jsonschema.ValidationError, rules: dict) -> str:
    """A key that a `false` schema refuses in this place: format-specific table keys, month_days with days.
    (jsonschema locates such an error at the mapping holding the key, not at the key.)"""
    parent = rules
    for part in error.absolute_path:
        parent = parent[part]
    where = _where(error.absolute_path)
    if "format" in parent:
        refused = FORMAT_FORBIDDEN.get(parent["format"], ())
        key = next((k for k in parent if k in refused), "?")
        allowed = [k for k in TABLE_KEYS if k not in refused]
        return f"{where}: `{key}` is not allowed for format {parent['format']}; allowed keys: {', '.join(allowed)}"
    return f"{where}: `month_days` is not allowed together with `days` (month_days converts months into days)"


def _closest_branch(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For oneOf/anyOf, the deepest error of the alternative that came closest: the one sharing most keys
    with what was written, then the one with fewest errors."""
    branches = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    written = set(error.instance) if isinstance(error.instance, dict) else set()

    def closeness(item):
        branch, errors = item
        known = (
            set(error.validator_value[branch].get("properties", {}))
            if isinstance(error.validator_value[branch], dict)
            else set()
        )
        return (-len(written & known), len(errors))

    return jsonschema.exceptions.best_match(min(branches.items(), key=closeness)[1])


def _explain(error: jsonschema.ValidationError, rules: dict) -> str:
    """One sentence per schema violation: where, what is wrong, what is allowed there."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        return _explain(_closest_branch(error), rules)
    where, schema, value = _where(error.absolute_path), error.schema, error.instance
    kind = error.validator
    if kind is None or schema is False:
        return _forbidden(error, rules)
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        unknown = [k for k in value if k not in allowed]
        return f"{where}: unknown key `{unknown[0]}`{_closest(unknown[0], allowed)}; allowed keys: {', '.join(allowed)}"
    if kind == "required":
        missing = error.message.split("'")[1]
        return f"{where}: `{missing}` is required here; required keys: {', '.join(schema['required'])}"
    if kind == "enum":
        return (
            f"{where}: {value!r} is not allowed{_closest(value, schema['enum'])}; "
            f"allowed values: {', '.join(map(str, schema['enum']))}"
        )
    if kind == "const":
        return f"{where}: must be {json.dumps(schema['const'])}, not {value!r}"
    if kind == "type":
        expected = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return (
            f"{where}: expected {' or '.join(TYPE_NAMES.get(t, t) for t in expected)}, "
            f"not {TYPE_NAMES.get(type(value).__name__, type(value).__name__)} {value!r}"
        )
    if (
        kind in ("minProperties", "maxProperties")
        and set(schema.get("properties", {}))
        and schema.get("maxProperties") == 1
    ):
        return (
            f"{where}: give exactly one rule, one of {', '.join(schema['properties'])} "
            f"(found {len(value)}: {', '.join(map(str, value)) or 'none'})"
        )
    if kind == "oneOf":  # valid under several alternatives: keys that exclude each other
        options = [branch["required"][0] for branch in error.validator_value if "required" in branch]
        return f"{where}: give exactly one of {', '.join(options)}"
    if kind in ("minItems", "maxItems"):
        low, high = schema.get("minItems", 0), schema.get("maxItems")
        size = f"exactly {low}" if low == high else (f"at least {low}" if high is None else f"{low} to {high}")
        return f"{where}: must be a list of {size} items, not {len(value)}"
    if kind == "pattern" or (kind == "propertyNames"):
        return f"{where}: {value!r} is not a valid name (a letter, then letters, digits or _)"
    return f"{where}: {error.message}"


@functools.cache
def schema_validator(schema_path: Path) -> jsonschema.Draft202012Validator:
    """Read once per process: the workflow checks the config and every study's rule file at start-up."""
    return jsonschema.Draft202012Validator(yaml.load(schema_path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader))


def schema_problems(document: dict, schema_path: Path) -> list[str]:
    """Every violation of the JSON Schema, one sentence each, in document order."""
    errors = sorted(
        schema_validator(Path(schema_path).resolve()).iter_errors(document),
        key=lambda e: (list(map(str, e.absolute_path)), e.message),
    )
    problems = [_explain(e, document) for e in errors]
    # A misspelt required key is one mistake: keep "unknown key `fromat` (did you mean `format`?)" only.
    meant = {
        f"{p.split(': ')[0]}: {p.split('did you mean ')[1].split('?')[0]} is required here"
        for p in problems
        if "(did you mean" in p
    }
    return [p for p in problems if not any(p.startswith(prefix) for prefix in meant)]


def load_rules(path: Path, schema_path: Path = DEFAULT_SCHEMA) -> dict:
    """The parsed rule file, or RuleFileError listing every schema violation with its location."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise RuleFileError(path, ["file not found"]) from error
    except UnicodeDecodeError as error:
        raise RuleFileError(path, [f"not UTF-8 text (byte {error.start})"]) from error
    try:
        rules = loads(text)
    except StrictYAMLError as error:
        raise RuleFileError(path, [str(error)]) from error
    except yaml.YAMLError as error:
        raise RuleFileError(path, [f"not valid YAML: {error}"]) from error
    if not isinstance(rules, dict):
        raise RuleFileError(path, ["expected a mapping of keys (study, raw_dir, tables, ...) at the top level"])
    problems = schema_problems(rules, schema_path)
    if problems:
        raise RuleFileError(path, problems)
    return rules


def missing_raw_files(rules: dict, base_dir: Path = Path(".")) -> list[str]:
    """The declared raw files (`tables.*.file`) that are not files in raw_dir, each once, sorted. Snakemake
    itself does not notice a missing input once the outputs that came from it exist."""
    raw_dir = Path(base_dir) / rules["raw_dir"]
    return sorted({spec["file"] for spec in rules["tables"].values() if not (raw_dir / spec["file"]).is_file()})
