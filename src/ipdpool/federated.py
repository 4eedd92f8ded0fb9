"""Federated analysis: site bundles of sufficient statistics instead of participant data.

A site runs the workflow on its own raw files and writes one JSON bundle per study: the
per-study statistics of every configured model (models.statistics: counts, sums and
cross-products of complete cases), follow-up scores by arm (n, mean, SD), Table 1
aggregates, the participant flow and the harmonization status, and a manifest with the
SHA-256 of the rule file, schema and analysis configuration and the package version.
No row, pseudonym or raw value is written. Disclosure checks (DataSHIELD's filters as
defaults) run before a bundle is written; a bundle that fails is not written.

The coordinating centre checks each bundle's manifest against its own configuration and
uses the statistics exactly as it uses those of the studies whose data it holds, so the
pooled tables are the same whichever way a study took part.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

BUNDLE_FORMAT = "ipdpool-bundle/1"
DISCLOSURE_DEFAULTS = {"nfilter_tab": 3, "nfilter_glm": 0.33, "nfilter_subset": 3}
CATEGORICAL = ("sex", "diagnosis", "employed")
FLOW_COLUMNS = ["study", "stage", "reason", "IPS", "SAU", "total"]
# The rule log without its notes column: notes can quote recoded values.
STATUS_COLUMNS = [
    "study",
    "variable",
    "rule",
    "status",
    "source",
    "rows_in",
    "nonmissing_in",
    "nonmissing_out",
    "values_recoded",
    "set_missing",
]


class BundleError(Exception):
    """A bundle that must not be written or cannot be used; the message says why."""


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sha256_json(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def plain(value):
    """JSON-ready copy: arrays as nested lists (floats keep every bit through JSON's repr)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN
    return value


def write_json(value, path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(plain(value), sort_keys=True, indent=1) + "\n", encoding="utf-8")


def read_statistics(paths) -> dict[str, dict]:
    """study -> statistics, from statistics files or bundles (whose statistics are used as they are)."""
    out = {}
    for path in paths:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
        statistics = content.get("statistics", content)
        out[statistics["study"]] = statistics
    return dict(sorted(out.items()))


# ------------------------------------------------------------------ Table 1 aggregates


def table1_aggregates(part) -> dict:
    """Baseline characteristics by arm: counts and moments only (no values)."""
    out = {}
    for arm in ("IPS", "SAU"):
        rows = part[part["arm"] == arm]
        entry = {"n": int(len(rows))}
        age = rows["age"].dropna()
        entry["age"] = {
            "n": int(len(age)),
            "mean": float(age.mean()) if len(age) else None,
            "sd": float(age.std(ddof=1)) if len(age) > 1 else None,
        }
        for column in CATEGORICAL:
            values = (
                rows[column].dropna().astype(str)
                if column != "employed"
                else rows[column].dropna().astype(int).astype(str)
            )
            entry[column] = {level: int(count) for level, count in values.value_counts().sort_index().items()}
            entry[column]["missing"] = int(rows[column].isna().sum())
        entry["outcomes"] = {}
        for column in [c for c in part if c.endswith("_bl") and f"{c[:-3]}_fu" in part]:
            outcome = column[:-3]
            baseline, followup = rows[column].dropna(), rows[f"{outcome}_fu"].dropna()
            entry["outcomes"][outcome] = {
                "instrument": (
                    str(rows[f"{outcome}_instrument"].dropna().iloc[0])
                    if rows[f"{outcome}_instrument"].notna().any()
                    else ""
                ),
                "baseline_n": int(len(baseline)), "baseline_mean": float(baseline.mean()) if len(baseline) else None,
                "baseline_sd": float(baseline.std(ddof=1)) if len(baseline) > 1 else None,
                "followup_n": int(len(followup)),
            }  # fmt: skip
        out[arm] = entry
    return out


# ------------------------------------------------------------------ disclosure control


def disclosure_problems(statistics: dict, table1: dict, thresholds: dict) -> list[str]:
    """DataSHIELD-style checks: small cells of arm and categorical covariates by arm, too many
    parameters for the participants (nfilter.glm), statistics from too few participants."""
    tab, glm, subset = thresholds["nfilter_tab"], thresholds["nfilter_glm"], thresholds["nfilter_subset"]
    study, problems = statistics["study"], []
    for arm, entry in table1.items():
        if 0 < entry["n"] < tab:
            problems.append(f"study {study}: arm {arm} has {entry['n']} participants, fewer than nfilter_tab {tab}")
        for column in CATEGORICAL:
            for level, count in entry[column].items():
                if level != "missing" and 0 < count < tab:
                    problems.append(
                        f"study {study}: cell {column} = {level} in arm {arm} has {count} participants, "
                        f"fewer than nfilter_tab {tab}"
                    )
    for outcome, content in statistics["outcomes"].items():
        for key, design in content["designs"].items():
            n, parameters = design["n"], len(design["names"]) - 1
            where = f"study {study}: model {key} for outcome {outcome}"
            if 0 < n < subset:
                problems.append(f"{where}: statistics from {n} participants, fewer than nfilter_subset {subset}")
            elif n > 0 and parameters > glm * n:
                problems.append(
                    f"{where}: {parameters} parameters for {n} participants, more than nfilter_glm {glm} x n"
                )
        arms = content.get("arms", {})
        for arm in ("IPS", "SAU"):
            count = arms.get(arm, {}).get("n", 0)
            if 0 < count < tab:
                problems.append(
                    f"study {study}: follow-up {outcome} in arm {arm} has {count} participants, "
                    f"fewer than nfilter_tab {tab}"
                )
    return problems


# ------------------------------------------------------------------ bundles


def manifest(study: str, rule_file: Path, schema_file: Path, analysis: dict, version: str) -> dict:
    return {
        "format": BUNDLE_FORMAT, "study": study, "ipdpool_version": version,
        "rule_file_sha256": sha256_file(rule_file), "schema_sha256": sha256_file(schema_file),
        "analysis_sha256": sha256_json(analysis),
    }  # fmt: skip


def imputation_problems(imputations: dict, thresholds: dict) -> list[str]:
    """The disclosure checks of model statistics, on each completed data set's statistics."""
    problems = []
    for entries in imputations["outcomes"].values():
        for number, entry in enumerate(entries):
            found = disclosure_problems({"study": entry["study"], "outcomes": entry["outcomes"]}, {}, thresholds)
            problems += [f"{problem} (completed data set {number})" for problem in found]
    return problems


def make_bundle(
    statistics: dict,
    table1: dict,
    flow: list[dict],
    status: list[dict],
    manifest_: dict,
    thresholds: dict,
    imputations: dict | None = None,
) -> dict:
    """The bundle; `imputations` (optional key: ipdpool.imputation.analysis.site_imputations) carries
    the statistics of the site's completed data sets for federated multiple imputation."""
    problems = disclosure_problems(statistics, table1, thresholds)
    problems += imputation_problems(imputations, thresholds) if imputations is not None else []
    if problems:
        raise BundleError("bundle refused by disclosure control, nothing written:\n" + "\n".join(problems))
    content = {"statistics": statistics, "table1": table1, "flow": flow, "status": status}
    if imputations is not None:
        content["imputations"] = imputations
    return {"manifest": {**manifest_, "content_sha256": sha256_json(plain(content))}, **content}


def check_bundle(bundle: dict, path: Path, study: str, schema_file: Path, analysis: dict, version: str) -> list[str]:
    """What makes a received bundle unusable here: wrong format or study, tampered content, or a
    schema, analysis configuration or package version other than the coordinator's."""
    m = bundle.get("manifest", {})
    problems = []
    if m.get("format") != BUNDLE_FORMAT:
        return [f"bundle {path}: not an ipdpool bundle (format {m.get('format')!r}, expected {BUNDLE_FORMAT!r})"]
    optional = ("imputations",) if "imputations" in bundle else ()
    content = {k: bundle.get(k) for k in ("statistics", "table1", "flow", "status", *optional)}
    if m.get("content_sha256") != sha256_json(content):
        problems.append(f"bundle {path}: content does not match its manifest checksum (changed after it was written)")
    if m.get("study") != study or (bundle.get("statistics") or {}).get("study") != study:
        problems.append(f"bundle {path}: holds study {m.get('study')!r}, configured as {study!r}")
    if m.get("schema_sha256") != sha256_file(schema_file):
        problems.append(f"bundle {path}: harmonized with another schema than {schema_file} (SHA-256 differs)")
    if m.get("analysis_sha256") != sha256_json(analysis):
        problems.append(f"bundle {path}: computed for another analysis configuration (the `analysis` section differs)")
    if m.get("ipdpool_version") != version:
        problems.append(
            f"bundle {path}: written by ipdpool {m.get('ipdpool_version')}, this is {version}; "
            "mixed versions are refused"
        )
    return problems


def read_bundle(path: Path, study: str, schema_file: Path, analysis: dict, version: str) -> dict:
    try:
        bundle = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BundleError(f"study {study}: bundle {path} cannot be read: {error}") from error
    problems = check_bundle(bundle, path, study, schema_file, analysis, version)
    if problems:
        raise BundleError(f"study {study}: bundle refused:\n" + "\n".join(problems))
    return bundle
