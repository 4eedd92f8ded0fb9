"""Issue 12 at the workflow level: failed runs leak nothing, changed inputs re-run, killed runs restart
cleanly, tables are safe to open in a spreadsheet, acknowledged conditions are shown with their reason."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import python_calamine
from conftest import copy_workflow, snakemake
from test_privacy import plant_canaries

from ipdpool.harmonize.output import read_provenance, write_csv
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.harmonize.study import harmonize_study
from ipdpool.tables import write_table

REPO = Path(__file__).resolve().parents[1]
KEY = "KEY-CANARY-7c2d9e4f1a6b3058"
DEMO_KEY = (REPO / "resources" / "demo" / "DEMO_ONLY_pseudonym.key").read_bytes().strip()


def scanned_text(workdir: Path, *extra: str) -> str:
    """Every log, output and Snakemake log of the run (Parquet decoded), plus the run's console output."""
    texts = list(extra)
    for folder in ("results", "logs", ".snakemake/log"):
        for path in (workdir / folder).rglob("*"):
            if path.is_file():
                texts.append(
                    pd.read_parquet(path).to_csv()
                    if path.suffix == ".parquet"
                    else path.read_bytes().decode("utf-8", errors="replace")
                )
    return "\n".join(texts)


@pytest.mark.workflow
def test_a_failed_run_with_rules_pointed_at_identifiers_leaks_nothing(tmp_path):
    workdir = copy_workflow(tmp_path)
    canaries = plant_canaries(workdir)
    raw = workdir / "resources" / "demo" / "raw" / "US"
    header = (raw / "us_hartford_wide.csv").read_text(encoding="utf-8").split("\n", 1)[0].split(",")
    planted = [column for column in ("name", "ssn", "dob") if column in header]
    assert planted == ["name", "ssn", "dob"]
    (raw / "site_key.csv").write_text(f"id,{KEY}\n1,{KEY}\n", encoding="utf-8")
    rules = workdir / "config" / "studies" / "US.yaml"
    text = rules.read_text(encoding="utf-8")
    for old, new in [
        ("column: age,", "column: name,"),
        ("site: {constant: Hartford}", "site: {copy: {table: wide, column: ssn}}"),
        ("arm_original: {copy: {table: wide, column: condition}}", "arm_original: {copy: {table: wide, column: name}}"),
        ("sex: {recode: {table: wide, column: sex,", "sex: {recode: {table: wide, column: dob,"),
        ("baseline: {copy: {table: wide, column: gaf_m0,", "baseline: {copy: {table: wide, column: ssn,"),
        (
            "tables:\n",
            (
                "tables:\n"
                "  stolen: {file: ../../DEMO_ONLY_pseudonym.key, format: csv, id: x}\n"
                "  passwd: {file: /etc/passwd, format: csv, id: x}\n"
                "  keyfile: {file: site_key.csv, format: csv, id: id}\n"
            ),
        ),
    ]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    rules.write_text(text, encoding="utf-8")
    result = snakemake(workdir, "--cores", "2", "results/harmonized/US.parquet", env={"IPDPOOL_PSEUDONYM_KEY": KEY})
    assert result.returncode != 0
    log = (workdir / "logs" / "harmonize" / "US.log").read_text(encoding="utf-8")
    for expected in (
        "file ../../DEMO_ONLY_pseudonym.key, variable (whole file): is outside the study's raw_dir",
        "file /etc/passwd, variable (whole file): is outside",
        "file site_key.csv, variable (whole file): holds the pseudonym key",
        "variable site: free-text field copied from 'ssn'",
        "variable age: values in 'name' that are not numbers",
    ):
        assert expected in log, log
    everything = scanned_text(workdir, result.stdout, result.stderr)
    pattern = re.compile(r"CANARY[A-Z0-9]+R\d{5}|1901-\d\d-\d\d|\d\d/\d\d/1901")
    assert len(canaries) > 3000 and pattern.findall(everything) == []
    assert KEY not in everything and DEMO_KEY.decode() not in everything and "root:x:0:0" not in everything
    assert not (workdir / "results" / "harmonized" / "US.parquet").exists()


@pytest.mark.workflow
def test_a_corrected_export_with_an_older_timestamp_reruns_the_study(tmp_path):
    workdir = copy_workflow(tmp_path)
    assert snakemake(workdir, "--cores", "2", "results/harmonized/US.parquet").returncode == 0
    path = workdir / "resources" / "demo" / "raw" / "US" / "us_hartford_wide.csv"
    lines = path.read_text(encoding="utf-8").split("\n")
    header, first = lines[0].split(","), lines[1].split(",")
    first[header.index("age")] = str(int(first[header.index("age")]) + 1)  # the corrected age
    lines[1] = ",".join(first)
    path.write_text("\n".join(lines), encoding="utf-8")
    os.utime(path, (time.time() - 86400 * 365, time.time() - 86400 * 365))
    dry = snakemake(workdir, "-n", "results/harmonized/US.parquet")
    assert "harmonize_study" in dry.stdout and "Params have changed" in dry.stdout, dry.stdout[-2000:]
    assert snakemake(workdir, "--cores", "2", "results/harmonized/US.parquet").returncode == 0
    recorded = read_provenance(workdir / "results" / "harmonized" / "US.parquet")["raw_files_sha256"][
        "us_hartford_wide.csv"
    ]
    import hashlib

    assert recorded == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "Nothing to be done" in snakemake(workdir, "-n", "results/harmonized/US.parquet").stdout


def run_and_kill(workdir: Path, after: float) -> None:
    """Start the harmonization and pooling, then kill Snakemake and its jobs (its own process group) by id."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    process = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2", "results/harmonized/pooled.parquet"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(after)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.workflow
def test_after_kills_at_several_points_the_next_run_cleans_up_and_gives_identical_results(tmp_path, completed_run):
    workdir = copy_workflow(tmp_path)
    for after in (1.5, 3.0, 4.5, 6.0):
        run_and_kill(workdir, after)
    harmonized = workdir / "results" / "harmonized"
    harmonized.mkdir(parents=True, exist_ok=True)
    stale = harmonized / ".EU6.parquet.k1ll3d0_"
    stale.write_bytes(b"PAR1 half written")
    # A killed Snakemake cannot release its lock; as its message says, the user unlocks first
    # (the lock is what stops two runs writing the same files, so the workflow never forces it).
    assert snakemake(workdir, "--unlock").returncode == 0
    result = snakemake(workdir, "--cores", "2", "results/harmonized/pooled.parquet")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not stale.exists() and not [p.name for p in harmonized.iterdir() if p.name.startswith(".")]
    outputs = sorted(
        p.relative_to(completed_run)
        for p in (completed_run / "results" / "harmonized").iterdir()
        if p.suffix in (".parquet", ".csv")
    )
    outputs += sorted(p.relative_to(completed_run) for p in (completed_run / "results" / "audit").glob("*/*.tsv"))
    assert len(outputs) > 20
    assert [p for p in outputs if (workdir / p).read_bytes() != (completed_run / p).read_bytes()] == []


INJECTIONS = ['=HYPERLINK("http://x","y")', "@SUM(1+1)", "+1+1", "-2+3+cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]


def spreadsheet_cells(path: Path, separator: str) -> list[list]:
    """The file opened by LibreOffice as a spreadsheet user would, saved as .xlsx and read back by calamine."""
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        pytest.skip("LibreOffice is not installed")
    options = f"CSV:{ord(separator)},34,76,1"
    subprocess.run(
        [
            soffice,
            "--headless",
            f"-env:UserInstallation=file://{path.parent}/lo",
            "--convert-to",
            "xlsx",
            "--infilter=" + options,
            "--outdir",
            str(path.parent / "xlsx"),
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    workbook = python_calamine.CalamineWorkbook.from_path(str(path.parent / "xlsx" / (path.stem + ".xlsx")))
    return workbook.get_sheet_by_index(0).to_python()


@pytest.mark.parametrize(
    "writer,name,separator", [(write_table, "table.tsv", "\t"), (write_csv, "harmonized.csv", ",")], ids=["tsv", "csv"]
)
def test_tables_open_in_a_spreadsheet_without_running_formulas(tmp_path, writer, name, separator):
    frame = pd.DataFrame(
        {
            "text": INJECTIONS,
            "number": [-0.41, 2.5, -3.0, 0.0, 1e-3, -12.0],
            "label": ["-0.41", "IPS", "SAU", "-", "a-b", "+"],
        }
    )
    writer(frame, tmp_path / name)
    rows = spreadsheet_cells(tmp_path / name, separator)
    assert rows[0] == ["text", "number", "label"]
    assert [row[0] for row in rows[1:]] == [
        "'" + value.replace("\r", "\n") for value in INJECTIONS
    ]  # text, never a formula result
    assert [row[1] for row in rows[1:]] == [-0.41, 2.5, -3.0, 0.0, 1e-3, -12.0]  # numbers stay numbers
    assert rows[1][2] == -0.41 and rows[2][2] == "IPS" and rows[4][2] == "'-"


def test_the_guard_leaves_the_demo_tables_byte_identical(tmp_path, completed_run):
    from ipdpool.tables import formula_safe, read_table

    tables = sorted((completed_run / "results").rglob("*.tsv"))
    assert len(tables) > 20
    for path in tables:
        frame = read_table(path)
        assert formula_safe(frame).equals(frame), path


def test_an_acknowledged_condition_runs_and_its_reason_is_in_the_flow_table(tmp_path):
    rules = load_rules(REPO / "config" / "studies" / "US.yaml")
    rules["published_n"]["IPS"] = 70
    rules["acknowledged"] = {"published_n IPS": "the paper counted two participants randomized in error"}
    result = harmonize_study(
        rules, load_schema(REPO / "config" / "schema.yaml"), b"reliability-key-0123456789", base_dir=REPO
    )
    acknowledged = result.flow[result.flow["stage"] == "acknowledged"]
    assert acknowledged["reason"].tolist() == [
        "published_n IPS: the paper counted two participants randomized in error"
    ]
    assert len(result.data) == 204
