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

import datetime as dt
import hashlib
import hmac
import itertools
import json
from pathlib import Path

import pandas as pd

from .models.statistics import DESIGNS, ModelSpec, design_terms, required_columns, study_statistics

NESTED_CHOICES = ("harmonize", "withhold")
LEDGER_FORMAT = "ipdpool-ledger/1"
TAG_HEX = 16  # 64-bit tags: collisions among a trial's participants are negligible (~n^2 / 2^65)


class ReleaseRefused(Exception):
    """A release the ledger refuses; the message names statistics and sizes, never participants."""


# ------------------------------------------------------------------ participant sets


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
    """Participant sets of the other released numbers: Table 1 by arm (all, with age, with each
    baseline score), follow-up scores by arm and each outcome's count of follow-up scores."""
    ids = part["participant_id"]
    out = {}
    for arm in ("IPS", "SAU"):
        in_arm = part["arm"] == arm
        out[f"table1/{arm}"] = frozenset(ids[in_arm])
        out[f"table1/{arm}/age"] = frozenset(ids[in_arm & part["age"].notna()])
        for outcome in outcomes:
            if f"{outcome}_bl" in part:
                out[f"table1/{arm}/{outcome}_baseline"] = frozenset(ids[in_arm & part[f"{outcome}_bl"].notna()])
            if f"{outcome}_fu" in part:
                out[f"{outcome}:arms/{arm}"] = frozenset(ids[in_arm & part[f"{outcome}_fu"].notna()])
    for outcome in outcomes:
        out[f"{outcome}:n_followup"] = frozenset(ids[part[f"{outcome}_fu_z"].notna()])
    return out


# ------------------------------------------------------------------ one bundle


def small_differences(sets: dict[str, frozenset], threshold: int) -> list[tuple[str, str, int, int]]:
    """(a, b, |a - b|, |b - a|) of every pair where either difference holds 1 to threshold - 1 participants."""
    out = []
    for a, b in itertools.combinations(sorted(sets), 2):
        only_a, only_b = len(sets[a] - sets[b]), len(sets[b] - sets[a])
        if 0 < only_a < threshold or 0 < only_b < threshold:
            out.append((a, b, only_a, only_b))
    return out


def resolve_nested(
    sets: dict[str, frozenset], threshold: int, choice: str
) -> tuple[dict[str, frozenset], dict[str, str]]:
    """Sets after the rule, and key -> reason for each design changed or withheld.

    harmonize: the designs of a pair of participant sets that differ by 1 to threshold - 1
    participants use their common complete cases (the intersection), repeated until no pair
    does (sets only shrink, so it ends); an empty common set withholds them. withhold: the
    designs with the smaller set of such a pair are not released, repeated likewise. Designs
    with the same participants share one set, so pairs are compared once per distinct set."""
    if choice not in NESTED_CHOICES:
        raise ValueError(f"federated.disclosure.nested must be one of {NESTED_CHOICES}, not {choice!r}")
    current, reasons = dict(sets), {}
    while True:
        groups: dict[frozenset, list[str]] = {}
        for key in sorted(current):
            groups.setdefault(current[key], []).append(key)
        labels = {members[0]: group for group, members in groups.items()}
        pairs = small_differences(labels, threshold)
        if not pairs:
            return current, reasons
        a, b, only_a, only_b = pairs[0]
        first, second = labels[a], labels[b]
        if choice == "withhold":
            smaller, other = (first, b) if (len(first), b) < (len(second), a) else (second, a)
            for key in groups[smaller]:
                reasons[key] = (
                    f"withheld: its participants differ from those of {other} by "
                    f"{len(smaller - current[other])} and {len(current[other] - smaller)} (nfilter_subset {threshold})"
                )
                del current[key]
            continue
        common = first & second
        for group, partner in ((first, b), (second, a)):
            if group == common:
                continue
            for key in groups[group]:
                if common:
                    reasons[key] = (
                        f"harmonized with {partner} to their {len(common)} common complete cases "
                        f"(the two differed by {only_a} and {only_b}, nfilter_subset {threshold})"
                    )
                    current[key] = common
                else:
                    reasons[key] = (
                        f"withheld: no complete cases in common with {partner}, which differs by fewer than {threshold}"
                    )
                    del current[key]


def one_model(analysis: dict, outcome: str, design: str) -> dict:
    """The analysis configuration narrowed to one outcome and model (to recompute one design)."""
    model = design.split("/", 1)[0]
    return {**analysis, "outcomes": [outcome], "models": {model: analysis["models"][model]}}


def released_statistics(
    part: pd.DataFrame, analysis: dict, diagnosis_levels, threshold: int, choice: str
) -> tuple[dict, dict[str, str], dict[str, frozenset]]:
    """The study's statistics with the nested-subset rule applied, the reason per design changed
    or withheld ('outcome:model/design' -> reason), and the participant set of every released design.
    A harmonized design is computed by study_statistics from the rows of its common complete cases,
    so it is exactly what the pooled-IPD code would give for those participants."""
    statistics = study_statistics(part, analysis, diagnosis_levels)
    sets = design_participants(part, analysis)
    final, reasons = resolve_nested(sets, threshold, choice)
    for key, reason in sorted(reasons.items()):
        outcome, design = key.split(":", 1)
        content = statistics["outcomes"][outcome]
        if key not in final:
            del content["designs"][design]
            content.setdefault("withheld", {})[design] = reason
            continue
        rows = part[part["participant_id"].isin(final[key])]
        narrowed = study_statistics(rows, one_model(analysis, outcome, design), diagnosis_levels)
        content["designs"][design] = narrowed["outcomes"][outcome]["designs"][design]
        content.setdefault("harmonized", {})[design] = reason
    return statistics, reasons, final


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
