"""Benchmark: generate the demo trials at 1x and 100x size; print wall time and peak memory.

Usage: python bench/bench_demo_generation.py [--scales 1 100]
Each scale runs in its own process so peak memory (ru_maxrss) is that scale's alone.
"""

import argparse
import json
import subprocess
import sys
import tempfile

from ipdpool.demo.design import TRIALS

CHILD = """
import json, resource, sys, time
from pathlib import Path
from ipdpool.demo.generate import write_demo
start = time.perf_counter()
paths = write_demo(Path(sys.argv[1]), scale=int(sys.argv[2]))
elapsed = time.perf_counter() - start
size = sum(p.stat().st_size for p in paths)
print(json.dumps({"seconds": elapsed, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, \
"bytes": size}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 100])
    args = parser.parse_args()
    print(f"{'scale':>6} {'participants':>12} {'wall_s':>8} {'peak_MiB':>9} {'MB_written':>10}")
    for scale in args.scales:
        with tempfile.TemporaryDirectory() as folder:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, folder, str(scale)], check=True, capture_output=True, text=True
            )
            figures = json.loads(out.stdout.strip().splitlines()[-1])
        participants = scale * sum(trial.n for trial in TRIALS.values())
        print(
            f"{scale:>6} {participants:>12} {figures['seconds']:>8.2f} {figures['peak_mib']:>9.0f} "
            f"{figures['bytes'] / 1e6:>10.1f}"
        )


if __name__ == "__main__":
    main()
