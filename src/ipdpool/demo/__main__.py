"""Regenerate the demo trials: python -m ipdpool.demo [--out DIR] [--seed N] [--scale K]."""

import argparse
from pathlib import Path

from .design import DEFAULT_SEED
from .generate import write_demo


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ipdpool.demo", description=__doc__)
    parser.add_argument(
        "--out", type=Path, default=Path("resources/demo"), help="folder for raw/<study>/ and ground_truth.yaml"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--scale", type=int, default=1, help="multiply every arm's size (benchmarks use 100)")
    args = parser.parse_args(argv)
    for path in write_demo(args.out, args.seed, args.scale):
        print(path)


if __name__ == "__main__":
    main()
