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

import datetime as dt
import fcntl
import functools
import hashlib
import json
import subprocess
from pathlib import Path

import jsonschema
import numpy as np

BUNDLE_FORMAT = "ipdpool-bundle/4"
BUNDLE_SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "bundle.schema.json"
DISCLOSURE_DEFAULTS = {"nfilter_tab": 3, "nfilter_glm": 0.33, "nfilter_subset": 3, "nested": "harmonize"}
SIGNATURE_NAMESPACE = "ipdpool-bundle"
# Cross-products are sums of squares: symmetric to rounding, and positive semi-definite. The
# tolerances are relative to the diagonal (the matrix scaled to unit diagonal), so that they
# hold whatever the columns' units or offsets.
SYMMETRY_TOLERANCE = 1e-10
PSD_TOLERANCE = 1e-8
# No real cross-product, count or sum reaches this: squares and products of entries stay finite
# (1e150 squared is 1e300), so every later check is arithmetic on finite numbers.
MAX_MAGNITUDE = 1e150
# A reference is a data value (an offset); beyond this a float no longer carries the unit digits.
MAX_REFERENCE = 1e15
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


FLOW_COUNTS = ["IPS", "SAU", "total"]
STATUS_COUNTS = ["rows_in", "nonmissing_in", "nonmissing_out", "values_recoded"]


def status_records(frame) -> list[dict]:
    """The harmonization status as a bundle carries it: a constant rule's value (in the demo, a
    site's name such as a town) is the rule file's text, not an aggregate, so only 'constant' is kept."""
    records = exact_records(frame, STATUS_COLUMNS, STATUS_COUNTS)
    for row in records:
        if row["rule"] == "constant" or str(row["source"] or "").startswith("constant "):
            row["source"] = "constant"
    return records


def exact_records(frame, columns: list[str], counts: list[str]) -> list[dict]:
    """Rows as the bundle schema types them: counts as integers (a table read back from TSV holds
    them as floats where a cell is empty), empty cells as null."""
    out = []
    for row in frame[columns].to_dict("records"):
        for column, value in row.items():
            if isinstance(value, float) and not np.isfinite(value):
                row[column] = None
            elif column in counts and value is not None:
                row[column] = int(value)
        out.append(row)
    return out


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
            for label, block in design.get("centres", {}).items():
                if 0 < block["n"] < subset:
                    problems.append(
                        f"{where}, centre {label}: statistics from {block['n']} participants, "
                        f"fewer than nfilter_subset {subset}"
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


def manifest(
    study: str,
    rule_file: Path,
    schema_file: Path,
    analysis: dict,
    version: str,
    release_line: str = "1",
    release_sequence: int = 1,
    released: str | None = None,
) -> dict:
    """The bundle's manifest. `release_sequence` (the site ledger's count of releases) and the
    release time are signed with the rest, so the centre can refuse an older bundle replayed."""
    released = released or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return {
        "format": BUNDLE_FORMAT, "study": study, "ipdpool_version": version, "release_line": release_line,
        "release_sequence": release_sequence, "released": released,
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


def accept_release(state_file: Path, study: str, manifest_: dict, minimum: int = 1) -> str:
    """Refuse a bundle older than the newest the centre has accepted for the study or than the
    configured minimum, and one whose sequence equals an accepted one but whose content differs
    (a site ledger rolled back to a backup numbers a different release again: the two could be
    differenced); otherwise record it. The state file keeps, per study, the highest sequence and
    each accepted sequence's content_sha256. The same bundle again is accepted: runs are
    repeatable. The file is locked while read and written, since studies are imported in parallel."""
    sequence, where = manifest_["release_sequence"], f"study {study}: bundle"
    state_file = Path(state_file)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    with state_file.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = handle.read()
        accepted = strict_json(text, f"the centre's record of accepted releases {state_file}") if text else {}
        record = accepted.get(study, {"highest": 0, "contents": {}})
        if isinstance(record, int):  # the record of ipdpool 0.2, before contents were kept
            record = {"highest": record, "contents": {}}
        highest, contents = record["highest"], record["contents"]
        if sequence < minimum:
            raise BundleError(
                f"{where} release {sequence} of {manifest_['released']} is older than the minimum release "
                f"{minimum} configured for it (federated.minimum_release): a superseded bundle is refused"
            )
        if sequence < highest:
            raise BundleError(
                f"{where} release {sequence} of {manifest_['released']} is older than release {highest}, already "
                f"accepted for this study ({state_file}): a superseded bundle is refused"
            )
        if contents.get(str(sequence), manifest_["content_sha256"]) != manifest_["content_sha256"]:
            raise BundleError(
                f"{where} release {sequence} of {manifest_['released']} carries the sequence of a release already "
                f"accepted for this study ({state_file}) with other content: the site's release ledger was rolled "
                "back, and the two releases could be differenced; refused (the site must start a new release line "
                "explicitly, or release again from the ledger its last release wrote)"
            )
        contents[str(sequence)] = manifest_["content_sha256"]
        accepted[study] = {"highest": max(sequence, highest), "contents": contents}
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(accepted, indent=1, sort_keys=True) + "\n")
    return f"release {sequence} of {manifest_['released']} (newest accepted before: {highest or 'none'})"


def make_bundle(
    statistics: dict,
    table1: dict,
    flow: list[dict],
    status: list[dict],
    manifest_: dict,
    thresholds: dict,
    imputations: dict | None = None,
    whole_table1: dict | None = None,
) -> dict:
    """The bundle; `imputations` (optional key: ipdpool.imputation.analysis.site_imputations) carries
    the statistics of the site's completed data sets for federated multiple imputation.
    `whole_table1` is Table 1 of all the study's participants, before the nested-subset rule: its
    cells are checked too, so that harmonizing Table 1 cannot hide a small cell."""
    problems = disclosure_problems(statistics, table1, thresholds)
    if whole_table1 is not None:
        cells = disclosure_problems({"study": statistics["study"], "outcomes": {}}, whole_table1, thresholds)
        problems += [problem for problem in cells if problem not in problems]
    problems += imputation_problems(imputations, thresholds) if imputations is not None else []
    if problems:
        raise BundleError("bundle refused by disclosure control, nothing written:\n" + "\n".join(problems))
    content = {"statistics": statistics, "table1": table1, "flow": flow, "status": status}
    if imputations is not None:
        content["imputations"] = imputations
    return {"manifest": {**manifest_, "content_sha256": sha256_json(plain(content))}, **content}


def non_finite_field(value, field: str = "") -> str | None:
    """The path of the first number that is not finite or beyond MAX_MAGNITUDE, or None. json turns
    an overflowing literal such as 1e999 into inf without calling parse_constant, and keeps 10**400
    as an int that no float holds, so this walks the result."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # the comparison is False for nan and inf, and exact for an int no float holds
        return None if abs(value) <= MAX_MAGNITUDE else field or "(top level)"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = non_finite_field(item, f"{field}[{key}]" if isinstance(key, int) else f"{field}.{key}".lstrip("."))
        if found:
            return found
    return None


def strict_json(text: str, where: str):
    """JSON as written by write_json: no NaN or Infinity (neither as literal nor as a number too
    large for a float, e.g. 1e999), no duplicate keys (json would keep the last)."""

    def no_constant(name):
        raise BundleError(f"{where}: not strict JSON: {name} is not a number")

    def unique(pairs):
        keys = [k for k, _ in pairs]
        duplicated = sorted({k for k in keys if keys.count(k) > 1})
        if duplicated:
            raise BundleError(f"{where}: not strict JSON: key {duplicated[0]!r} appears twice in one object")
        return dict(pairs)

    try:
        parsed = json.loads(text, parse_constant=no_constant, object_pairs_hook=unique)
    except ValueError as error:
        raise BundleError(f"{where}: not valid JSON: {error}") from None
    except RecursionError:
        raise BundleError(f"{where}: not valid JSON: nested too deep") from None
    field = non_finite_field(parsed)
    if field:
        raise BundleError(
            f"{where}, field {field}: a number not finite or larger in magnitude than {MAX_MAGNITUDE:g}, "
            "which no real count or cross-product reaches"
        )
    return parsed


def _exact_integer(checker, instance) -> bool:
    # JSON Schema counts 5.0 as an integer; a count written as 5.0 was not written by ipdpool.
    return isinstance(instance, int) and not isinstance(instance, bool)


STRICT_VALIDATOR = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _exact_integer),
)


@functools.lru_cache(maxsize=4)
def bundle_validator(schema_file: str):
    """The compiled bundle schema (compiling costs more than validating a bundle)."""
    return STRICT_VALIDATOR(json.loads(Path(schema_file).read_text(encoding="utf-8")))


def field_name(parts) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def schema_problems(bundle, where: str, schema_file: Path = BUNDLE_SCHEMA) -> list[str]:
    """One sentence per place where the bundle breaks the bundle schema (the deepest cause of each)."""
    validator = bundle_validator(str(schema_file))
    problems = []
    for error in sorted(validator.iter_errors(bundle), key=lambda e: [str(p) for p in e.absolute_path]):
        cause = jsonschema.exceptions.best_match([error])
        # the kind of value only: a raw value may be identifier-like text
        shown = VALUE_KINDS.get(type(cause.instance), "a value")
        problems.append(
            f"{where}, field {field_name(cause.absolute_path)}: {shown} fails the bundle schema "
            f"({cause.validator}: {_short(cause)})"
        )
    return problems


VALUE_KINDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
    list: "an array",
    dict: "an object",
}


def _short(error) -> str:
    rule = error.validator_value
    if error.validator in ("type", "const", "minimum", "pattern", "enum", "minItems", "minLength"):
        return f"{error.validator} {json.dumps(rule)}"
    if error.validator in ("required", "additionalProperties"):
        return error.message.split(" (")[0][:120]
    return error.validator


def matrix_problems(block: dict, field: str, size: int, where: str) -> list[str]:
    """A cross-product block: square of the design's size, symmetric and positive semi-definite
    within SYMMETRY_TOLERANCE and PSD_TOLERANCE (relative to its diagonal), products[0][0] equal
    to n (the intercept's own cross-product is the count, whether products are about 0 or about
    the reference, whose intercept entry is 0), and a reference of the same size with 0 first."""
    products = block["products"]
    if len(products) != size or any(len(row) != size for row in products):
        return [f"{where}, field {field}.products: not a {size} x {size} matrix (one row and column per name)"]
    problems = []
    reference = block.get("reference")
    if reference is not None and (len(reference) != size or reference[0] != 0):
        problems.append(f"{where}, field {field}.reference: needs {size} numbers, the first (intercept) 0")
    elif reference is not None and max(abs(r) for r in reference) > MAX_REFERENCE:
        problems.append(f"{where}, field {field}.reference: a reference larger in magnitude than {MAX_REFERENCE:g}")
    matrix = np.asarray(products, float)
    diagonal = np.diag(matrix)
    if (diagonal < 0).any():
        j = int(np.argmin(diagonal))
        return problems + [f"{where}, field {field}.products[{j}][{j}]: a sum of squares is negative"]
    if matrix[0, 0] != block["n"]:
        problems.append(f"{where}, field {field}.n: disagrees with the count in its products[0][0]")
    scale = np.sqrt(np.outer(diagonal, diagonal))
    scaled = np.divide(matrix, scale, out=np.zeros_like(matrix), where=scale > 0)
    if (np.abs(matrix)[scale == 0] > 0).any():
        problems.append(f"{where}, field {field}.products: a column with no sum of squares has non-zero cross-products")
    asymmetry = np.abs(scaled - scaled.T).max()
    if asymmetry > SYMMETRY_TOLERANCE:
        i, j = np.unravel_index(np.argmax(np.abs(scaled - scaled.T)), scaled.shape)
        problems.append(
            f"{where}, field {field}.products: not symmetric (entries [{i}][{j}] and [{j}][{i}] differ by "
            f"{asymmetry:.2g} of their scale, tolerance {SYMMETRY_TOLERANCE:g})"
        )
    elif np.linalg.eigvalsh((scaled + scaled.T) / 2).min() < -PSD_TOLERANCE:
        problems.append(
            f"{where}, field {field}.products: not positive semi-definite (no data give these cross-products; "
            f"tolerance {PSD_TOLERANCE:g} relative to the diagonal)"
        )
    return problems


def design_problems(design: dict, field: str, limit: int, where: str) -> list[str]:
    size = len(design["names"])
    problems = matrix_problems(design, field, size, where)
    if design["n"] > limit:
        problems.append(f"{where}, field {field}.n: exceeds the outcome's count of follow-up scores")
    centres = design.get("centres", {})
    for label, block in centres.items():
        if block["names"] != design["names"]:
            problems.append(f"{where}, field {field}.centres.{label}.names: not the design's columns")
            continue
        problems += matrix_problems(block, f"{field}.centres.{label}", size, where)
    if len(centres) == 1:
        problems.append(f"{where}, field {field}.centres: one centre block (a site sends two or more, or none)")
    # the blocks partition the design's participants (releases.centre_blocks): any other n would
    # mean participants outside every block, or in two
    if centres and sum(block["n"] for block in centres.values()) != design["n"]:
        problems.append(f"{where}, field {field}.centres: the centres' n do not add up to the design's n")
    return problems


def count_problems(bundle: dict, where: str) -> list[str]:
    """Counts that must agree with each other: arms with the study's n, every outcome's counts with it."""
    statistics, table1, problems = bundle["statistics"], bundle["table1"], []
    n = statistics["n"]
    if table1["IPS"]["n"] + table1["SAU"]["n"] != n:
        problems.append(f"{where}, field statistics.n: is not the sum of table1's arms")
    for outcome, content in statistics["outcomes"].items():
        field = f"statistics.outcomes.{outcome}"
        if content["n_followup"] > n:
            problems.append(f"{where}, field {field}.n_followup: exceeds the study's n")
        for arm in ("IPS", "SAU"):
            if content.get("arms") and content["arms"][arm]["n"] > table1[arm]["n"]:
                problems.append(f"{where}, field {field}.arms.{arm}.n: exceeds the arm's n in table1")
        for key, design in content["designs"].items():
            problems += design_problems(design, f"{field}.designs.{key}", content["n_followup"], where)
    for outcome, entries in bundle.get("imputations", {}).get("outcomes", {}).items():
        for number, entry in enumerate(entries):
            for key, design in entry["outcomes"].get(outcome, {}).get("designs", {}).items():
                field = f"imputations.outcomes.{outcome}[{number}].designs.{key}"
                problems += design_problems(design, field, entry["n"], where)
    return problems


def manifest_problems(
    bundle: dict, where: str, study: str, schema_file: Path, analysis: dict, version: str
) -> list[str]:
    """Tampered content, or a study, schema, analysis configuration or package version other than the coordinator's."""
    m, problems = bundle["manifest"], []
    optional = ("imputations",) if "imputations" in bundle else ()
    content = {k: bundle[k] for k in ("statistics", "table1", "flow", "status", *optional)}
    if m["content_sha256"] != sha256_json(content):
        problems.append(
            f"{where}, field manifest.content_sha256: does not match the content (changed after it was written)"
        )
    if m["study"] != study or bundle["statistics"]["study"] != study:
        problems.append(f"{where}, field manifest.study: holds study {m['study']!r}, configured as {study!r}")
    if m["schema_sha256"] != sha256_file(schema_file):
        problems.append(f"{where}, field manifest.schema_sha256: harmonized with another schema than {schema_file}")
    if m["analysis_sha256"] != sha256_json(analysis):
        problems.append(
            f"{where}, field manifest.analysis_sha256: computed for another analysis configuration "
            "(the `analysis` section differs)"
        )
    if m["ipdpool_version"] != version:
        problems.append(
            f"{where}, field manifest.ipdpool_version: written by ipdpool {m['ipdpool_version']}, this is {version}; "
            "mixed versions are refused"
        )
    return problems


def check_bundle(
    bundle, path: Path, study: str, schema_file: Path, analysis: dict, version: str, bundle_schema: Path = BUNDLE_SCHEMA
) -> list[str]:
    """Every reason this bundle is unusable here, one sentence each naming study, file and field."""
    where = f"study {study}: bundle {path}"
    fmt = (
        bundle.get("manifest", {}).get("format")
        if isinstance(bundle, dict) and isinstance(bundle.get("manifest"), dict)
        else None
    )
    if fmt != BUNDLE_FORMAT:
        return [f"{where}, field manifest.format: not an ipdpool bundle of format {BUNDLE_FORMAT!r} (found {fmt!r})"]
    problems = schema_problems(bundle, where, bundle_schema)
    huge = non_finite_field(bundle)
    if huge:
        # checked here too, not only in strict_json: a bundle may come as an object, and every
        # later check multiplies entries (R3: 1e300 overflowed to a vacuous symmetry check)
        problems.append(
            f"{where}, field {huge}: a number not finite or larger in magnitude than {MAX_MAGNITUDE:g}, "
            "which no real count or cross-product reaches"
        )
    if problems:
        return problems
    problems = manifest_problems(bundle, where, study, schema_file, analysis, version) + names_problems(
        bundle, where, analysis, schema_file
    )
    return problems + count_problems(bundle, where)


def configured_names(outcome: str, terms: tuple[str, ...], levels) -> list[str]:
    """The column names, in order, that study_statistics writes for this design (taken from
    models.statistics.design on no rows, so the two cannot drift apart)."""
    import pandas as pd

    from .models.statistics import RESPONSE, design

    columns = ["study", "arm", "employed", "age", "sex", "diagnosis", f"{outcome}_bl_z"]
    return design(pd.DataFrame({c: [] for c in columns}), outcome, terms, levels)[1] + [RESPONSE]


def names_problems(bundle: dict, where: str, analysis: dict, schema_file: Path) -> list[str]:
    """Designs whose column names or their order differ from the configured design's: the centre
    adds studies' matrices by position, so a renamed or permuted column would be pooled with another."""
    from .harmonize.schema import load_schema
    from .releases import design_keys

    levels = load_schema(Path(schema_file))["variables"]["diagnosis"]["allowed"]
    expected = {(o, key): configured_names(o, terms, levels) for o, key, terms in design_keys(analysis)}
    found = [
        (f"statistics.outcomes.{o}.designs.{key}", o, key, d)
        for o, content in bundle["statistics"]["outcomes"].items()
        for key, d in content["designs"].items()
    ] + [
        (f"imputations.outcomes.{o}[{number}].designs.{key}", o, key, d)
        for o, entries in bundle.get("imputations", {}).get("outcomes", {}).items()
        for number, entry in enumerate(entries)
        for key, d in entry["outcomes"].get(o, {}).get("designs", {}).items()
    ]
    problems = []
    for field, outcome, key, d in found:
        if (outcome, key) not in expected:
            problems.append(f"{where}, field {field}: not a design of the analysis configuration")
        elif d["names"] != expected[(outcome, key)]:
            problems.append(
                f"{where}, field {field}.names: the column names or their order differ from the configured "
                "design's (the centre adds studies' matrices column by column)"
            )
    return problems


def refused_designs(bundle: dict, path: Path, study: str, analysis: dict) -> dict[str, dict[str, str]]:
    """outcome -> {model/design: why the study takes no part in it}, for every configured design the
    bundle does not hold: withheld by the site (its reason) or missing. Never silent: the reasons
    go to the import log and to the warnings of the affected result rows."""
    from .releases import design_keys

    out: dict[str, dict[str, str]] = {}
    outcomes = bundle["statistics"]["outcomes"]
    for outcome, key, _ in design_keys(analysis):
        content = outcomes.get(outcome, {})
        if key in content.get("designs", {}):
            continue
        reason = content.get("withheld", {}).get(key, "missing from the bundle")
        out.setdefault(outcome, {})[key] = (
            f"study {study} refused for model {key} of outcome {outcome} (bundle {path}): {reason}"
        )
    return out


# gpg exits 0 and prints VALIDSIG also for a signature by a revoked or expired key, so its
# machine-readable status lines are read instead (GnuPG's doc/DETAILS).
GPG_REFUSING_STATUS = {
    "REVKEYSIG": "the signing key is revoked",
    "KEYREVOKED": "the signing key is revoked",
    "EXPKEYSIG": "the signing key has expired",
    "KEYEXPIRED": "the signing key has expired",
    "EXPSIG": "the signature has expired",
    "BADSIG": "the bundle was changed after signing",
    "ERRSIG": "the signature cannot be checked (key missing from the keyring or unusable)",
}


def gpg_status_problem(status: str, returncode: int, fingerprint: str) -> str | None:
    """Why gpg's --status-fd output does not show a good, valid signature by `fingerprint`
    (the signing key's or its primary key's, fields 1 and 10 of VALIDSIG), or None."""
    lines = [line.split()[1:] for line in status.splitlines() if line.startswith("[GNUPG:] ")]
    for fields in lines:
        if fields and fields[0] in GPG_REFUSING_STATUS:
            return f"{GPG_REFUSING_STATUS[fields[0]]} ({fields[0]})"
    if returncode != 0 or not any(fields and fields[0] == "GOODSIG" for fields in lines):
        return "no good signature (GOODSIG)"
    valid = [fields for fields in lines if fields and fields[0] == "VALIDSIG"]
    if not any(fingerprint in (fields[1], fields[10] if len(fields) > 10 else "") for fields in valid):
        return "made by another key"
    return None


def verify_signature(path: Path, study: str, settings: dict) -> str:
    """How the bundle's authenticity was established, or BundleError. A detached signature
    `<bundle>.sig` is verified with `ssh-keygen -Y verify` against `allowed_signers` (principal: the
    study id) or with GnuPG against `gpg_keyring` (the signing key's fingerprint must be the one
    configured for the study); without either, the bundle is refused unless the configuration
    acknowledges unsigned bundles with a reason."""
    path, signature = Path(path), Path(f"{path}.sig")
    where = f"study {study}: bundle {path}"
    signers = settings.get("signatures", {})
    if not signers:
        if settings.get("unsigned") == "acknowledged":
            return f"UNSIGNED, accepted because federated.unsigned is acknowledged: {settings['unsigned_reason']}"
        raise BundleError(
            f"{where}: no signature check is configured (federated.signatures); unsigned bundles are refused "
            "unless federated.unsigned is 'acknowledged' with federated.unsigned_reason"
        )
    if not signature.is_file():
        raise BundleError(
            f"{where}: has no detached signature {signature.name} beside it; unsigned bundles are refused"
        )
    if "allowed_signers" in signers:
        done = subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", str(signers["allowed_signers"]), "-I", study,
             "-n", SIGNATURE_NAMESPACE, "-s", str(signature)],
            stdin=path.open("rb"), capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BundleError(
                f"{where}: signature {signature.name} is not a valid signature by {study} in "
                f"{signers['allowed_signers']} (ssh-keygen -Y verify: {done.stderr.strip() or done.stdout.strip()})"
            )
        return f"signed by {study}, verified with ssh-keygen -Y against {signers['allowed_signers']}"
    expected = signers.get("gpg_fingerprints", {}).get(study)
    if not expected:
        raise BundleError(
            f"{where}: no GnuPG fingerprint configured for {study} in federated.signatures.gpg_fingerprints"
        )
    done = subprocess.run(
        ["gpg", "--batch", "--no-default-keyring", "--keyring", str(Path(signers["gpg_keyring"]).resolve()),
         "--status-fd", "1", "--verify", str(signature), str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    problem = gpg_status_problem(done.stdout, done.returncode, expected.replace(" ", "").upper())
    if problem:
        raise BundleError(
            f"{where}: signature {signature.name} is not a valid GnuPG signature by {study}'s key {expected} "
            f"in {signers['gpg_keyring']}: {problem}"
        )
    return f"signed by {study}, verified with GnuPG against {signers['gpg_keyring']} (key {expected})"


def read_bundle(
    path: Path, study: str, schema_file: Path, analysis: dict, version: str, bundle_schema: Path = BUNDLE_SCHEMA
) -> dict:
    where = f"study {study}: bundle {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, ValueError) as error:
        raise BundleError(f"{where} cannot be read: {error}") from error
    bundle = strict_json(text, where)
    problems = check_bundle(bundle, path, study, schema_file, analysis, version, bundle_schema)
    if problems:
        raise BundleError(f"study {study}: bundle refused:\n" + "\n".join(problems))
    return bundle


def sign_bundle(path: Path, key_file: Path) -> Path:
    """`<bundle>.sig`: an OpenSSH detached signature (namespace ipdpool-bundle) with the site's key."""
    signature = Path(f"{path}.sig")
    signature.unlink(missing_ok=True)  # ssh-keygen will not overwrite one
    done = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-f", str(key_file), "-n", SIGNATURE_NAMESPACE, str(path)],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0:
        raise BundleError(f"bundle {path}: signing with {key_file} failed: {done.stderr.strip()}")
    return signature


def bundle_rows(statistics: dict[str, dict]) -> list[dict]:
    """One row per imported bundle for the report: file, authenticity, release line, designs refused."""
    rows = []
    for study, content in sorted(statistics.items()):
        about = content.get("bundle", {})
        refused = [m for o in content["outcomes"].values() for m in o.get("refused", {}).values()]
        harmonized = sum(len(o.get("harmonized", {})) for o in content["outcomes"].values())
        rows.append(
            {
                "study": study, "file": about.get("file", ""), "authenticity": about.get("authenticity", ""),
                "release_line": about.get("release_line", ""), "release_sequence": about.get("release_sequence", ""),
                "released": about.get("released", ""), "designs_harmonized": harmonized,
                "designs_refused": len(refused), "refusals": "; ".join(refused),
            }
        )  # fmt: skip
    return rows


def refusal_notes(statistics: dict[str, dict], outcome: str) -> dict[str, list[str]]:
    """model/design -> messages of the studies refused for it (for the warnings of its result rows)."""
    notes: dict[str, list[str]] = {}
    for content in statistics.values():
        for key, message in content["outcomes"].get(outcome, {}).get("refused", {}).items():
            notes.setdefault(key, []).append(message)
    return notes


def annotate_refusals(table, notes: dict[str, list[str]]):
    """The table with each row's warnings extended by the refusals of its model and design (the
    `model` column names the variant: unadjusted, covariates and within_between use their own
    design, every other variant and the two-stage tables the primary one)."""
    if not notes or not len(table):
        return table
    out = table.copy()
    variants = out["model"] if "model" in out else ["primary"] * len(out)
    designs = [v if v in ("unadjusted", "covariates", "within_between") else "primary" for v in variants]
    extra = ["; ".join(notes.get(f"{c}/{d}", [])) for c, d in zip(out["contrast"], designs)]
    warnings = out["warnings"].fillna("").astype(str)
    out["warnings"] = ["; ".join(part for part in (w, e) if part) for w, e in zip(warnings, extra)]
    return out
