"""Check study rule files against their raw data without writing anything.

    python -m ipdpool.harmonize config/studies/SE.yaml [more rule files]

Prints every problem (study, file, variable, offending values) or a one-line
summary per study; exits 1 if any study has problems.
"""

import argparse
import sys
from pathlib import Path

from ..rawio import RawDataError
from .problems import HarmonizationError
from .rulefile import RuleFileError, load_rules
from .schema import load_schema
from .study import harmonize_study

CHECK_ONLY_KEY = b"check-only: pseudonyms are not kept"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ipdpool.harmonize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rule_files", nargs="+", type=Path)
    parser.add_argument("--schema", type=Path, default=Path("config/schema.yaml"), help="common schema (default: config/schema.yaml)")
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
