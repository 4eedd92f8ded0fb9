"""Loading a study rule file: YAML parsing and JSON Schema validation, all errors at once."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

DEFAULT_SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "study.schema.yaml"


class RuleFileError(Exception):
    def __init__(self, path: Path, problems: list[str]):
        self.path, self.problems = Path(path), problems
        super().__init__(f"rule file {path}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))


def _where(error: jsonschema.ValidationError) -> str:
    return "/".join(str(part) for part in error.absolute_path) or "(top level)"


def _explain(error: jsonschema.ValidationError) -> str:
    # oneOf/anyOf errors say little by themselves; the deepest matching sub-error names the real cause.
    if error.context:
        # Report the alternative (oneOf/anyOf branch) that came closest: the one with fewest errors.
        branches = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        closest = min(branches.values(), key=len)
        error = jsonschema.exceptions.best_match(closest)
    message = error.message
    if error.validator == "additionalProperties" and "properties" in error.schema:
        message += f"; allowed here: {', '.join(error.schema['properties'])}"
    return f"{_where(error)}: {message}"


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
        rules = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RuleFileError(path, [f"not valid YAML: {error}"]) from error
    if not isinstance(rules, dict):
        raise RuleFileError(path, ["expected a mapping of keys (study, raw_dir, tables, ...) at the top level"])
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(rules), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        raise RuleFileError(path, [_explain(e) for e in errors])
    return rules
