"""Harmonize one study: apply its rules, check everything, and account for every participant."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..rawio import RawTable, sha256_of
from .problems import HarmonizationError, Problems, identifier_values
from .pseudonym import pseudonyms
from .rules import RuleResult, apply_score_rule, apply_value_rule
from .schema import conform, pandera_schema, schema_failures
from .tables import StudyData

# Variables filled from the rule file's own structure rather than a value rule.
IDENTITY = ("study", "participant_id")
ARMS = ("IPS", "SAU")
# A free-text field copied without an `allowed` list may hold at most one distinct value per this
# many participants: sites and arm labels repeat, names and ids do not.
PARTICIPANTS_PER_TEXT_VALUE = 10


@dataclass
class HarmonizedStudy:
    study: str
    data: pd.DataFrame  # schema columns only, one row per randomized participant
    rule_log: pd.DataFrame
    flow: pd.DataFrame
    arm_counts: pd.DataFrame
    provenance: dict
    before: dict[str, pd.Series]  # raw values per variable (after missing codes), for before/after plots
    warnings: list[str]  # worth a look but not wrong (e.g. text that looks like the wrong encoding)
    raw_tables: dict[str, RawTable]  # every declared table as read, for the inventory (files are read once)


def _log_row(variable: str, result: RuleResult, out: pd.Series) -> dict:
    return {
        "variable": variable,
        "rule": result.rule,
        "status": result.status,
        "source": result.source,
        "rows_in": result.rows_in,
        "nonmissing_in": result.nonmissing_in,
        "nonmissing_out": int(out.notna().sum()),
        "values_recoded": result.recoded,
        "set_missing": "; ".join(f"{reason}: {n}" for reason, n in result.set_missing.items()),
        "notes": "; ".join(result.notes),
    }


def _z(values: pd.Series, baseline: pd.Series) -> pd.Series:
    """Standardize by the study's baseline mean and SD (both arms together)."""
    return (values - baseline.mean()) / baseline.std(ddof=1)


def harmonize_study(
    rules: dict, schema: dict, key: bytes, base_dir: Path = Path("."), rules_path: Path | None = None
) -> HarmonizedStudy:
    study = rules["study"]
    problems = Problems(study)
    data = StudyData(rules, problems, base_dir, secret=key)
    acknowledged = Acknowledged(rules.get("acknowledged", {}), problems)
    if len(data.participants) == 0 and not problems:
        problems.add(
            rules["tables"][rules["participants"]["table"]]["file"],
            "participants",
            "the participants table has no rows",
        )
    out: dict[str, pd.Series] = {"study": pd.Series(study, index=data.participants, dtype=object)}
    log_rows, before = [], {}

    for variable, spec in schema["variables"].items():
        if variable in IDENTITY:
            continue
        result = apply_value_rule(data, variable, rules["variables"][variable], spec["type"])
        if result is None:  # a problem was recorded
            out[variable] = pd.Series(np.nan, index=data.participants, dtype=object)
            continue
        if result.status == "undetermined" and not spec.get("nullable"):
            single_site = " (a single-site trial: `site: {constant: <site name>}`)" if variable == "site" else ""
            problems.add(
                "(rule file)",
                variable,
                f"is undetermined ({result.notes[0]}), but {variable} may not be missing: "
                f"decide which column holds it and write its rule{single_site}",
            )
        out[variable] = result.values
        if result.before is not None:
            before[variable] = result.before
        log_rows.append(_log_row(variable, result, result.values))

    sites = out.get("site", pd.Series(dtype=object))
    if sites.isna().any() and "undetermined" not in rules["variables"]["site"]:
        problems.add(
            rules["tables"][rules["participants"]["table"]]["file"],
            "site",
            "participants without a site; the pseudonym needs it",
            values=(f"{int(sites.isna().sum())} participants",),
        )
    out["participant_id"] = pd.Series(
        pseudonyms(key, study, sites.astype(str), data.trial_ids.reindex(data.participants)),
        index=data.participants,
        dtype=object,
    )
    log_rows.insert(
        0,
        {
            "variable": "participant_id",
            "rule": "pseudonym (HMAC-SHA256 of study, site, trial id)",
            "status": "harmonized",
            "source": rules["participants"]["table"],
            "rows_in": len(data.participants),
            "nonmissing_in": len(data.participants),
            "nonmissing_out": len(data.participants),
            "values_recoded": 0,
            "set_missing": "",
            "notes": data.id_audit(),
        },
    )

    outcome_ranges = {}
    for outcome in schema["outcomes"]:
        rule = rules["outcomes"][outcome]
        if "not_collected" in rule or "undetermined" in rule:
            status = "not_collected" if "not_collected" in rule else "undetermined"
            for when in ("bl", "fu"):
                log_rows.append(
                    {
                        "variable": f"{outcome}_{when}",
                        "rule": status,
                        "status": status,
                        "source": "",
                        "rows_in": 0,
                        "nonmissing_in": 0,
                        "nonmissing_out": 0,
                        "values_recoded": 0,
                        "set_missing": "",
                        "notes": rule.get("undetermined", ""),
                    }
                )
            continue
        low, high = rule["range"]
        if low >= high:
            problems.add("(rule file)", outcome, f"range [{low}, {high}] must run from low to high")
        outcome_ranges[outcome] = (low, high)
        scores = {}
        for when, part in (("bl", "baseline"), ("fu", "followup")):
            variable = f"{outcome}_{when}"
            result = apply_score_rule(data, variable, rule[part])
            if result is None:
                scores[when] = pd.Series(np.nan, index=data.participants)
                continue
            values = result.values.astype(float)
            outside = values.notna() & ((values < low) | (values > high))
            if outside.any():
                problems.add(
                    result.source.split(":")[0],
                    variable,
                    f"scores outside the {rule['instrument']} range [{low}, {high}]",
                    values=tuple(sorted(values[outside].unique())),
                    column=result.source.split(": ", 1)[-1],
                    cells=values,
                )
            before[variable] = result.before if result.before is not None else values
            if rule["direction"] == "reversed":
                values = low + high - values
                result.notes.append(f"reversed: {low} + {high} - x")
            scores[when] = values
            log_rows.append(_log_row(variable, result, values))
        out[f"{outcome}_bl"], out[f"{outcome}_fu"] = scores["bl"], scores["fu"]
        out[f"{outcome}_instrument"] = pd.Series(rule["instrument"], index=data.participants, dtype=object)
        out[f"{outcome}_bl_z"] = _z(scores["bl"], scores["bl"])
        out[f"{outcome}_fu_z"] = _z(scores["fu"], scores["bl"])

    participants_file = rules["tables"][rules["participants"]["table"]]["file"]
    for name, file in data.empty.items() if not data.unreadable else ():  # else only consequences of the file
        acknowledged.check(f"empty {name}", file, name, "has no rows" if name.startswith("table") else "keeps no rows")
    guard_free_text(problems, rules, schema, out, len(data.participants))
    if problems:  # the checks below would only restate consequences of these
        raise HarmonizationError(problems.items)
    arms = set(out.get("arm", pd.Series(dtype=object)).dropna())
    if len(data.participants) and len(arms) == 1:
        problems.add(
            participants_file,
            "arm",
            f"every participant is in one arm ({arms.pop()}); a randomized comparison needs both IPS and SAU",
        )
    employed = pd.to_numeric(out.get("employed", pd.Series(dtype=float)), errors="coerce")
    if employed.notna().any() and (employed.dropna() == 0).all():
        problems.add(
            participants_file,
            "employed",
            f"nobody was employed during follow-up ({int(employed.notna().sum())} with known employment): "
            "check the employment rule",
        )
    for outcome in outcome_ranges:
        if out[f"{outcome}_bl"].isna().all() and out[f"{outcome}_fu"].isna().all():
            problems.add(
                participants_file,
                outcome,
                "declared collected but no participant has a baseline or follow-up score; "
                "mark it not_collected or fix the rule",
            )
        else:
            check_followup(acknowledged, participants_file, outcome, out["arm"], out[f"{outcome}_fu"])
    counts = arm_counts(study, pd.DataFrame(out), rules.get("published_n", {}))
    for row in counts[counts["differs"]].itertuples():
        total = row.arm_original == TOTAL
        acknowledged.check(
            "published_n total" if total else f"published_n {row.arm_original}",
            participants_file,
            "arm_original",
            f"{'the study' if total else f'arm {row.arm_original!r}'} has {row.n} randomized participants, "
            f"published_n says {row.published_n}",
        )
    acknowledged.check_all_used()
    if problems:
        raise HarmonizationError(problems.items)
    frame = conform(pd.DataFrame(out).reset_index(drop=True), schema)
    failures = schema_failures(frame, pandera_schema(schema, outcome_ranges))
    if failures:
        for failure in failures:
            problems.add("(harmonized data)", failure.split(":")[0].removeprefix("column "), failure)
        raise HarmonizationError(problems.items)

    rule_log = pd.DataFrame(log_rows)
    rule_log.insert(0, "study", study)
    return HarmonizedStudy(
        study=study,
        data=frame,
        rule_log=rule_log,
        flow=participant_flow(
            study, data, frame, schema, raw_arm_counts(rules, data, pd.Series(out["arm"])), acknowledged.used
        ),
        arm_counts=counts,
        provenance=provenance(rules, data, base_dir, rules_path),
        before=before,
        warnings=data.warnings,
        raw_tables={name: table.raw for name, table in data.tables.items()},
    )


class Acknowledged:
    """Conditions that would empty data silently are errors unless the rule file's `acknowledged`
    states a reason for them; each reason used is shown in the flow table (and the report)."""

    def __init__(self, reasons: dict[str, str], problems: Problems):
        self.reasons, self.problems, self.used = reasons, problems, {}

    def check(self, key: str, file: str, variable: str, message: str) -> None:
        if key in self.reasons:
            self.used[key] = self.reasons[key]
            return
        self.problems.add(
            file,
            variable,
            f'{message}; if this is right, say why in the rule file: `acknowledged: {{"{key}": <reason>}}`',
        )

    def check_all_used(self) -> None:
        for key in self.reasons:
            if key not in self.used:
                self.problems.add(
                    "(rule file)", "acknowledged", f"`{key}` is acknowledged but does not happen; remove it"
                )


def check_followup(acknowledged: Acknowledged, file: str, outcome: str, arms: pd.Series, followup: pd.Series) -> None:
    """No follow-up score for an outcome in the whole study, or in one arm, drops it from the analysis."""
    if followup.isna().all():
        acknowledged.check(f"no follow-up {outcome}", file, f"{outcome}_fu", "no participant has a follow-up score")
        return
    for arm in ARMS:
        in_arm = arms.eq(arm).fillna(False).to_numpy(dtype=bool)
        if in_arm.any() and followup[in_arm].isna().all():
            acknowledged.check(
                f"no follow-up {outcome} {arm}",
                file,
                f"{outcome}_fu",
                f"no participant in arm {arm} has a follow-up score",
            )


def guard_free_text(problems: Problems, rules: dict, schema: dict, out: dict[str, pd.Series], n: int) -> None:
    """Free-text fields (string variables without allowed values) copied from raw text: either every value is
    in the rule's `allowed` list, or there are few distinct values and none look like identifiers."""
    for variable, spec in schema["variables"].items():
        rule = rules["variables"].get(variable, {})
        if spec["type"] != "string" or "allowed" in spec or "pattern" in spec or "copy" not in rule:
            continue
        copy, values = rule["copy"], out[variable].dropna()
        file = rules["tables"].get(copy["table"], {}).get("file", copy["table"])
        if "allowed" in copy:
            outside = values[~values.isin([str(a) for a in copy["allowed"]])]
            if len(outside):
                problems.add(
                    file,
                    variable,
                    f"values in {copy['column']!r} that are not in `allowed`",
                    values=tuple(sorted(set(outside))),
                    column=copy["column"],
                    cells=values,
                )
            continue
        cap = max(1, n // PARTICIPANTS_PER_TEXT_VALUE)
        distinct = values.nunique()
        why = identifier_values(values)
        if distinct > cap or why:
            reason = (
                why
                or f"{distinct} distinct values in {n} participants, more than one per {PARTICIPANTS_PER_TEXT_VALUE}"
            )
            problems.add(
                file,
                variable,
                f"free-text field copied from {copy['column']!r} {reason}; "
                "it may hold identifiers: list its values under `allowed` in the copy rule",
            )


def participant_flow(
    study: str, data: StudyData, frame: pd.DataFrame, schema: dict, raw_arms: pd.Series, acknowledged: dict[str, str]
) -> pd.DataFrame:
    """PRISMA-IPD style counts by arm: every randomized participant is either
    analysable for an outcome or excluded from it with one reason; then the
    acknowledged conditions with their reasons."""
    rows = []

    def add(stage: str, reason: str, mask: pd.Series | None = None, total: int | None = None):
        if mask is None:
            rows.append({"study": study, "stage": stage, "reason": reason, "IPS": pd.NA, "SAU": pd.NA, "total": total})
            return
        rows.append(
            {
                "study": study,
                "stage": stage,
                "reason": reason,
                "IPS": int((mask & (frame["arm"] == "IPS")).sum()),
                "SAU": int((mask & (frame["arm"] == "SAU")).sum()),
                "total": int(mask.sum()),
            }
        )

    for table in data.tables.values():
        add("raw rows", table.file, total=len(table.frame))
    everyone = pd.Series(True, index=frame.index)
    rows.append(
        {
            "study": study,
            "stage": "raw participants",
            "reason": "rows of the participants table, arm read from the raw cells",
            "IPS": int((raw_arms == "IPS").sum()),
            "SAU": int((raw_arms == "SAU").sum()),
            "total": len(raw_arms),
        }
    )
    add("randomized participants", "unique participant ids in the participants table", everyone)
    add("with a follow-up assessment", "", frame["followup_months"].notna())
    add("without a follow-up assessment", "no follow-up assessment in the window", frame["followup_months"].isna())
    # Employment ascertainment of everyone randomized (a branch of its own in the diagram) ...
    add("employment known", "", frame["employed"].notna())
    add("employment unknown", "records cannot tell", frame["employed"].isna())
    # ... and of those followed up, the next box of the chain.
    followed = frame["followup_months"].notna()
    add("followed up, employment known", "", followed & frame["employed"].notna())
    add("followed up, employment unknown", "records cannot tell", followed & frame["employed"].isna())
    for outcome in schema["outcomes"]:
        add_outcome_flow(add, outcome, frame, followed)
    for key, reason in acknowledged.items():
        add("acknowledged", f"{key}: {reason}")
    return pd.DataFrame(rows, columns=["study", "stage", "reason", "IPS", "SAU", "total"]).astype(
        {"IPS": "Int64", "SAU": "Int64", "total": "Int64"}
    )


# Why a participant is left out of an outcome's analysis, in the order the diagram's boxes
# apply them: each participant is counted once, under the first reason that applies.
OUTCOME_EXCLUSIONS = ("no follow-up assessment", "employment unknown", "no baseline score", "no follow-up score")


def add_outcome_flow(add, outcome: str, frame: pd.DataFrame, followed: pd.Series) -> None:
    """One outcome's rows of the flow: analysable, or excluded with the first reason that applies
    (or not collected, for those who reached the outcome's stage in a study that did not measure it)."""
    missing = {
        "no follow-up assessment": ~followed,
        "employment unknown": frame["employed"].isna(),
        "no baseline score": frame[f"{outcome}_bl"].isna(),
        "no follow-up score": frame[f"{outcome}_fu"].isna(),
    }
    if frame[f"{outcome}_instrument"].isna().all():
        missing = {reason: missing[reason] for reason in OUTCOME_EXCLUSIONS[:2]}
    remaining = pd.Series(True, index=frame.index)
    excluded = {}
    for reason, mask in missing.items():
        excluded[reason] = remaining & mask
        remaining = remaining & ~mask
    if len(missing) == 2:
        add(f"{outcome}: not collected", "outcome not measured in this study", remaining)
    else:
        add(f"{outcome}: analysable", "baseline, follow-up and employment known", remaining)
    for reason, mask in excluded.items():
        add(f"{outcome}: excluded", reason, mask)


def raw_arm_counts(rules: dict, data: StudyData, arms: pd.Series) -> pd.Series:
    """Arm of every raw row of the participants table: the harmonized arm of the row's participant, whatever
    rule gave it (recode, copy of a relabelled column, labels, ...), so that the pooling step reconciles
    raw rows with pooled participants per arm. A row without a participant (id missing or invalid) has none."""
    table = data.tables[rules["participants"]["table"]]
    return pd.Series(table.keys.map(arms).to_numpy(), dtype=object)


TOTAL = "(all arms)"  # arm_counts' row for a published total


def arm_counts(study: str, frame: pd.DataFrame, published: dict[str, int] | int) -> pd.DataFrame:
    """Randomized participants per arm label, beside `published_n`: counts per arm label (a mapping) or
    the total randomized (an integer), as protocols and papers give either."""
    observed = frame.groupby(["arm_original", "arm"], dropna=False).size()
    per_arm = published if isinstance(published, dict) else {}
    rows = []
    for (original, arm), n in observed.items():
        expected = per_arm.get(original)
        rows.append(
            {
                "study": study,
                "arm_original": original,
                "arm": arm,
                "n": int(n),
                "published_n": expected,
                "differs": expected is not None and expected != n,
            }
        )
    for original, expected in per_arm.items():
        if original not in set(frame["arm_original"].dropna()):
            rows.append(
                {
                    "study": study,
                    "arm_original": original,
                    "arm": pd.NA,
                    "n": 0,
                    "published_n": expected,
                    "differs": True,
                }
            )
    if not isinstance(published, dict):
        rows.append(
            {
                "study": study,
                "arm_original": TOTAL,
                "arm": pd.NA,
                "n": len(frame),
                "published_n": published,
                "differs": published != len(frame),
            }
        )
    return pd.DataFrame(rows).astype({"published_n": "Int64"})


def provenance(rules: dict, data: StudyData, base_dir: Path, rules_path: Path | None) -> dict:
    files = sorted({t.spec["file"] for t in data.tables.values()})
    rules_hash = (
        sha256_of(rules_path)
        if rules_path
        else hashlib.sha256(json.dumps(rules, sort_keys=True, default=str).encode()).hexdigest()
    )
    return {
        "study": rules["study"],
        "raw_files_sha256": {f: sha256_of(data.raw_dir / f) for f in files},
        "rule_file_sha256": rules_hash,
        "ipdpool_version": __version__,
    }
