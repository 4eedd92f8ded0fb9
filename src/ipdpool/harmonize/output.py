"""Writing harmonized data for audit: Parquet with provenance, a CSV copy, codebook, pooled files.

Participant-level files are written to a temporary name, made readable by the
owner only (0600), then renamed, so a half-written file is never taken as complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..paths import make_private_dirs
from ..tables import formula_safe
from .problems import HarmonizationError, Problem
from .schema import conform, pandera_schema, schema_failures

PROVENANCE_KEY = b"ipdpool.provenance"
PRIVATE = 0o600


def _atomic(path: Path, write) -> None:
    path = Path(path)
    make_private_dirs(path.parent)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, PRIVATE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_parquet(frame: pd.DataFrame, path: Path, provenance: dict) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[PROVENANCE_KEY] = json.dumps(provenance, sort_keys=True).encode("utf-8")
    table = table.replace_schema_metadata(metadata)
    _atomic(path, lambda target: pq.write_table(table, target))


def read_provenance(path: Path) -> dict:
    return json.loads(pq.read_schema(path).metadata[PROVENANCE_KEY])


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    _atomic(
        path, lambda target: formula_safe(frame).to_csv(target, index=False, lineterminator="\n", float_format="%.10g")
    )


def pool(study_files: list[Path], schema: dict) -> tuple[pd.DataFrame, dict]:
    """Stack the studies' harmonized files; check the pooled data against the schema again."""
    frames, provenance = [], {}
    for path in sorted(study_files, key=lambda p: Path(p).name):
        frame = pd.read_parquet(path)
        study_provenance = read_provenance(path)
        provenance[study_provenance["study"]] = study_provenance
        frames.append(frame)
    pooled = conform(pd.concat(frames, ignore_index=True), schema)
    failures = schema_failures(pooled, pandera_schema(schema))
    if failures:
        raise HarmonizationError(
            [Problem("(pooled)", "pooled.parquet", f.split(":")[0].removeprefix("column "), f) for f in failures]
        )
    return pooled, {"studies": provenance}


def codebook(schema: dict, pooled: pd.DataFrame, study_rules: dict[str, dict]) -> pd.DataFrame:
    """One row per harmonized column: meaning, type, allowed values or range, per-study source."""
    rows = []
    for name, spec in schema["variables"].items():
        rows.append(
            {
                "column": name,
                "type": spec["type"],
                "allowed_or_range": ", ".join(map(str, spec["allowed"]))
                if "allowed" in spec
                else (f"[{spec['range'][0]}, {spec['range'][1]}]" if "range" in spec else ""),
                "unit": spec.get("unit", ""),
                "description": " ".join(spec["description"].split()),
                "non_missing": int(pooled[name].notna().sum()),
                "by_study": "the study id from config/config.yaml"
                if name == "study"
                else "; ".join(f"{s}: {_rule_name(r['variables'][name])}" for s, r in sorted(study_rules.items())),
            }
        )
    for outcome, spec in schema["outcomes"].items():
        instruments = "; ".join(f"{s}: {_instrument(r['outcomes'][outcome])}" for s, r in sorted(study_rules.items()))
        parts = {
            "bl": (
                "float",
                f"{spec['construct']} at baseline on the study's instrument scale; higher = {spec['higher_means']}",
            ),
            "fu": (
                "float",
                f"{spec['construct']} at the 18-month follow-up on the study's instrument scale; "
                f"higher = {spec['higher_means']}",
            ),
            "instrument": ("string", f"instrument used for {spec['construct']} (missing = not collected)"),
            "bl_z": ("float", f"baseline {spec['construct']} standardized by the study's baseline mean and SD"),
            "fu_z": (
                "float",
                f"follow-up {spec['construct']} standardized by the study's baseline mean and SD "
                "(a difference is an SMD)",
            ),
        }
        for part, (kind, description) in parts.items():
            name = f"{outcome}_{part}"
            rows.append(
                {
                    "column": name,
                    "type": kind,
                    "allowed_or_range": "per instrument" if part in ("bl", "fu") else "",
                    "unit": "SD units" if part.endswith("_z") else "",
                    "description": description,
                    "non_missing": int(pooled[name].notna().sum()),
                    "by_study": instruments,
                }
            )
    return pd.DataFrame(rows)


def _rule_name(rule: dict) -> str:
    return next(iter(rule))


def _instrument(rule: dict) -> str:
    if "not_collected" in rule:
        return "not collected"
    if "undetermined" in rule:
        return "undetermined"
    return f"{rule['instrument']} [{rule['range'][0]}, {rule['range'][1]}]" + (
        " reversed" if rule["direction"] == "reversed" else ""
    )


def pooled_flow(flows: list[pd.DataFrame]) -> pd.DataFrame:
    """The studies' flow tables stacked, then the same stages summed over studies (study = all)."""
    stacked = pd.concat(flows, ignore_index=True)
    per_participant = stacked[~stacked["stage"].isin(["raw rows", "acknowledged"])]  # files and reasons, not counts
    totals = (
        per_participant.groupby(["stage", "reason"], sort=False, dropna=False)[["IPS", "SAU", "total"]]
        .sum(min_count=1)
        .reset_index()
    )
    totals.insert(0, "study", "all")
    return pd.concat([stacked, totals], ignore_index=True)


class ReconciliationError(Exception):
    pass


def reconcile(flows: pd.DataFrame, pooled: pd.DataFrame) -> pd.DataFrame:
    """Participants in the raw files = participants in the pooled data (+ excluded, each with a
    reason; harmonization excludes nobody), per study and arm. Raises if any count differs."""
    rows = []
    raw = flows[flows["stage"] == "raw participants"].set_index("study")
    uncounted = sorted(set(pooled["study"]) - set(raw.index))
    if uncounted:
        raise ReconciliationError(
            f"no raw participant count in the flow table of {', '.join(uncounted)} "
            "(made by an older version? re-run harmonize_study)"
        )
    for study in sorted(set(raw.index) | set(pooled["study"])):
        for arm in ("IPS", "SAU", "total"):
            in_raw = int(raw.loc[study, arm]) if study in raw.index else 0
            in_pool = int(
                (pooled["study"] == study).sum()
                if arm == "total"
                else ((pooled["study"] == study) & (pooled["arm"] == arm)).sum()
            )
            rows.append(
                {
                    "study": study,
                    "arm": arm,
                    "raw_participants": in_raw,
                    "pooled": in_pool,
                    "excluded": 0,
                    "difference": in_raw - in_pool,
                }
            )
    table = pd.DataFrame(rows)
    wrong = table[table["difference"] != 0]
    if len(wrong):
        lines = [
            f"study {r.study}, arm {r.arm}: {r.raw_participants} in the raw files, "
            f"{r.pooled} pooled, {r.excluded} excluded"
            for r in wrong.itertuples()
        ]
        raise ReconciliationError(
            "participants lost or duplicated between raw files and pooled data:\n  - " + "\n  - ".join(lines)
        )
    return table


def status_matrix(rule_logs: list[pd.DataFrame]) -> pd.DataFrame:
    """Study x variable: harmonized / not_collected / undetermined."""
    logs = pd.concat(rule_logs, ignore_index=True)
    matrix = logs.pivot_table(index="study", columns="variable", values="status", aggfunc="first", sort=False)
    return matrix.reset_index()
