"""Benchmark: harmonize every demo study at 1x, 10x and 100x the demo size.

Prints wall time and peak memory per study (each study in its own process, so
ru_maxrss is that study's alone). Targets: the whole demo under 10 s on 2 cores;
time growing linearly with size (no step quadratic in participants).

Usage: python bench/bench_harmonize.py [--scales 1 10 100]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from ipdpool.demo.design import TRIALS

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
from pathlib import Path
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.harmonize.study import harmonize_study
repo, study, raw_dir = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rules = load_rules(repo / "config" / "studies" / f"{study}.yaml")
rules["raw_dir"] = raw_dir
schema = load_schema(repo / "config" / "schema.yaml")
start = time.perf_counter()
result = harmonize_study(rules, schema, b"benchmark-key-0123456789")
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rows": len(result.data)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    args = parser.parse_args()
    print(f"{'scale':>6} {'study':>5} {'participants':>12} {'wall_s':>8} {'s_per_1000':>10} {'peak_MiB':>9}")
    for scale in args.scales:
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run([sys.executable, "-m", "ipdpool.demo", "--out", folder, "--scale", str(scale)], check=True, capture_output=True)
            total = 0.0
            for study in TRIALS:
                out = subprocess.run([sys.executable, "-c", CHILD, str(REPO), study, str(Path(folder) / "raw" / study)], check=True, capture_output=True, text=True)
                figures = json.loads(out.stdout.strip().splitlines()[-1])
                total += figures["seconds"]
                per_thousand = figures["seconds"] / figures["rows"] * 1000
                print(f"{scale:>6} {study:>5} {figures['rows']:>12} {figures['seconds']:>8.2f} {per_thousand:>10.3f} {figures['peak_mib']:>9.0f}")
            print(f"{scale:>6} {'all':>5} {scale * sum(t.n for t in TRIALS.values()):>12} {total:>8.2f}")


if __name__ == "__main__":
    main()
