"""The two-stage imputation (multiple_imputation.method: two_stage) at full size; figures in
docs/validation.md. The simulation with known parameters of tests/two_stage_reference.py (8
studies of 150, study-specific coefficients from a known normal distribution, the follow-up score
never measured in the 2 studies that differ in baseline and employment, sporadic MAR missingness
elsewhere): bias (estimate minus the true IPS effect over all 8 studies) with its Monte Carlo SE,
empirical SE and 95% CI coverage for MI (two_stage, m = `--imputations`), the complete-case
analysis (the 6 measuring studies) and the full data, over `--replicates` replicates. Each
replicate's row is appended to `--rows` (CSV) as it finishes, so a long run can be summarized
part-way (`--summarize-only`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from two_stage_reference import replicate, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicates", type=int, default=500)
    parser.add_argument("--imputations", type=int, default=5)
    parser.add_argument("--rows", type=Path, default=Path("results/bench/mi_two_stage_rows.csv"))
    parser.add_argument("--summarize-only", action="store_true")
    arguments = parser.parse_args()
    if not arguments.summarize_only:
        run(arguments.replicates, arguments.imputations, arguments.rows)
    rows = pd.read_csv(arguments.rows)
    print(f"two_stage MI simulation: {len(rows)} replicates, m = {arguments.imputations}, 8 studies of 150, "
          "follow-up never measured in 2")  # fmt: skip
    print(summary(rows).to_string(float_format=lambda v: f"{v:.4f}"))


def run(replicates: int, imputations: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    done = len(pd.read_csv(path)) if path.exists() else 0
    start = time.perf_counter()
    for number in range(done, replicates):
        row = pd.DataFrame([replicate(number, imputations)])
        row.to_csv(path, mode="a", header=not path.exists(), index=False)
        if (number + 1) % 50 == 0:
            print(f"{number + 1} replicates ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
