"""Benchmark: harmonize every demo study at 1x, 10x and 100x the demo size.

Each study runs in its own process, so ru_maxrss is that study's peak memory alone. Prints per study the
participants per second of the whole harmonization and of its raw-file reader (CSV, Excel via
python-calamine, SPSS, Stata), then the reader totals per scale. Targets (issue 14): at 100x at least
200,000 participants/s on CSV studies and 50,000 on Excel, linear in participants, peak memory <= 1 GiB.

The scaled demo multiplies every arm by the scale, so the benchmark's copy of each rule file multiplies
`published_n` by the same factor: the published-count check stays on and passes honestly.

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

# Times each read_table call by format, then the whole harmonization (reading included).
CHILD = """
import json, resource, sys, time
from pathlib import Path
from ipdpool.harmonize import tables
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.harmonize.study import harmonize_study
repo, study, raw_dir, scale = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
rules = load_rules(repo / "config" / "studies" / f"{study}.yaml")
rules["raw_dir"] = raw_dir
rules["published_n"] = {arm: n * scale for arm, n in rules.get("published_n", {}).items()}
schema = load_schema(repo / "config" / "schema.yaml")
read_seconds, formats, read_table = 0.0, set(), tables.read_table
def timed_read(study, name, spec, *args):
    global read_seconds
    start = time.perf_counter()
    table = read_table(study, name, spec, *args)
    read_seconds += time.perf_counter() - start
    formats.add(spec["format"])
    return table
tables.read_table = timed_read
start = time.perf_counter()
result = harmonize_study(rules, schema, b"benchmark-key-0123456789")
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
reader = "/".join(sorted(formats))
figures = {"seconds": elapsed, "read_seconds": read_seconds, "reader": reader, "peak_mib": peak}
print(json.dumps({**figures, "rows": len(result.data)}))
"""

READERS = {"csv": "CSV", "excel": "Excel (calamine)", "spss": "SPSS", "stata": "Stata"}


def run_study(study: str, raw_dir: Path, scale: int) -> dict:
    command = [sys.executable, "-c", CHILD, str(REPO), study, str(raw_dir), str(scale)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    args = parser.parse_args()
    header = f"{'scale':>6} {'study':>5} {'reader':>16} {'participants':>12} {'wall_s':>7} {'read_s':>7}"
    print(f"{header} {'participants/s':>14} {'read part./s':>12} {'peak_MiB':>9}")
    for scale in args.scales:
        by_reader: dict[str, list[float]] = {}
        with tempfile.TemporaryDirectory() as folder:
            demo = [sys.executable, "-m", "ipdpool.demo", "--out", folder, "--scale", str(scale)]
            subprocess.run(demo, check=True, capture_output=True)
            total = 0.0
            for study in TRIALS:
                f = run_study(study, Path(folder) / "raw" / study, scale)
                reader = READERS.get(f["reader"], f["reader"])
                total += f["seconds"]
                sums = by_reader.setdefault(reader, [0, 0.0, 0.0])
                sums[0], sums[1], sums[2] = sums[0] + f["rows"], sums[1] + f["seconds"], sums[2] + f["read_seconds"]
                rates = f"{f['rows'] / f['seconds']:>14,.0f} {f['rows'] / f['read_seconds']:>12,.0f}"
                times = f"{f['rows']:>12} {f['seconds']:>7.2f} {f['read_seconds']:>7.2f}"
                print(f"{scale:>6} {study:>5} {reader:>16} {times} {rates} {f['peak_mib']:>9.0f}")
            for reader, (rows, seconds, read) in sorted(by_reader.items()):
                rates = f"{rows / seconds:>14,.0f} {rows / read:>12,.0f}"
                print(f"{scale:>6} {'all':>5} {reader:>16} {rows:>12} {seconds:>7.2f} {read:>7.2f} {rates}")
            participants = scale * sum(t.n for t in TRIALS.values())
            print(f"{scale:>6} {'all':>5} {'all':>16} {participants:>12} {total:>7.2f}")


if __name__ == "__main__":
    main()
