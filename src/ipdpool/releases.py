"""What a site releases, and whether releasing it gives a participant away by differencing.

Two statistics computed over participant sets A and B can be subtracted: their difference is
the statistic of the participants in A but not B, minus that of those in B but not A. When
either group holds 1 to nfilter_subset - 1 participants, that is a handful of people's values
(one person's whole record when it is one). Two places where this happens are controlled here:

- inside one bundle, the designs of a model use nested complete-case sets (unadjusted,
  baseline-adjusted, covariate-adjusted) and the outcomes' sets overlap: `resolve_nested`
  either harmonizes such designs to their common complete-case set or withholds the smaller;
- across releases, a site that re-exports after a withdrawal or a correction sends the same
  statistic over a set one participant smaller: the release ledger (`check_ledger`) keeps,
  at the site, a keyed tag of every participant of every released statistic, and refuses a
  new release whose sets differ from ANY set released earlier in the line (whatever the
  statistic's name: renamed models and sub-block designs carry the same sums) by 1 to
  nfilter_subset - 1.

The ledger never holds a pseudonym: each participant is an HMAC tag under the site's
pseudonym key, so the ledger reveals nothing without the key, and refusals name the
statistic and the size of the difference, never who.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .models.statistics import (
    DESIGNS,
    ModelSpec,
    arm_summaries,
    complete_cases,
    design_statistics,
    design_terms,
    required_columns,
    study_statistics,
)

NESTED_CHOICES = ("harmonize", "withhold")
LEDGER_FORMAT = "ipdpool-ledger/1"
TAG_HEX = 16  # 64-bit tags: collisions among a trial's participants are negligible (~n^2 / 2^65)


class ReleaseRefused(Exception):
    """A release the ledger refuses; the message names statistics and sizes, never participants."""


# ------------------------------------------------------------------ participant sets

# The values a statistic sums, by the harmonized columns they come from: two statistics can be
# subtracted to isolate participants only on a value both sum. Arm is not one: a statistic by arm
# sums over its arm's participants (its set), and a design's IPS column counts them.
VALUE_OF_COLUMN = {"employed": "employed", "age": "age", "sex": "sex", "diagnosis": "diagnosis"}


def value_of(column: str, outcome: str) -> str | None:
    if column == f"{outcome}_fu_z" or column == f"{outcome}_fu":
        return f"{outcome}:followup"
    if column == f"{outcome}_bl_z" or column == f"{outcome}_bl":
        return f"{outcome}:baseline"
    return VALUE_OF_COLUMN.get(column)


def design_values(outcome: str, terms: tuple[str, ...]) -> frozenset[str]:
    return frozenset(v for c in required_columns(outcome, terms) if (v := value_of(c, outcome)))


def design_keys(analysis: dict) -> list[tuple[str, str, tuple[str, ...]]]:
    """(outcome, 'model/design', terms) of every design the analysis configuration asks for."""
    covariates = tuple(analysis.get("sensitivity", {}).get("covariates", []))
    out = []
    for outcome in analysis["outcomes"]:
        for name, spec in analysis["models"].items():
            model = ModelSpec.from_config(name, spec)
            for kind in DESIGNS:
                terms = design_terms(model, kind, covariates)
                if terms is not None:
                    out.append((outcome, f"{name}/{kind}", terms))
    return out


def design_participants(part: pd.DataFrame, analysis: dict) -> dict[str, frozenset[str]]:
    """'outcome:model/design' -> pseudonymous ids of its complete cases (the rows study_statistics uses)."""
    ids = part["participant_id"].to_numpy()
    present = part.notna()
    return {
        f"{outcome}:{key}": frozenset(ids[present[required_columns(outcome, terms)].all(axis=1).to_numpy()])
        for outcome, key, terms in design_keys(analysis)
    }


def summary_participants(part: pd.DataFrame, outcomes) -> dict[str, frozenset[str]]:
    """Participant sets of the other released numbers: Table 1 by arm (its n; age; sex, diagnosis
    and employment, whose counts by arm are also the causal first stage's 2x2 tables; each baseline
    score), follow-up scores by arm and each outcome's count of follow-up scores."""
    ids = part["participant_id"]
    out = {}
    for arm in ("IPS", "SAU"):
        in_arm = part["arm"] == arm
        out[f"table1/{arm}"] = frozenset(ids[in_arm])
        for column in ("age", *CATEGORICAL_SUMMARIES):
            out[f"table1/{arm}/{column}"] = frozenset(ids[in_arm & part[column].notna()])
        for outcome in outcomes:
            if f"{outcome}_bl" in part:
                out[f"table1/{arm}/{outcome}_baseline"] = frozenset(ids[in_arm & part[f"{outcome}_bl"].notna()])
            if f"{outcome}_fu" in part:
                out[f"{outcome}:arms/{arm}"] = frozenset(ids[in_arm & part[f"{outcome}_fu"].notna()])
    for outcome in outcomes:
        out[f"{outcome}:n_followup"] = frozenset(ids[part[f"{outcome}_fu_z"].notna()])
    return out


CATEGORICAL_SUMMARIES = ("sex", "diagnosis", "employed")
IMPUTED = "imputations/"


def summary_values(name: str) -> frozenset[str]:
    """The values a Table 1, arm or count statistic sums (none for a count: set sizes only)."""
    if name.startswith("table1/"):
        parts = name.split("/")
        if len(parts) == 2:
            return frozenset()
        column = parts[2]
        if column.endswith("_baseline"):
            return frozenset({f"{column[: -len('_baseline')]}:baseline"})
        return frozenset({column})
    outcome, rest = name.split(":", 1)
    return frozenset({f"{outcome}:followup"}) if rest.startswith("arms/") else frozenset()


def imputation_participants(completed: dict[str, pd.DataFrame], analysis: dict) -> dict[str, frozenset[str]]:
    """'imputations/outcome:model/primary' -> the complete cases of the completed data (outcome ->
    one completed data set with participant_id): the same in every completed data set, which
    differ only in the imputed values."""
    out = {}
    for outcome, frame in completed.items():
        ids, present = frame["participant_id"].to_numpy(), frame.notna()
        for name, spec in analysis["models"].items():
            terms = design_terms(ModelSpec.from_config(name, spec), "primary")
            rows = present[required_columns(outcome, terms)].all(axis=1).to_numpy()
            out[f"{IMPUTED}{outcome}:{name}/primary"] = frozenset(ids[rows])
    return out


def statistic_values(name: str, analysis: dict) -> frozenset[str]:
    """What the released statistic `name` sums (see released_sets for the names)."""
    key = name[len(IMPUTED) :] if name.startswith(IMPUTED) else name
    outcome, _, design = key.partition(":")
    terms = {f"{o}:{k}": t for o, k, t in design_keys(analysis)}.get(key)
    if terms is not None:
        return design_values(outcome, terms)
    return summary_values(name)


# ------------------------------------------------------------------ one bundle


def small_differences(
    sets: dict[str, frozenset], threshold: int, values: dict[str, frozenset] | None = None
) -> list[tuple[str, str, int, int]]:
    """(a, b, |a - b|, |b - a|) of every pair where either difference holds 1 to threshold - 1
    participants and, when `values` (name -> what it sums) is given, the two sum a value in common."""
    out = []
    for a, b in itertools.combinations(sorted(sets), 2):
        if values is not None and not values[a] & values[b]:
            continue
        only_a, only_b = len(sets[a] - sets[b]), len(sets[b] - sets[a])
        if 0 < only_a < threshold or 0 < only_b < threshold:
            out.append((a, b, only_a, only_b))
    return out


def resolve_nested(
    sets: dict[str, frozenset], threshold: int, choice: str, values: dict[str, frozenset] | None = None
) -> tuple[dict[str, frozenset], dict[str, str]]:
    """Sets after the rule, and key -> reason for each statistic changed or withheld.

    Two statistics are a pair when they sum a value in common (`values`: name -> values; None:
    every two are). harmonize: where a pair's sets differ on one side by 1 to threshold - 1
    participants, that side leaves them out (the statistic is computed over the intersection),
    repeated until no pair does (sets only shrink, so it ends); an empty set is withheld.
    withhold: the statistic with the smaller set of such a pair is not released, repeated likewise.
    Statistics with the same participants and values are compared once."""
    if choice not in NESTED_CHOICES:
        raise ValueError(f"federated.disclosure.nested must be one of {NESTED_CHOICES}, not {choice!r}")
    values = values if values is not None else {key: frozenset({"*"}) for key in sets}
    current, reasons = dict(sets), {}
    while True:
        groups: dict[tuple, list[str]] = {}
        for key in sorted(current):
            groups.setdefault((current[key], values[key]), []).append(key)
        labels = {members[0]: group for group, members in groups.items()}
        pairs = small_differences({k: g[0] for k, g in labels.items()}, threshold, {k: g[1] for k, g in labels.items()})
        if not pairs:
            return current, reasons
        if choice == "withhold":
            a, b, _, _ = pairs[0]
            first, second = labels[a][0], labels[b][0]
            smaller, other = (labels[a], b) if (len(first), b) < (len(second), a) else (labels[b], a)
            for key in groups[smaller]:
                reasons[key] = (
                    f"withheld: its participants differ from those of {other} by "
                    f"{len(smaller[0] - current[other])} and {len(current[other] - smaller[0])} "
                    f"(nfilter_subset {threshold})"
                )
                del current[key]
            continue
        shrink_sides(groups, labels, pairs, current, reasons, threshold)


def shrink_sides(groups, labels, pairs, current, reasons, threshold) -> None:
    """One round of harmonize: every side of a flagged pair holding 1 to threshold - 1 participants
    the other lacks leaves them out (all such pairs of the round at once: the result does not
    depend on the order of the pairs)."""
    narrowed: dict[tuple, tuple[frozenset, list[str]]] = {}
    for a, b, only_a, only_b in pairs:
        for mine, partner, extra, missing in ((a, b, only_a, only_b), (b, a, only_b, only_a)):
            if 0 < extra < threshold:
                group = labels[mine]
                kept, notes = narrowed.get(group, (group[0], []))
                narrowed[group] = (
                    kept & labels[partner][0],
                    [*notes, f"{partner} (the sets differ by {extra} and {missing})"],
                )
    for group, (kept, notes) in narrowed.items():
        for key in groups[group]:
            if kept:
                reasons[key] = (
                    f"harmonized to {len(kept)} participants: {len(group[0]) - len(kept)} left out that "
                    f"{', '.join(notes)} lacked (differences below nfilter_subset {threshold})"
                )
                current[key] = kept
            else:
                reasons[key] = f"withheld: no participants in common with {', '.join(notes)}"
                del current[key]


def one_model(analysis: dict, outcome: str, design: str) -> dict:
    """The analysis configuration narrowed to one outcome and model (to recompute one design)."""
    model = design.split("/", 1)[0]
    return {**analysis, "outcomes": [outcome], "models": {model: analysis["models"][model]}}


@dataclass
class Release:
    """What a site releases after the nested-subset rule: the statistics, Table 1 aggregates and the
    completed data sets' statistics (None without federated MI), the reason for every statistic
    the rule changed or withheld (name -> reason), and every released statistic's participants."""

    statistics: dict
    table1: dict
    imputations: dict | None
    reasons: dict[str, str]
    sets: dict[str, frozenset]


def released_sets(part: pd.DataFrame, analysis: dict, completed: dict | None = None) -> dict[str, frozenset]:
    """Every released statistic's participants, by name: 'outcome:model/design', 'table1/ARM[/...]',
    'outcome:arms/ARM', 'outcome:n_followup' and 'imputations/outcome:model/primary'."""
    sets = {**design_participants(part, analysis), **summary_participants(part, analysis["outcomes"])}
    return {**sets, **imputation_participants(completed or {}, analysis)}


def release(
    part: pd.DataFrame,
    analysis: dict,
    diagnosis_levels,
    threshold: int,
    choice: str,
    imputations: dict | None = None,
) -> Release:
    """The study's release with the nested-subset rule applied to EVERY pair of released
    statistics that sum a value in common (designs, Table 1 and its 2x2 employment tables by arm,
    follow-up scores by arm, and the completed data sets' statistics in `imputations`, as
    site_imputations writes them, for federated MI). A harmonized
    statistic is computed by the same code from the rows of its participants, so it is exactly what
    the pooled-IPD code gives for them; a withheld one is released empty with its reason."""
    from .federated import table1_aggregates

    imputations = copy.deepcopy(imputations)
    mi = imputations["settings"] if imputations is not None else None
    completed = completed_data(part, analysis, mi, 0) if mi is not None else None
    sets = released_sets(part, analysis, completed)
    values = {name: statistic_values(name, analysis) for name in sets}
    final, reasons = resolve_nested(sets, threshold, choice, values)
    statistics = study_statistics(part, analysis, diagnosis_levels)
    table1 = table1_aggregates(part)
    for name, reason in sorted(reasons.items()):
        rows = part[part["participant_id"].isin(final.get(name, ()))]
        if name.startswith(IMPUTED):
            narrow_imputations(imputations, name, final.get(name), part, analysis, mi, reason)
        elif name.startswith("table1/"):
            narrow_table1(table1, name, rows, reason)
        elif ":arms/" in name:
            narrow_arms(statistics, name, rows, reason)
        else:
            narrow_design(statistics, name, rows, analysis, diagnosis_levels, reason, name in final)
    return Release(statistics, table1, imputations, reasons, final)


def narrow_design(statistics, name, rows, analysis, diagnosis_levels, reason, kept: bool) -> None:
    outcome, design = name.split(":", 1)
    content = statistics["outcomes"][outcome]
    if not kept:
        del content["designs"][design]
        content.setdefault("withheld", {})[design] = reason
        return
    narrowed = study_statistics(rows, one_model(analysis, outcome, design), diagnosis_levels)
    content["designs"][design] = narrowed["outcomes"][outcome]["designs"][design]
    content.setdefault("harmonized", {})[design] = reason


def narrow_table1(table1: dict, name: str, rows: pd.DataFrame, reason: str) -> None:
    """A Table 1 statistic recomputed over its participants (withheld: no rows, so n 0 and no
    moments or level counts); the count of missing values stays that of the whole arm."""
    from .federated import table1_aggregates

    _, arm, column = name.split("/")
    entry, fresh = table1[arm], table1_aggregates(rows)[arm] if len(rows) else empty_table1_arm(table1[arm])
    if column.endswith("_baseline"):
        outcome = column[: -len("_baseline")]
        for field in ("baseline_n", "baseline_mean", "baseline_sd"):
            entry["outcomes"][outcome][field] = fresh["outcomes"].get(outcome, {}).get(field)
        entry["outcomes"][outcome]["baseline_n"] = entry["outcomes"][outcome]["baseline_n"] or 0
    elif column == "age":
        entry["age"] = fresh["age"]
    else:
        entry[column] = {
            **{k: v for k, v in fresh[column].items() if k != "missing"},
            "missing": entry[column]["missing"],
        }
    kind = "withheld" if reason.startswith("withheld") else "harmonized"
    entry.setdefault(kind, {})[column] = reason


def empty_table1_arm(entry: dict) -> dict:
    return {
        "age": {"n": 0, "mean": None, "sd": None},
        **{column: {} for column in CATEGORICAL_SUMMARIES},
        "outcomes": {o: {"baseline_n": 0, "baseline_mean": None, "baseline_sd": None} for o in entry["outcomes"]},
    }


def narrow_arms(statistics: dict, name: str, rows: pd.DataFrame, reason: str) -> None:
    outcome, arm = name.split(":arms/")
    arms = statistics["outcomes"][outcome]["arms"]
    arms[arm] = arm_summaries(rows, outcome)[arm] if len(rows) else {"n": 0, "mean": None, "sd": None}
    kind = "withheld" if reason.startswith("withheld") else "harmonized"
    arms.setdefault(kind, {})[arm] = reason


def completed_data(part: pd.DataFrame, analysis: dict, mi: dict, imputation: int) -> dict[str, pd.DataFrame]:
    """outcome -> completed data set number `imputation` of the study, with participant_id."""
    from .imputation.analysis import settings_of
    from .imputation.chained import impute

    mi = settings_of(mi)
    out = {}
    for outcome in analysis["outcomes"]:
        frame = impute(part, outcome, imputation, mi["seed"], mi["method"], mi["iterations"])
        out[outcome] = frame.assign(participant_id=part["participant_id"].to_numpy())
    return out


def narrow_imputations(imputations, name, kept, part, analysis, mi, reason) -> None:
    """Every completed data set's statistics of one design recomputed over the participants the
    rule left it (or removed from each, with the reason)."""
    from .imputation.analysis import settings_of

    outcome, design = name[len(IMPUTED) :].split(":", 1)
    terms = design_terms(
        ModelSpec.from_config(design.split("/")[0], analysis["models"][design.split("/")[0]]), "primary"
    )
    kind = "withheld" if kept is None else "harmonized"
    for number, entry in enumerate(imputations["outcomes"][outcome]):
        content = entry["outcomes"][outcome]
        content.setdefault(kind, {})[design] = reason
        if kept is None:
            del content["designs"][design]
            continue
        frame = completed_data(part, {**analysis, "outcomes": [outcome]}, settings_of(mi), number)[outcome]
        rows = frame[frame["participant_id"].isin(kept)]
        content["designs"][design] = design_statistics(complete_cases(rows, outcome, terms), outcome, terms, [])


# ------------------------------------------------------------------ the ledger


def participant_tags(key: bytes, study: str, ids) -> list[str]:
    """Sorted keyed tags of participants: the ledger's only trace of who took part."""
    keyed = hmac.new(key, f"ipdpool-ledger\x1f{study}\x1f".encode(), hashlib.sha256)

    def one(pid: str) -> str:
        mac = keyed.copy()
        mac.update(str(pid).encode())
        return mac.hexdigest()[:TAG_HEX]

    return sorted(one(pid) for pid in ids)


def release_entry(key: bytes, study: str, sets: dict[str, frozenset], line: str, when: str) -> dict:
    statistics = {name: participant_tags(key, study, ids) for name, ids in sorted(sets.items())}
    digest = hashlib.sha256(json.dumps(statistics, sort_keys=True).encode()).hexdigest()
    return {"released": when, "release_line": line, "digest": digest, "statistics": statistics}


def ledger_mac(key: bytes, ledger: dict) -> str:
    """HMAC under the site's key over the ledger's content (all but the MAC itself): an unkeyed
    checksum would be recomputed by whoever edits the file."""
    content = json.dumps({k: v for k, v in ledger.items() if k != "mac"}, sort_keys=True).encode()
    return hmac.new(key, b"ipdpool-ledger-file\x1f" + content, hashlib.sha256).hexdigest()


def read_ledger(path: Path, study: str, key: bytes) -> dict | None:
    """The study's ledger, None when there is none yet; ReleaseRefused when it is not this
    study's or its MAC does not match (edited, or written under another key)."""
    if not Path(path).exists():
        return None
    try:
        ledger = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as error:
        raise ReleaseRefused(f"study {study}: release ledger {path} is not valid JSON ({error})") from None
    if not isinstance(ledger, dict) or ledger.get("format") != LEDGER_FORMAT or ledger.get("study") != study:
        raise ReleaseRefused(f"study {study}: {path} is not this study's release ledger ({LEDGER_FORMAT})")
    if not hmac.compare_digest(str(ledger.get("mac", "")), ledger_mac(key, ledger)):
        raise ReleaseRefused(
            f"study {study}: release ledger {path} was changed outside ipdpool (its MAC under the site's key does "
            "not match): restore it from a backup; nothing written"
        )
    return ledger


def new_ledger(path: Path, study: str, line: dict | None, released_before: bool, log) -> dict:
    """A ledger started from nothing, refused when the site has released before (per its config
    or an earlier bundle) unless it starts a new release line explicitly: a lost or moved ledger
    must not silently turn the differencing check off."""
    if released_before and not ((line or {}).get("name") and (line or {}).get("reason")):
        raise ReleaseRefused(
            f"study {study}: there is no release ledger at {path} although this site has released bundles before "
            "(federated.released_before, or an earlier bundle in results/site): restore the ledger from a backup, "
            "or start a new release line with federated.release_line (name and reason); nothing written"
        )
    log.warning("study %s: no release ledger at %s; starting a new one", study, path)
    return {"format": LEDGER_FORMAT, "study": study, "lines": [], "releases": []}


def write_ledger(path: Path, key: bytes, ledger: dict) -> None:
    ledger = {**ledger, "mac": ledger_mac(key, ledger)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(ledger, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def current_line(ledger: dict) -> str | None:
    return ledger["lines"][-1]["name"] if ledger["lines"] else None


def pair_problem(new: set, old: set, same_name: bool, threshold: int) -> tuple[int, int] | None:
    """(removed, added) when the two sets can be differenced down to 1 to threshold - 1 participants.

    Any two sets whose symmetric difference is that small give those participants away
    (the statistics of one design are often a sub-block of another's, and a model renamed in the
    config releases the same sums under a new name); the same statistic released again is
    held to the stricter rule that neither side of the difference may be that small."""
    added, removed = len(new - old), len(old - new)
    if 0 < added + removed < threshold or (same_name and (0 < added < threshold or 0 < removed < threshold)):
        return removed, added
    return None


def ledger_problems(ledger: dict, entry: dict, threshold: int) -> list[str]:
    """Statistics of the new release whose participants differ from those of ANY statistic of an
    earlier release of the same line (whatever its name) by 1 to threshold - 1. A new set equal to
    one released before in the line adds nothing that could be differenced, so it is not compared."""
    study, problems = ledger["study"], []
    earlier = [
        (release["released"], name, frozenset(tags))
        for release in ledger["releases"]
        if release["release_line"] == entry["release_line"]
        for name, tags in sorted(release["statistics"].items())
    ]
    seen = {tags for _, _, tags in earlier}
    for name, tags in sorted(entry["statistics"].items()):
        new = frozenset(tags)
        if new in seen:
            continue
        for released, before_name, old in earlier:
            found = pair_problem(new, old, name == before_name, threshold)
            if found is None:
                continue
            removed, added = found
            problems.append(
                f"study {study}: statistic {name} would differ from statistic {before_name} of the release of "
                f"{released} by {removed} participant(s) removed and {added} added (between 1 and nfilter_subset "
                f"{threshold} - 1): the two releases together would give those participants' values away"
            )
    return problems


def record_release(
    ledger_path: Path,
    key: bytes,
    study: str,
    sets: dict[str, frozenset],
    threshold: int,
    line: dict | None,
    log,
    released_before: bool = False,
) -> dict:
    """Check a release against the study's ledger and record it; ReleaseRefused if it differs
    from an earlier release of the current line by 1 to threshold - 1 participants in any statistic.

    `line` ({name, reason}) is the configured release line; naming a new one is the explicit act
    that starts a new line (logged and recorded with its reason); releases of earlier lines are
    no longer compared. The ledger is keyed (an edited one is refused); a missing one at a site
    that `released_before` is refused unless `line` starts a new line with a reason."""
    ledger = read_ledger(ledger_path, study, key)
    if ledger is None:
        ledger = new_ledger(ledger_path, study, line, released_before, log)
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    name = (line or {}).get("name") or current_line(ledger) or "1"
    if name != current_line(ledger):
        if any(entry["name"] == name for entry in ledger["lines"]):
            raise ReleaseRefused(f"study {study}: release line {name!r} was already used; name a new one")
        if ledger["lines"] and not (line or {}).get("reason"):
            raise ReleaseRefused(
                f"study {study}: a new release line {name!r} needs federated.release_line.reason (why it is safe)"
            )
        reason = (line or {}).get("reason", "first release")
        if ledger["lines"]:
            log.warning(
                "study %s: release line %r started (%s); earlier releases are no longer compared", study, name, reason
            )
        ledger["lines"].append({"name": name, "started": when, "reason": reason})
    entry = release_entry(key, study, sets, name, when)
    problems = ledger_problems(ledger, entry, threshold)
    if problems:
        raise ReleaseRefused(
            f"study {study}: release refused by the release ledger {ledger_path}, nothing written:\n"
            + "\n".join(problems)
        )
    if not any(e["digest"] == entry["digest"] and e["release_line"] == name for e in ledger["releases"]):
        ledger["releases"].append(entry)
    # every bundle written gets the next number, signed in its manifest: the centre refuses older ones
    ledger["last_sequence"] = ledger.get("last_sequence", 0) + 1
    write_ledger(ledger_path, key, ledger)
    return {**entry, "sequence": ledger["last_sequence"]}
