"""Identifier firewall, pseudonym key and read-only inputs, on a full workflow run.

Canary strings are planted in every text and date field of the raw files that no rule
reads (names, national ids, free text, birth dates, unused visit dates); after the
workflow and the report, no byte under results/ or logs/ (Parquet decoded, the report's
embedded files decoded) may contain a canary or the pseudonym key.
"""

import base64
import datetime as dt
import hashlib
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, snakemake

from ipdpool.demo.files import write_raw_file
from ipdpool.demo.generate import build_demo

pytestmark = pytest.mark.workflow

KEY = "KEY-CANARY-3b8e1f0c9d2a47e6"
RULE_COLUMN_KEYS = ("column", "columns", "id", "site", "week", "hours", "start", "end", "date")


def referenced_columns(rules) -> set[str]:
    """Every raw column a rule file names."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in RULE_COLUMN_KEYS and isinstance(value, str):
                    found.add(value)
                elif key == "columns" and isinstance(value, list):
                    found.update(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(rules)
    return found


def plant_canaries(workdir: Path) -> list[str]:
    canaries = []
    for study, export in build_demo().exports.items():
        rules = yaml.safe_load((workdir / "config" / "studies" / f"{study}.yaml").read_text(encoding="utf-8"))
        used = referenced_columns(rules)
        for raw in export.files:
            for frame in raw.sheets.values():
                for position, column in enumerate(frame.columns):
                    if column in used:
                        continue
                    values = frame[column]
                    if any(isinstance(v, (dt.date, dt.datetime)) for v in values):
                        frame[column] = [
                            None if v is None else dt.date(1901, 1, 1) + dt.timedelta(days=i % 360)
                            for i, v in enumerate(values)
                        ]
                    elif pd.api.types.is_string_dtype(values) or values.dtype == object:
                        planted = [f"CANARY{study}{position:02d}R{i:05d}" for i in range(len(values))]
                        frame[column] = planted
                        canaries += planted
            write_raw_file(raw, workdir / "resources" / "demo" / "raw" / study)
    return canaries


def readable_text(path: Path) -> str:
    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_csv(index=False)
    text = path.read_bytes().decode("utf-8", errors="replace")
    if path.suffix == ".html":  # the report embeds files as base64 data URIs
        for payload in re.findall(r";base64,([A-Za-z0-9+/=]+)", text):
            text += base64.b64decode(payload).decode("utf-8", errors="replace")
    return text


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def canary_run(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("canary"))
    canaries = plant_canaries(workdir)
    raw_before = checksums(workdir / "resources" / "demo" / "raw")
    os.environ["IPDPOOL_PSEUDONYM_KEY"] = KEY
    try:
        result = snakemake(workdir, "--cores", "2")
        assert result.returncode == 0, result.stderr[-3000:]
        report = snakemake(workdir, "--report", "results/report.html")
        assert report.returncode == 0, report.stderr[-2000:]
    finally:
        del os.environ["IPDPOOL_PSEUDONYM_KEY"]
    return workdir, canaries, raw_before


def test_canaries_were_planted_in_every_identifier_field(canary_run):
    _, canaries, _ = canary_run
    studies = {c[6:9].rstrip("0123456789") for c in canaries}
    assert len(canaries) > 3000 and {"EU", "DK", "SE", "NL", "US"} <= {s[:2] for s in studies}


def test_no_canary_and_no_key_in_any_output_or_log(canary_run):
    workdir, canaries, _ = canary_run
    pattern = re.compile(r"CANARY[A-Z0-9]+R\d{5}|1901-\d\d-\d\d|\d\d/\d\d/1901|" + re.escape(KEY))
    leaks = []
    scanned = 0
    for folder in ("results", "logs"):
        for path in (workdir / folder).rglob("*"):
            if path.is_file():
                scanned += 1
                leaks += [(str(path.relative_to(workdir)), m) for m in set(pattern.findall(readable_text(path)))]
    assert scanned > 100 and (workdir / "results" / "report.html").is_file()
    assert leaks == []


def test_the_key_changed_every_pseudonym(canary_run, completed_run):
    ours = pd.read_parquet(canary_run[0] / "results" / "harmonized" / "pooled.parquet")["participant_id"]
    demo_key = pd.read_parquet(completed_run / "results" / "harmonized" / "pooled.parquet")["participant_id"]
    assert len(ours) == len(demo_key) and not set(ours) & set(demo_key)


def test_raw_files_are_never_modified(canary_run):
    workdir, _, before = canary_run
    assert checksums(workdir / "resources" / "demo" / "raw") == before


def test_participant_level_outputs_are_readable_by_the_owner_only(canary_run):
    harmonized = canary_run[0] / "results" / "harmonized"
    assert harmonized.stat().st_mode & 0o777 == 0o700
    for path in harmonized.iterdir():
        if path.suffix in (".parquet", ".csv"):
            assert path.stat().st_mode & 0o777 == 0o600, path.name


def test_a_run_without_a_key_outside_demo_mode_stops_with_a_clear_message(tmp_path):
    workdir = copy_workflow(tmp_path)
    config = workdir / "config" / "config.yaml"
    text = config.read_text().replace("demo_mode: true", "demo_mode: false")
    text = text.replace("  key_file: resources/demo/DEMO_ONLY_pseudonym.key\n  demo_key: true\n", "  {}\n").replace(
        "pseudonym:\n  {}\n", "pseudonym: {}\n"
    )
    config.write_text(text)
    os.environ.pop("IPDPOOL_PSEUDONYM_KEY", None)
    result = snakemake(workdir, "--cores", "2", "results/harmonized/SE.parquet")
    assert result.returncode != 0
    log = (workdir / "logs" / "harmonize" / "SE.log").read_text()
    assert (
        "no pseudonym key: set the IPDPOOL_PSEUDONYM_KEY environment variable or pseudonym.key_file in the config"
        in log
    )
    assert not (workdir / "results" / "harmonized" / "SE.parquet").exists()


def test_logs_audit_files_plots_and_the_report_are_owner_only(canary_run):
    """Everything the run created under logs/ and results/audit/, the distribution plots and the
    report: files 0600, folders 0700 (the workflow's umask, at creation)."""
    workdir = canary_run[0]
    paths = [
        workdir / "results" / "report.html",
        *sorted((workdir / "results" / "audit").rglob("*")),
        *sorted((workdir / "logs").rglob("*")),
    ]
    assert any(p.name == "distributions.svg" for p in paths)
    wrong = [
        (str(p.relative_to(workdir)), oct(p.stat().st_mode & 0o777))
        for p in paths
        if p.stat().st_mode & 0o777 != (0o700 if p.is_dir() else 0o600)
    ]
    assert wrong == []
