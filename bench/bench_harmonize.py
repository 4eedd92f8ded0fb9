"""Benchmark: harmonize every demo study at 1x, 10x and 100x the demo size, and time the raw-file
libraries alone on the same files.

Each study runs in its own process, so ru_maxrss is that study's peak memory alone. Prints per study the
participants per second of the whole harmonization (per wall second and per CPU second: every reader runs
on one thread, so CPU seconds are one core's), and of its raw-file reading (ipdpool's read_table). A second
table times the libraries alone, in a fresh process, on the same files: for CSV pyarrow's parser (one
thread, all text, quoting off: the fast path) and the csv module (the strict path), for Excel
python-calamine (the reader used) and fastexcel (not used: numbers in a mixed column come back as text;
timed only when installed), for SPSS and Stata pyreadstat. A library's participants/s bounds the whole
harmonization of that study. A third table adds to the fastest library the two steps no harmonization can
skip, a keyed hash per participant (the pseudonyms) and the schema check of the output: the ceiling that
no implementation on these libraries can pass. Targets (issue 14): at 100x at least 200,000 participants/s
per core on CSV studies and 50,000 on Excel, linear in participants, peak memory <= 1 GiB.

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

# Times each read_table call by format, then the whole harmonization (reading included). Libraries imported
# on first use (pandera, pyarrow.compute) are imported first: a per-process cost, not a per-participant one.
CHILD = """
import json, resource, sys, time
from pathlib import Path
import pandera.pandas, pyarrow.compute
from ipdpool.harmonize import tables
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.harmonize.pseudonym import pseudonyms
from ipdpool.harmonize.schema import pandera_schema, schema_failures
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
start, cpu = time.perf_counter(), time.process_time()
result = harmonize_study(rules, schema, b"benchmark-key-0123456789")
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
reader = "/".join(sorted(formats))
figures = {"seconds": elapsed, "cpu_seconds": cpu, "read_seconds": read_seconds, "reader": reader, "peak_mib": peak}
# Two steps no harmonization can skip, timed alone on this study's output: one keyed hash per participant
# (the pseudonyms) and the schema check of the harmonized frame.
start = time.perf_counter()
pseudonyms(b"benchmark-key-0123456789", study, ["site"] * len(result.data), [str(i) for i in range(len(result.data))])
figures["hmac_seconds"] = time.perf_counter() - start
start = time.perf_counter()
assert not schema_failures(result.data, pandera_schema(schema))
figures["schema_seconds"] = time.perf_counter() - start
print(json.dumps({**figures, "rows": len(result.data)}))
"""

# Seconds of each library alone on the study's declared files (each file or sheet once, as the study reads it).
LIBRARIES = """
import csv, io, json, sys, time
from pathlib import Path
import pyarrow as pa, pyarrow.csv as pacsv, pyreadstat, python_calamine
try:
    import fastexcel
except ImportError:  # not a dependency of ipdpool: timed only when installed
    fastexcel = None
from ipdpool.harmonize.rulefile import load_rules
repo, study, raw_dir = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
tables = load_rules(repo / "config" / "studies" / f"{study}.yaml")["tables"].values()

def pyarrow_csv(spec):
    data = (raw_dir / spec["file"]).read_bytes().decode(spec.get("encoding", "utf-8-sig")).encode("utf-8")
    width = data.split(b"\\n", 1)[0].count(spec.get("delimiter", ",").encode()) + 1
    pacsv.read_csv(io.BytesIO(data), pacsv.ReadOptions(use_threads=False, autogenerate_column_names=True),
                   pacsv.ParseOptions(delimiter=spec.get("delimiter", ","), quote_char=False),
                   pacsv.ConvertOptions(column_types={f"f{i}": pa.string() for i in range(width)}, \
strings_can_be_null=False))

def csv_module(spec):
    text = (raw_dir / spec["file"]).read_bytes().decode(spec.get("encoding", "utf-8-sig"))
    [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=spec.get("delimiter", ","), strict=True) if row]

def calamine(spec):
    workbook = python_calamine.CalamineWorkbook.from_path(str(raw_dir / spec["file"]))
    workbook.get_sheet_by_name(spec["sheet"]).to_python(skip_empty_area=False)
    workbook.close()

def read_fastexcel(spec):
    fastexcel.read_excel(str(raw_dir / spec["file"])).load_sheet_by_name(spec["sheet"]).to_arrow()

def read_statistical(spec):
    reader = pyreadstat.read_sav if spec["format"] == "spss" else pyreadstat.read_dta
    reader(str(raw_dir / spec["file"]), user_missing=True)

CANDIDATES = {"csv": {"pyarrow.csv": pyarrow_csv, "csv module": csv_module}, \
"excel": {"python-calamine": calamine, **({"fastexcel": read_fastexcel} if fastexcel else {})},
              "spss": {"pyreadstat": read_statistical}, "stata": {"pyreadstat": read_statistical}}
seconds = {}
for name, library in CANDIDATES[next(iter(tables))["format"]].items():
    start = time.perf_counter()
    for spec in tables:
        library(spec)
    seconds[name] = time.perf_counter() - start
print(json.dumps(seconds))
"""

# Issue 14's targets at 100x, participants per second per core.
TARGETS = {"CSV": 200_000, "Excel": 50_000}
READERS = {"csv": "CSV", "excel": "Excel (calamine)", "spss": "SPSS", "stata": "Stata"}


def run_child(code: str, *args) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO), *map(str, args)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    args = parser.parse_args()
    header = f"{'scale':>6} {'study':>5} {'reader':>16} {'participants':>12} {'wall_s':>7} {'cpu_s':>7} {'read_s':>7}"
    print(f"{header} {'part./s':>9} {'part./cpu-s':>11} {'read part./s':>12} {'peak_MiB':>9}")
    libraries, ceilings = [], []
    for scale in args.scales:
        by_reader: dict[str, list[float]] = {}
        with tempfile.TemporaryDirectory() as folder:
            demo = [sys.executable, "-m", "ipdpool.demo", "--out", folder, "--scale", str(scale)]
            subprocess.run(demo, check=True, capture_output=True)
            total = 0.0
            for study in TRIALS:
                raw_dir = Path(folder) / "raw" / study
                f = run_child(CHILD, study, raw_dir, scale)
                reader = READERS.get(f["reader"], f["reader"])
                total += f["seconds"]
                sums = by_reader.setdefault(reader, [0, 0.0, 0.0, 0.0])
                for i, key in enumerate(("rows", "seconds", "cpu_seconds", "read_seconds")):
                    sums[i] += f[key]
                rates = (
                    f"{f['rows'] / f['seconds']:>9,.0f} "
                    f"{f['rows'] / f['cpu_seconds']:>11,.0f} {f['rows'] / f['read_seconds']:>12,.0f}"
                )
                times = f"{f['rows']:>12} {f['seconds']:>7.2f} {f['cpu_seconds']:>7.2f} {f['read_seconds']:>7.2f}"
                print(f"{scale:>6} {study:>5} {reader:>16} {times} {rates} {f['peak_mib']:>9.0f}")
                alone = run_child(LIBRARIES, study, raw_dir)
                for library, seconds in alone.items():
                    libraries.append((scale, study, library, f["rows"], seconds, f["read_seconds"], f["seconds"]))
                floor = min(alone.values()) + f["hmac_seconds"] + f["schema_seconds"]
                ceilings.append((scale, study, reader, f["rows"], min(alone.values()), f, floor))
            for reader, (rows, seconds, cpu, read) in sorted(by_reader.items()):
                rates = f"{rows / seconds:>9,.0f} {rows / cpu:>11,.0f} {rows / read:>12,.0f}"
                print(f"{scale:>6} {'all':>5} {reader:>16} {rows:>12} {seconds:>7.2f} {cpu:>7.2f} {read:>7.2f} {rates}")
            participants = scale * sum(t.n for t in TRIALS.values())
            print(f"{scale:>6} {'all':>5} {'all':>16} {participants:>12} {total:>7.2f}")
    print(
        "\nLibraries alone on the same files (fresh process, one thread), "
        "against ipdpool's read_table and whole harmonization:"
    )
    print(
        f"{'scale':>6} {'study':>5} {'library':>16} {'participants':>12} {'lib_s':>7} "
        f"{'lib part./s':>12} {'read_s':>7} {'wall_s':>7}"
    )
    for scale, study, library, rows, seconds, read, wall in libraries:
        print(
            f"{scale:>6} {study:>5} {library:>16} {rows:>12} {seconds:>7.2f} {rows / seconds:>12,.0f} "
            f"{read:>7.2f} {wall:>7.2f}"
        )
    print(
        "\nCeiling: the fastest library alone + one keyed hash per participant + the schema check of the output "
        "(every other step of the harmonization taken as free), against the target:"
    )
    print(
        f"{'scale':>6} {'study':>5} {'reader':>16} {'participants':>12} {'lib_s':>7} {'hmac_s':>7} {'schema_s':>8} "
        f"{'ceiling part./s':>15} {'target':>8} {'actual part./s':>14}"
    )
    for scale, study, reader, rows, library, f, floor in ceilings:
        target = TARGETS.get(reader.split(" ")[0])
        print(
            f"{scale:>6} {study:>5} {reader:>16} {rows:>12} {library:>7.2f} {f['hmac_seconds']:>7.2f} "
            f"{f['schema_seconds']:>8.2f} {rows / floor:>15,.0f} {f'{target:,}' if target else '-':>8} "
            f"{rows / f['seconds']:>14,.0f}"
        )


if __name__ == "__main__":
    main()
