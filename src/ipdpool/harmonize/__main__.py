"""Check study rule files against their raw data without writing anything.

    python -m ipdpool.harmonize config/studies/SE.yaml [more rule files]

Prints every problem (study, file, variable, offending values) or a one-line
summary per study; exits 1 if any study has problems.

    python -m ipdpool.harmonize draft RAW_DIR --study ID [--out PATH] [--schema config/schema.yaml]

writes a draft rule file for a new trial (default config/studies/ID.yaml; never overwrites) and prints
how many rows of each table link to a participant.

Both work from any directory: the default schema and draft folder are the repository's, and a rule
file's relative raw_dir is looked up in the working directory, then in the repository.
"""

import argparse
import sys
from pathlib import Path

from ..rawio import RawDataError
from .draft import draft as write_draft
from .problems import HarmonizationError
from .rulefile import RuleFileError, load_rules
from .schema import load_schema
from .study import harmonize_study

CHECK_ONLY_KEY = b"check-only: pseudonyms are not kept"
REPO = Path(__file__).resolve().parents[3]  # the repository of an editable install (make venv)
SCHEMA = REPO / "config" / "schema.yaml"


def base_dir(rules: dict) -> Path:
    """Where a rule file's relative raw_dir is: the working directory if it is there, else the repository."""
    raw_dir = Path(rules["raw_dir"])
    return Path.cwd() if raw_dir.is_absolute() or raw_dir.is_dir() or not (REPO / raw_dir).is_dir() else REPO


def as_written(raw_dir: Path) -> str:
    """raw_dir for the rule file: relative to the repository when inside it (as the demo's), else absolute."""
    absolute = raw_dir.resolve()
    return str(absolute.relative_to(REPO)) if absolute.is_relative_to(REPO) else str(absolute)


def draft(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ipdpool.harmonize draft",
        description="Write a draft rule file for a new trial from its raw folder.",
    )
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("--study", required=True, help="study id: a letter, then letters, digits or _")
    parser.add_argument(
        "--out", type=Path, help=f"where to write the draft (default {REPO / 'config' / 'studies'}/STUDY.yaml)"
    )
    parser.add_argument("--schema", type=Path, default=SCHEMA, help=f"common schema (default {SCHEMA})")
    args = parser.parse_args(argv)
    out = args.out or REPO / "config" / "studies" / f"{args.study}.yaml"
    if out.exists():
        print(f"{out} exists; not overwritten (give --out)")
        return 1
    try:
        result = write_draft(args.raw_dir, args.study, load_schema(args.schema)["outcomes"], as_written(args.raw_dir))
    except (ValueError, OSError) as error:
        print(error)
        return 1
    out.write_text(result.text, encoding="utf-8")
    for line in result.linkage + result.skipped:
        print(line)
    print(f"draft written to {out}; complete every TODO, then run: python -m ipdpool.harmonize {out}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["draft"]:
        return draft(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m ipdpool.harmonize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rule_files", nargs="+", type=Path)
    parser.add_argument("--schema", type=Path, default=SCHEMA, help=f"common schema (default {SCHEMA})")
    args = parser.parse_args(argv)
    schema = load_schema(args.schema)
    failed = False
    for path in args.rule_files:
        try:
            rules = load_rules(path)
            result = harmonize_study(rules, schema, CHECK_ONLY_KEY, base_dir=base_dir(rules))
        except (RuleFileError, HarmonizationError, RawDataError) as error:
            failed = True
            print(error)
            continue
        for warning in result.warnings:
            print(f"warning: {warning}")
        collected = int((result.rule_log["status"] == "harmonized").sum())
        print(f"{path}: OK, {len(result.data)} participants, {collected} variables harmonized")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
