"""Check study rule files against their raw data without writing anything.

    python -m ipdpool.harmonize config/studies/SE.yaml [more rule files]

Prints every problem (study, file, variable, offending values) or a one-line
summary per study; exits 1 if any study has problems.

    python -m ipdpool.harmonize draft RAW_DIR --study ID [--out PATH] [--schema config/schema.yaml]

writes a draft rule file for a new trial (default config/studies/ID.yaml; never overwrites).
"""

import argparse
import sys
from pathlib import Path

from ..rawio import RawDataError
from .draft import draft_rule_file
from .problems import HarmonizationError
from .rulefile import RuleFileError, load_rules
from .schema import load_schema
from .study import harmonize_study

CHECK_ONLY_KEY = b"check-only: pseudonyms are not kept"


def draft(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ipdpool.harmonize draft",
        description="Write a draft rule file for a new trial from its raw folder.",
    )
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("--study", required=True, help="study id: a letter, then letters, digits or _")
    parser.add_argument("--out", type=Path, help="where to write the draft (default config/studies/STUDY.yaml)")
    parser.add_argument(
        "--schema", type=Path, default=Path("config/schema.yaml"), help="common schema (default: config/schema.yaml)"
    )
    args = parser.parse_args(argv)
    out = args.out or Path("config/studies") / f"{args.study}.yaml"
    if out.exists():
        print(f"{out} exists; not overwritten (give --out)")
        return 1
    try:
        text = draft_rule_file(args.raw_dir, args.study, load_schema(args.schema)["outcomes"])
    except (ValueError, OSError) as error:
        print(error)
        return 1
    out.write_text(text, encoding="utf-8")
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
    parser.add_argument(
        "--schema", type=Path, default=Path("config/schema.yaml"), help="common schema (default: config/schema.yaml)"
    )
    args = parser.parse_args(argv)
    schema = load_schema(args.schema)
    failed = False
    for path in args.rule_files:
        try:
            result = harmonize_study(load_rules(path), schema, CHECK_ONLY_KEY)
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
