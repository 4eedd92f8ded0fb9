"""What a site releases, and whether releasing it gives a participant away by differencing.

Two statistics computed over participant sets A and B can be subtracted: their difference is
the statistic of the participants in A but not B, minus that of those in B but not A. When
either group holds 1 to nfilter_subset - 1 participants, that is a handful of people's values
(one person's whole record when it is one). Two places where this happens are controlled here:

- inside one bundle (`release`, `resolve_nested`): every released number is a sum of one
  quantity over some participants (a design's cross-product of two columns: their product over
  its complete cases, or over those an indicator column marks, e.g. the IPS arm or the employed;
  Table 1's counts and moments by arm, which include the causal first stage's 2x2 tables; the
  follow-up scores by arm; each completed data set's statistics for federated MI). Any two sums
  of one quantity by different statistics over participants differing on either side by 1 to
  nfilter_subset - 1 are harmonized (the statistic with the extra participants leaves them out)
  or the smaller is withheld;
- across releases, a site that re-exports after a withdrawal or a correction sends the same
  statistic over a set one participant smaller: the release ledger (`record_release`) keeps,
  at the site, a keyed tag of every participant of every released statistic and of the
  subgroups it splits into, and refuses a new release whose statistics or subgroups differ
  from ANY released earlier in the line (whatever the statistic's name: renamed models and
  sub-block designs carry the same sums) by 1 to nfilter_subset - 1.

The ledger never holds a pseudonym: each participant is an HMAC tag under the site's
pseudonym key, so the ledger reveals nothing without the key, and refusals name the
statistic and the size of the difference, never who.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .models.statistics import (
    CENTRE_VARIANT,
    DESIGNS,
    DIAGNOSIS_REFERENCE,
    MISSING_SITE,
    ModelSpec,
    arm_summaries,
    complete_cases,
    design_statistics,
    design_terms,
    required_columns,
    study_statistics,
    wants_centres,
)

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


def imputation_participants(completed: dict[int, dict[str, pd.DataFrame]], analysis: dict) -> dict[str, frozenset[str]]:
    """'imputations/outcome:model/primary#j' -> the complete cases of completed data set j
    (`completed`: j -> outcome -> completed data with participant_id)."""
    out = {}
    for number, frames in completed.items():
        for outcome, frame in frames.items():
            ids, present = frame["participant_id"].to_numpy(), frame.notna()
            for name, spec in analysis["models"].items():
                terms = design_terms(ModelSpec.from_config(name, spec), "primary")
                rows = present[required_columns(outcome, terms)].all(axis=1).to_numpy()
                out[f"{IMPUTED}{outcome}:{name}/primary#{number}"] = frozenset(ids[rows])
    return out


def imputed_subgroups(completed: dict[int, dict[str, pd.DataFrame]]) -> dict[str, frozenset]:
    """The employment subgroups of each completed data set (employment is imputed too), and its
    female subgroup where sex is an imputation covariate (imputed where missing)."""
    out = {}
    for number, frames in completed.items():
        for outcome, frame in frames.items():
            employed, ips = frame["employed"] == 1, frame["arm"] == "IPS"
            out[f"employed, {outcome} #{number}"] = frozenset(frame["participant_id"][employed])
            out[f"IPS and employed, {outcome} #{number}"] = frozenset(frame["participant_id"][employed & ips])
            if "sex" in frame:
                out[f"female, {outcome} #{number}"] = frozenset(frame["participant_id"][frame["sex"] == "female"])
    return out


def ledger_sets(sets: dict[str, frozenset]) -> dict[str, frozenset]:
    """The sets the ledger keeps: a completed-data design whose participants are the same in every
    completed data set once, without its number (the ledger holds one tag list per name)."""
    out, by_design = {}, {}
    for name, ids in sets.items():
        if name.startswith(IMPUTED):
            by_design.setdefault(name.rsplit("#", 1)[0], {})[name] = ids
        else:
            out[name] = ids
    for design, members in by_design.items():
        out.update({design: next(iter(members.values()))} if len(set(members.values())) == 1 else members)
    return out


def imputed_design(name: str) -> tuple[str, str, int]:
    """(outcome, model/design, completed data set number) of 'imputations/outcome:model/primary#j'."""
    key, number = name[len(IMPUTED) :].rsplit("#", 1)
    outcome, design = key.split(":", 1)
    return outcome, design, int(number)


# ------------------------------------------------------------------ one bundle

# A statistic's sums are also sums over subgroups: a design's cross-product of an indicator
# column with any other column is that column's sum over the participants the indicator marks
# (and, subtracted from the column's total, over the others). Those subgroups are compared too:
# two designs whose participants differ by 4, of whom 1 is in IPS, give that one away through
# their IPS column.
IMPUTED_SPLITS = ("employed", "female")  # subgroups of imputed variables (sex: when an imputation covariate)
SPLITS_OF_TERM = {
    "ips": ("IPS",), "employed": ("employed",), "employed_within": ("employed",), "employed_between": ("employed",),
    "ips:employed": ("IPS and employed",), "sex": ("female",),
}  # fmt: skip


def subgroups(part: pd.DataFrame, diagnosis_levels=()) -> dict[str, frozenset]:
    """label -> participants of each subgroup an indicator column of a design marks."""
    ids = part["participant_id"]
    ips, employed = part["arm"] == "IPS", part["employed"] == 1
    out = {
        "IPS": frozenset(ids[ips]),
        "employed": frozenset(ids[employed]),
        "IPS and employed": frozenset(ids[ips & employed]),
        "female": frozenset(ids[part["sex"] == "female"]),
    }
    for level in diagnosis_levels:
        out[f"diagnosis {level}"] = frozenset(ids[part["diagnosis"] == level])
    return out


def statistic_splits(name: str, analysis: dict, diagnosis_levels=()) -> tuple[str, ...]:
    """The subgroups (labels of `subgroups`) whose sums the statistic `name` gives: a design's
    indicator columns; Table 1's counts of sex, diagnosis and employment by level (within its arm)."""
    if name.startswith("table1/"):
        column = name.split("/")[-1]
        levels = {"sex": ("female",), "employed": ("employed",)}
        return levels.get(column, tuple(f"diagnosis {lv}" for lv in diagnosis_levels) if column == "diagnosis" else ())
    key = name[len(IMPUTED) :].rsplit("#", 1)[0] if name.startswith(IMPUTED) else name
    terms = {f"{o}:{k}": t for o, k, t in design_keys(analysis)}.get(key, ())
    labels = [label for term in terms for label in SPLITS_OF_TERM.get(term, ())]
    if "diagnosis" in terms:
        labels += [f"diagnosis {level}" for level in diagnosis_levels]
    if name.startswith(IMPUTED):  # employment and sex are imputed: their subgroups are the completed data set's
        outcome, _, number = imputed_design(name)
        imputed = ("IPS and employed", *IMPUTED_SPLITS)
        labels = [f"{label}, {outcome} #{number}" if label in imputed else label for label in labels]
    return tuple(dict.fromkeys(labels))


def design_columns(outcome: str, terms: tuple[str, ...], diagnosis_levels=()) -> list[tuple[frozenset, tuple]]:
    """Each column of a design as (indicators it is the product of, values it carries)."""
    fixed = {
        "ips": ({"IPS"}, ()), "employed": ({"employed"}, ()), "employed_within": ({"employed"}, ()),
        "ips:employed": ({"IPS", "employed"}, ()), "sex": ({"female"}, ()),
        "baseline": (set(), (f"{outcome}:baseline",)), "age": (set(), ("age",)),
    }  # fmt: skip
    columns = [(frozenset(), ())]
    for term in terms:
        if term in fixed:
            columns.append((frozenset(fixed[term][0]), fixed[term][1]))
        elif term == "diagnosis":
            columns += [(frozenset({f"diagnosis {lv}"}), ()) for lv in diagnosis_levels if lv != DIAGNOSIS_REFERENCE]
        # employed_between is the study's share employed: constant in a study, a multiple of the intercept
    return [*columns, (frozenset(), (f"{outcome}:followup",))]


def design_quantities(columns: list[tuple[frozenset, tuple]]) -> set[tuple[frozenset, tuple]]:
    """The sums a design's cross-products give: every product of two columns (a sum of their
    values over the participants all their indicators mark) and, by subtracting one from
    another, the same over the participants an indicator does not mark (e.g. the SAU arm)."""
    direct = set()
    for i, (ind_a, val_a) in enumerate(columns):
        for ind_b, val_b in columns[i:]:
            direct.add((frozenset((g, True) for g in ind_a | ind_b), tuple(sorted(val_a + val_b))))
    derived = {
        (restrictions - {(g, True)} | {(g, False)}, values)
        for restrictions, values in direct
        for g, _ in restrictions
        if (restrictions - {(g, True)}, values) in direct
    }
    return {q for q in direct | derived if not is_count_by_arm(q)}


def is_count_by_arm(quantity) -> bool:
    """A count of participants, in all or by arm: how many a set difference holds, not a value."""
    restrictions, values = quantity
    return not values and all(g == "IPS" for g, _ in restrictions)


def summary_quantities(name: str, diagnosis_levels=()) -> set[tuple[frozenset, tuple]]:
    """The sums Table 1 and the follow-up scores by arm give (n, mean and SD: sum and sum of squares)."""
    if name.startswith("table1/") and name.count("/") == 2:
        _, arm, column = name.split("/")
        in_arm = (("IPS", arm == "IPS"),)
        indicator = {"sex": ["female"], "employed": ["employed"]}.get(column)
        if column == "diagnosis":
            return {(frozenset({*in_arm, (f"diagnosis {lv}", True)}), ()) for lv in diagnosis_levels}
        if indicator:
            return {(frozenset({*in_arm, (indicator[0], member)}), ()) for member in (True, False)}
        value = "age" if column == "age" else f"{column[: -len('_baseline')]}:baseline"
        return {(frozenset(in_arm), (value,)), (frozenset(in_arm), (value, value))}
    if ":arms/" in name:
        outcome, arm = name.split(":arms/")
        in_arm, value = frozenset({("IPS", arm == "IPS")}), f"{outcome}:followup"
        return {(in_arm, (value,)), (in_arm, (value, value))}
    return set()  # counts: a study's or arm's n, an outcome's number of follow-up scores


def statistic_quantities(name: str, analysis: dict, diagnosis_levels=()) -> set[tuple[frozenset, tuple]]:
    key = name[len(IMPUTED) :].rsplit("#", 1)[0] if name.startswith(IMPUTED) else name
    terms = {f"{o}:{k}": t for o, k, t in design_keys(analysis)}.get(key)
    if terms is None:
        return summary_quantities(name, diagnosis_levels)
    return design_quantities(design_columns(key.split(":", 1)[0], terms, diagnosis_levels))


def statistic_relabel(name: str) -> dict[str, str]:
    """A completed data set's statistic marks employment and sex by their completed values."""
    if not name.startswith(IMPUTED):
        return {}
    outcome, _, number = imputed_design(name)
    return {label: f"{label}, {outcome} #{number}" for label in IMPUTED_SPLITS}


@dataclass(frozen=True)
class Scope:
    """How statistics are compared: the sums each releases (within a bundle; a name missing
    releases one sum, over its whole set) and the subgroups each splits into (across releases;
    name -> labels of `groups`)."""

    splits: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)
    # name -> the sums it releases, each (restrictions, values): restrictions a frozenset of
    # (indicator, True for its members / False for the others), values the summed product
    quantities: dict = field(default_factory=dict)
    # name -> {indicator: label in groups} where a statistic's indicator is not the observed one
    # (employment in a completed data set)
    relabel: dict = field(default_factory=dict)


class Masks:
    """Participant sets as bit masks over one index (set differences of a few hundred
    participants by the ten thousand: bit operations on ints are ~50x faster than frozensets)."""

    def __init__(self, sets: dict[str, frozenset], scope: Scope):
        self.ids = sorted(set().union(*sets.values(), *scope.groups.values()))
        self.index = {pid: i for i, pid in enumerate(self.ids)}
        self.groups = {label: self.mask(members) for label, members in scope.groups.items()}

    def mask(self, members) -> int:
        return sum(1 << self.index[pid] for pid in members)

    def members(self, mask: int) -> frozenset:
        return frozenset(pid for i, pid in enumerate(self.ids) if mask >> i & 1)


def views(current: dict[str, int], masks: Masks, scope: Scope) -> dict[int, list[tuple[str, str]]]:
    """participants -> [(statistic, subgroup label)]: each statistic whole (''), its subgroups and
    their complements, and for one split by arm the other subgroups within each arm (the
    cross-product of the IPS column with an indicator; Table 1 gives the same counts by arm)."""
    out: dict[int, list[tuple[str, str]]] = {}
    for name in sorted(current):
        mask = current[name]
        out.setdefault(mask, []).append((name, ""))
        labels = scope.splits.get(name, ())
        for label in labels:
            group = masks.groups[label]
            out.setdefault(mask & group, []).append((name, label))
            out.setdefault(mask & ~group, []).append((name, f"not {label}"))
        if "IPS" not in labels:
            continue
        ips = masks.groups["IPS"]
        for label in [lb for lb in labels if lb != "IPS"]:
            group = masks.groups[label]
            for arm, arm_mask in (("IPS", ips), ("SAU", ~ips)):
                out.setdefault(mask & arm_mask & group, []).append((name, f"{arm}, {label}"))
                out.setdefault(mask & arm_mask & ~group, []).append((name, f"{arm}, not {label}"))
    return out


WHOLE = (frozenset(), ("all values",))  # one sum over the statistic's whole set


def quantity_pairs(current: dict[str, int], masks: Masks, scope: Scope, threshold: int) -> list[tuple]:
    """(views a, views b, |a - b|, |b - a|, mask a, mask b) for every two sums of one quantity
    (scope.quantities) released by different statistics over participants differing on either
    side by 1 to threshold - 1; a view is (statistic, quantity described)."""
    buckets: dict[tuple, dict[int, list[tuple[str, str]]]] = {}
    for name in sorted(current):
        relabel = scope.relabel.get(name, {})
        for quantity in scope.quantities.get(name, (WHOLE,)):
            mask = current[name]
            for indicator, member in quantity[0]:
                group = masks.groups[relabel.get(indicator, indicator)]
                mask &= group if member else ~group
            buckets.setdefault(quantity, {}).setdefault(mask, []).append((name, describe(quantity)))
    out = []
    for found in buckets.values():
        keys = list(found)
        for i, mask_a in enumerate(keys):
            for mask_b in keys[i + 1 :]:
                only_a, only_b = (mask_a & ~mask_b).bit_count(), (mask_b & ~mask_a).bit_count()
                if not (0 < only_a < threshold or 0 < only_b < threshold):
                    continue
                if len({name for name, _ in found[mask_a] + found[mask_b]}) > 1:
                    out.append((found[mask_a], found[mask_b], only_a, only_b, mask_a, mask_b))
    return sorted(out, key=lambda pair: (view_name(pair[0][0]), view_name(pair[1][0])))


# A participant is exposed when some linear combination of released sums of one value isolates
# them: e_i lies in the row space of the sums' 0/1 membership rows, i.e. row i of a null-space
# basis is zero. Pairs differing by >= nfilter_subset do not stop three to five sums combining
# (attack5 R1, R2). Computed with an SVD (numpy's matrix_rank tolerance for the rank; a basis
# row below NULL_ROW_TOLERANCE counts as zero: exact 0/1 systems give ~1e-15 or >= ~1e-3).
NULL_ROW_TOLERANCE = 1e-8


def membership_matrix(found: list[int], width: int) -> np.ndarray:
    size = (width + 7) // 8
    rows = [np.frombuffer(mask.to_bytes(size, "little"), np.uint8) for mask in found]
    return np.unpackbits(np.stack(rows), axis=1, bitorder="little")[:, :width].astype(float)


def exposed_in(found: list[int], width: int) -> int:
    """How many participants some combination of sums over the sets `found` (bit masks) isolates."""
    matrix = membership_matrix(found, width)
    columns = np.flatnonzero(matrix.any(axis=0))
    matrix = matrix[:, columns]
    _, singular, vt = np.linalg.svd(matrix, full_matrices=True)
    rank = int((singular > singular.max() * max(matrix.shape) * np.finfo(float).eps).sum())
    null_rows = np.linalg.norm(vt[rank:].T, axis=1) if rank < len(columns) else np.zeros(len(columns))
    return int((null_rows < NULL_ROW_TOLERANCE).sum())


def sum_rows(name: str, scope: Scope) -> list[tuple[tuple, str]]:
    """(product, arm: 'IPS', 'SAU' or '' for both) of each sum the statistic releases. A sum over
    an indicator's members is the sum of the product with the indicator (the same value whichever
    statistic releases it); sums over an indicator's non-members are differences of two such
    sums; plain counts are left to the pairwise rule."""
    relabel, out = scope.relabel.get(name, {}), []
    for restrictions, values in scope.quantities.get(name, ()):
        if any(not member and indicator != "IPS" for indicator, member in restrictions):
            continue
        factors = tuple(sorted((*values, *(relabel.get(g, g) for g, _ in restrictions if g != "IPS"))))
        arm = next(("IPS" if member else "SAU" for g, member in restrictions if g == "IPS"), "")
        if factors:
            out.append((factors, arm))
    return sorted(set(out))


def stack_sums(out: dict, current: dict[str, int], rows: dict[str, list], ips: int) -> dict[tuple, dict[int, set]]:
    """Add to `out` (product -> {participants (mask) of a released sum of it: statistics}) the sums
    `rows` (name -> sum_rows) over the participants `current` (name -> mask), arms by `ips`."""
    for name in sorted(current):
        for factors, arm in rows.get(name, ()):
            mask = current[name] & (ips if arm == "IPS" else ~ips if arm == "SAU" else -1)
            if mask:
                out.setdefault(factors, {}).setdefault(mask, set()).add(name)
    return out


def value_sums(current: dict[str, int], masks: Masks, scope: Scope) -> dict[tuple, dict[int, set]]:
    rows = {name: sum_rows(name, scope) for name in current}
    return stack_sums({}, current, rows, masks.groups.get("IPS", 0))


def exposures(current: dict[str, int], masks: Masks, scope: Scope) -> dict[tuple, tuple[int, set]]:
    """value -> (how many participants are exposed, the statistics summing it) where any are."""
    out = {}
    for values, found in value_sums(current, masks, scope).items():
        count = exposed_in(list(found), len(masks.ids))
        if count:
            out[values] = (count, set().union(*found.values()))
    return out


def withhold_exposing(current: dict[str, int], masks: Masks, scope: Scope, withheld: dict[str, str]) -> None:
    """Withhold statistics, the smallest first, until no participant is exposed by a combination."""
    while found := exposures(current, masks, scope):
        involved = set().union(*(names for _, names in found.values()))
        smallest = min(involved, key=lambda name: (current[name].bit_count(), name))
        values = sorted(" x ".join(v) for v, (_, names) in found.items() if smallest in names)
        count = max(c for c, names in found.values() if smallest in names)
        withheld[smallest] = (
            f"withheld: combined with other released statistics its sums of {', '.join(values[:3])}"
            f"{' and more' if len(values) > 3 else ''} isolate {count} participant(s) (linear combination check)"
        )
        del current[smallest]


def describe(quantity) -> str:
    restrictions, values = quantity
    where = ", ".join(g if member else f"not {g}" for g, member in sorted(restrictions))
    what = " x ".join(values) or "count"
    return f"{what} of {where}" if where else what


def view_name(view: tuple[str, str]) -> str:
    name, label = view
    return f"{name} ({label})" if label else name


def small_differences(sets: dict[str, frozenset], threshold: int, scope: Scope | None = None) -> list[tuple]:
    """(view a, view b, |a - b|, |b - a|) of every pair of statistics' views (whole or subgroup)
    that sum a value in common and differ on either side by 1 to threshold - 1 participants."""
    scope = scope or Scope()
    if not sets:
        return []
    masks = Masks(sets, scope)
    current = {name: masks.mask(ids) for name, ids in sets.items()}
    return [
        (view_name(a[0]), view_name(b[0]), only_a, only_b)
        for a, b, only_a, only_b, _, _ in quantity_pairs(current, masks, scope, threshold)
    ]


def resolve_nested(
    sets: dict[str, frozenset], threshold: int, choice: str, scope: Scope | None = None
) -> tuple[dict[str, frozenset], dict[str, str]]:
    """Sets after the rule, and name -> reason for each statistic changed or withheld.

    Two views (a statistic whole, or its sums over a subgroup, see `views`) of different
    statistics are compared when the statistics sum a value in common. harmonize: where one side
    holds 1 to threshold - 1 participants the other lacks, its statistic leaves them out; all
    such pairs of a round at once (the result does not depend on their order), repeated until no
    pair is left (sets only shrink, so it ends); an emptied statistic is withheld. withhold: the
    statistics of the smaller view of the first such pair are not released, repeated likewise."""
    if choice not in NESTED_CHOICES:
        raise ValueError(f"federated.disclosure.nested must be one of {NESTED_CHOICES}, not {choice!r}")
    scope = scope or Scope()
    masks = Masks(sets, scope)
    current = {name: masks.mask(ids) for name, ids in sets.items()}
    partners: dict[str, list[str]] = {}
    withheld: dict[str, str] = {}
    while pairs := quantity_pairs(current, masks, scope, threshold):
        if choice == "withhold":
            a, b, only_a, only_b, mask_a, mask_b = pairs[0]
            smaller, other = (
                (a, b) if (mask_a.bit_count(), view_name(b[0])) < (mask_b.bit_count(), view_name(a[0])) else (b, a)
            )
            for name, label in smaller:
                where = f"its {label} participants" if label else "its participants"
                withheld[name] = (
                    f"withheld: {where} differ from those of {view_name(other[0])} by {only_a} and {only_b} "
                    f"(nfilter_subset {threshold})"
                )
                current.pop(name, None)
            continue
        drops: dict[str, int] = {}
        for a, b, only_a, only_b, mask_a, mask_b in pairs:
            for side, other, extra, missing, mask, other_mask in (
                (a, b, only_a, only_b, mask_a, mask_b),
                (b, a, only_b, only_a, mask_b, mask_a),
            ):
                if 0 < extra < threshold:
                    for name, _label in side:
                        drops[name] = drops.get(name, 0) | (mask & ~other_mask)
                        partners.setdefault(name, []).append(
                            f"{view_name(other[0])} (differing by {extra} and {missing})"
                        )
        for name, drop in drops.items():
            current[name] &= ~drop
            if not current[name]:
                withheld[name] = f"withheld: no participants left after leaving out those {partners[name][0]} lacks"
                del current[name]
    if threshold > 1:  # nfilter_subset 1 switches the subset controls off
        withhold_exposing(current, masks, scope, withheld)
    reasons = {
        name: harmonized_reason(len(sets[name]), current[name].bit_count(), partners[name], threshold)
        for name in current
        if name in partners
    }
    return {name: masks.members(mask) for name, mask in current.items()}, {**reasons, **withheld}


def harmonized_reason(before: int, after: int, partners: list[str], threshold: int) -> str:
    listed = ", ".join(sorted(set(partners))[:3]) + (
        f" and {len(set(partners)) - 3} more" if len(set(partners)) > 3 else ""
    )
    return (
        f"harmonized from {before} to {after} participants: left out those that {listed} lacked "
        f"(statistics whose participants differ by 1 to {threshold - 1} can be subtracted; nfilter_subset {threshold})"
    )


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
    scope: Scope = field(default_factory=Scope)


def released_sets(part: pd.DataFrame, analysis: dict, completed: dict | None = None) -> dict[str, frozenset]:
    """Every released statistic's participants, by name: 'outcome:model/design', 'table1/ARM[/...]',
    'outcome:arms/ARM', 'outcome:n_followup' and 'imputations/outcome:model/primary#j' (`completed`:
    j -> outcome -> completed data set)."""
    sets = {**design_participants(part, analysis), **summary_participants(part, analysis["outcomes"])}
    return {**sets, **imputation_participants(completed or {}, analysis)}


def release_scope(part: pd.DataFrame, analysis: dict, sets: dict, diagnosis_levels=(), completed=None) -> Scope:
    """How the study's released statistics are compared: the sums each gives (within a bundle), the
    subgroups each splits into (across releases) and those subgroups' participants."""
    return Scope(
        {name: statistic_splits(name, analysis, diagnosis_levels) for name in sets},
        {**subgroups(part, diagnosis_levels), **imputed_subgroups(completed or {})},
        {name: statistic_quantities(name, analysis, diagnosis_levels) for name in sets},
        {name: relabel for name in sets if (relabel := statistic_relabel(name))},
    )


def release(
    part: pd.DataFrame,
    analysis: dict,
    diagnosis_levels,
    threshold: int,
    choice: str,
    imputations: dict | None = None,
    disclosure: dict | None = None,
) -> Release:
    """The study's release with the nested-subset rule applied to EVERY pair of released
    statistics that sum a value in common (designs, Table 1 and its 2x2 employment tables by arm,
    follow-up scores by arm, and the completed data sets' statistics in `imputations`, as
    site_imputations writes them, for federated MI). A harmonized
    statistic is computed by the same code from the rows of its participants, so it is exactly what
    the pooled-IPD code gives for them; a withheld one is released empty with its reason.
    With the centre_within_study sensitivity analysis, the primary designs also carry their
    per-centre blocks where `centre_blocks` allows them (`disclosure`: nfilter_tab and
    nfilter_glm for the centres' cells, federated.DISCLOSURE_DEFAULTS where absent)."""
    from .federated import DISCLOSURE_DEFAULTS, table1_aggregates

    imputations = copy.deepcopy(imputations)
    mi = imputations["settings"] if imputations is not None else None
    completed = {j: completed_data(part, analysis, mi, j) for j in range(mi["imputations"])} if mi else {}
    sets = released_sets(part, analysis, completed)
    scope = release_scope(part, analysis, sets, diagnosis_levels, completed)
    final, reasons = resolve_nested(sets, threshold, choice, scope)
    statistics = study_statistics(part, analysis, diagnosis_levels)
    table1 = table1_aggregates(part)
    for name, reason in sorted(reasons.items()):
        rows = part[part["participant_id"].isin(final.get(name, ()))]
        if name.startswith(IMPUTED):
            narrow_imputations(imputations, name, final.get(name), completed, analysis, reason, diagnosis_levels)
        elif name.startswith("table1/"):
            narrow_table1(table1, name, rows, reason)
        elif ":arms/" in name:
            narrow_arms(statistics, name, rows, reason)
        else:
            narrow_design(statistics, name, rows, analysis, diagnosis_levels, reason, name in final)
    if wants_centres(analysis):
        limits = {**DISCLOSURE_DEFAULTS, **(disclosure or {}), "nfilter_subset": threshold}
        final, scope = centre_blocks(part, analysis, diagnosis_levels, statistics, final, scope, reasons, limits)
    return Release(statistics, table1, imputations, reasons, final, scope)


# ------------------------------------------------------------------ per-centre blocks

CENTRE_MARK = "@"  # 'outcome:model/primary@c1': the statistic of one centre's block


def centre_labels(part: pd.DataFrame) -> pd.Series:
    """Each row's pseudonymous centre key: c1, c2, ... in the sorted order of the study's sites
    (rows without a site are one more centre). Site names are declared variables (a recruiting
    site or city) and never leave the site; the keys are stable while the study's sites are."""
    sites = part["site"].astype("string").fillna(MISSING_SITE) if "site" in part else pd.Series("", index=part.index)
    names = sorted(set(sites))
    width = len(str(len(names)))
    return sites.map({site: f"c{i:0{width}d}" for i, site in enumerate(names, start=1)})


def centre_sets(part: pd.DataFrame, analysis: dict, final: dict[str, frozenset]) -> dict[str, dict[str, frozenset]]:
    """'outcome:model/primary' -> {centre key: its participants}: the released participants of each
    primary design split by centre, so that a design's centre blocks add up to it exactly."""
    labels = pd.Series(centre_labels(part).to_numpy(), index=part["participant_id"].to_numpy())
    out = {}
    for outcome in analysis["outcomes"]:
        for model in analysis["models"]:
            name = f"{outcome}:{model}/primary"
            if name in final:
                ids = sorted(final[name])
                by_centre = pd.Series(ids, index=labels.loc[ids].to_numpy()).groupby(level=0, sort=True)
                out[name] = {str(c): frozenset(members) for c, members in by_centre}
    return out


def centre_scope(scope: Scope, named: dict[str, str]) -> Scope:
    """The scope with each centre statistic (name -> its design's name) summing its design's quantities."""
    return Scope(
        {**scope.splits, **{name: scope.splits.get(design, ()) for name, design in named.items()}},
        scope.groups,
        {**scope.quantities, **{name: scope.quantities.get(design, {WHOLE}) for name, design in named.items()}},
        scope.relabel,
    )


def small_centre(members: dict[str, frozenset], name: str, scope: Scope, limits: dict, parameters: int) -> str | None:
    """Why a design's centre blocks cannot be released: a centre under nfilter_subset or with more
    parameters than nfilter_glm allows, or a cell of a centre (an indicator column's members or
    non-members, also within an arm) with 1 to nfilter_tab - 1 participants: a block's sums over
    such a cell are those few people's values."""
    masks = Masks(members, scope)
    for centre, ids in sorted(members.items()):
        if len(ids) < limits["nfilter_subset"]:
            return (
                f"centre {centre} holds {len(ids)} participants, fewer than nfilter_subset {limits['nfilter_subset']}"
            )
        if parameters > limits["nfilter_glm"] * len(ids):
            return f"centre {centre}: {parameters} parameters for {len(ids)} participants, more than nfilter_glm x n"
        cells = views({name: masks.mask(ids)}, masks, scope)
        for mask, labels in sorted(cells.items(), key=lambda item: view_name(item[1][0])):
            if 0 < mask.bit_count() < limits["nfilter_tab"]:
                return (
                    f"centre {centre}: cell {view_name(labels[0]).split(' ', 1)[-1]} holds {mask.bit_count()} "
                    f"participants, fewer than nfilter_tab {limits['nfilter_tab']}"
                )
    return None


def centre_pairs(final: dict, candidates: dict, scope: Scope, threshold: int) -> dict[str, str]:
    """design -> why its centre blocks are withheld, for every centre block whose sums differ from
    another released statistic's (or another centre block's) by 1 to threshold - 1 participants."""
    named = {f"{name}{CENTRE_MARK}{centre}": name for name, members in candidates.items() for centre in members}
    sets = {
        **final,
        **{statistic: candidates[name][statistic.split(CENTRE_MARK)[1]] for statistic, name in named.items()},
    }
    out = {}
    for a, b, only_a, only_b in small_differences(sets, threshold, centre_scope(scope, named)):
        for side in (a, b):
            statistic = side.split(" (")[0]
            if statistic in named:
                out.setdefault(
                    named[statistic],
                    f"{a} and {b} differ by {only_a} and {only_b} participants (nfilter_subset {threshold})",
                )
    return out


def centre_blocks(part, analysis, diagnosis_levels, statistics, final, scope, reasons, limits) -> tuple[dict, Scope]:
    """Put each primary design's per-centre blocks under its entry's "centres" (pseudonymous key ->
    statistics entry, adding up to the design) where `small_centre` allows them and no block differs
    from another released statistic by 1 to nfilter_subset - 1 participants (the nested-subset
    rule over every released sum); otherwise the design carries none, so the study enters
    centre_within_study as one centre, and `reasons` says why under 'outcome:model/primary@centres'.
    Returns the released sets and scope with the centre statistics (for the release ledger)."""
    candidates = {}
    for name, members in centre_sets(part, analysis, final).items():
        if len(members) < 2:
            continue  # one centre: its block would be the design again, which enters as one centre anyway
        outcome, key = name.split(":", 1)
        parameters = len(statistics["outcomes"][outcome]["designs"][key]["names"]) - 1
        why = small_centre(members, name, scope, limits, parameters)
        if why:
            reasons[f"{name}{CENTRE_MARK}centres"] = centre_reason(why)
        else:
            candidates[name] = members
    while blocked := centre_pairs(final, candidates, scope, limits["nfilter_subset"]):
        for name, why in blocked.items():
            reasons[f"{name}{CENTRE_MARK}centres"] = centre_reason(why)
            del candidates[name]
    if limits["nfilter_subset"] > 1:  # nfilter_subset 1 switches the subset controls off
        while exposing := exposing_centres(final, candidates, scope):
            name, count = exposing
            reasons[f"{name}{CENTRE_MARK}centres"] = centre_reason(
                f"combined with other released statistics their sums isolate {count} participant(s) "
                "(linear combination check)"
            )
            del candidates[name]
    named, sets = {}, dict(final)
    for name, members in candidates.items():
        outcome, key = name.split(":", 1)
        terms = {(o, k): t for o, k, t in design_keys(analysis)}[(outcome, key)]
        blocks = {}
        for centre, ids in members.items():
            rows = complete_cases(part[part["participant_id"].isin(ids)], outcome, terms)
            blocks[centre] = design_statistics(rows, outcome, terms, diagnosis_levels)
            named[f"{name}{CENTRE_MARK}{centre}"] = name
            sets[f"{name}{CENTRE_MARK}{centre}"] = ids
        statistics["outcomes"][outcome]["designs"][key]["centres"] = blocks
    return sets, centre_scope(scope, named)


def exposing_centres(final: dict, candidates: dict, scope: Scope) -> tuple[str, int] | None:
    """(the design with the smallest centre among those whose blocks, together with everything else
    released, let a combination of sums isolate participants; how many), or None: the blocks split
    sums that the pairwise rules only see whole (attack X1: a and d summed together in every design,
    apart in its two centres)."""
    named = {f"{name}{CENTRE_MARK}{centre}": name for name, members in candidates.items() for centre in members}
    blocks = {
        f"{name}{CENTRE_MARK}{centre}": ids for name, members in candidates.items() for centre, ids in members.items()
    }
    sets, centred = {**final, **blocks}, centre_scope(scope, named)
    masks = Masks(sets, centred)
    current = {name: masks.mask(ids) for name, ids in sets.items()}
    involved: dict[str, int] = {}
    for count, names in exposures(current, masks, centred).values():
        for design in {named[name] for name in names if name in named}:
            involved[design] = max(involved.get(design, 0), count)
    if not involved:
        return None
    design = min(involved, key=lambda name: (min(len(ids) for ids in candidates[name].values()), name))
    return design, involved[design]


def centre_reason(why: str) -> str:
    return f"withheld: per-centre blocks, {why}; the study enters {CENTRE_VARIANT} as one centre"


def narrow_design(statistics, name, rows, analysis, diagnosis_levels, reason, kept: bool) -> None:
    outcome, design = name.split(":", 1)
    content = statistics["outcomes"][outcome]
    if not kept:
        del content["designs"][design]
        content.setdefault("withheld", {})[design] = reason
        return
    # the design as study_statistics computes it, for these participants' rows
    terms = {(o, key): t for o, key, t in design_keys(analysis)}[(outcome, design)]
    content["designs"][design] = design_statistics(
        complete_cases(rows, outcome, terms), outcome, terms, diagnosis_levels
    )
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
        levels = [level for level in entry[column] if level != "missing"]  # the whole arm's, 0 where none is left
        entry[column] = {**{k: fresh[column].get(k, 0) for k in levels}, "missing": entry[column]["missing"]}
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
    from .imputation.analysis import completed_data_set

    out = {}
    for outcome in analysis["outcomes"]:
        frame = completed_data_set(part, outcome, analysis, mi, imputation)
        out[outcome] = frame.assign(participant_id=part["participant_id"].to_numpy())
    return out


def narrow_imputations(
    imputations: dict, name: str, kept, completed: dict, analysis: dict, reason: str, diagnosis_levels=()
) -> None:
    """One completed data set's statistics of one design recomputed over the participants the rule
    left it (or removed, with the reason)."""
    outcome, design, number = imputed_design(name)
    model = design.split("/")[0]
    terms = design_terms(ModelSpec.from_config(model, analysis["models"][model]), "primary")
    content = imputations["outcomes"][outcome][number]["outcomes"][outcome]
    content.setdefault("withheld" if kept is None else "harmonized", {})[design] = reason
    if kept is None:
        del content["designs"][design]
        return
    frame = completed[number][outcome]
    rows = frame[frame["participant_id"].isin(kept)]
    content["designs"][design] = design_statistics(
        complete_cases(rows, outcome, terms), outcome, terms, diagnosis_levels
    )


# ------------------------------------------------------------------ the ledger


def participant_tags(key: bytes, study: str, ids) -> list[str]:
    """Sorted keyed tags of participants: the ledger's only trace of who took part."""
    keyed = hmac.new(key, f"ipdpool-ledger\x1f{study}\x1f".encode(), hashlib.sha256)

    def one(pid: str) -> str:
        mac = keyed.copy()
        mac.update(str(pid).encode())
        return mac.hexdigest()[:TAG_HEX]

    return sorted(one(pid) for pid in ids)


def release_entry(key: bytes, study: str, sets: dict[str, frozenset], line: str, when: str, scope=None) -> dict:
    """The ledger's record of one release: the tags of every statistic's participants and, so that
    the subgroups a statistic's sums run over can be compared too, of every subgroup, and which
    subgroups each statistic splits into."""
    scope = scope or Scope()
    statistics = {name: participant_tags(key, study, ids) for name, ids in sorted(sets.items())}
    splits = {name: list(scope.splits[name]) for name in sorted(sets) if scope.splits.get(name)}
    used = {label for labels in splits.values() for label in labels} | ({"IPS"} & set(scope.groups))
    groups = {label: participant_tags(key, study, ids) for label, ids in sorted(scope.groups.items()) if label in used}
    digest = hashlib.sha256(json.dumps([statistics, groups, splits], sort_keys=True).encode()).hexdigest()
    entry = {"released": when, "release_line": line, "digest": digest, "statistics": statistics}
    # the sums each statistic released (product, arm), for the linear combination check across releases
    sums = {name: [[list(f), arm] for f, arm in rows] for name in sorted(sets) if (rows := sum_rows(name, scope))}
    entry = {**entry, "sums": sums} if sums else entry
    return {**entry, "subgroups": groups, "splits": splits} if groups else entry


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
    except RecursionError:
        raise ReleaseRefused(f"study {study}: release ledger {path} is not valid JSON (nested too deep)") from None
    if not isinstance(ledger, dict) or ledger.get("format") != LEDGER_FORMAT or ledger.get("study") != study:
        raise ReleaseRefused(f"study {study}: {path} is not this study's release ledger ({LEDGER_FORMAT})")
    if not hmac.compare_digest(str(ledger.get("mac", "")), ledger_mac(key, ledger)):
        raise ReleaseRefused(
            f"study {study}: release ledger {path} was changed outside ipdpool (its MAC under the site's key does "
            "not match). Do not restore an older backup: it forgets the releases made since, and with them the "
            "differencing check (the centre refuses a release numbered again). Restore the copy the last release "
            "wrote, or start a new release line with federated.release_line (name and reason); nothing written"
        )
    return ledger


def new_ledger(path: Path, study: str, line: dict | None, released_before: bool, log) -> dict:
    """A ledger started from nothing, refused when the site has released before (per its config
    or an earlier bundle) unless it starts a new release line explicitly: a lost or moved ledger
    must not silently turn the differencing check off."""
    if released_before and not ((line or {}).get("name") and (line or {}).get("reason")):
        raise ReleaseRefused(
            f"study {study}: there is no release ledger at {path} although this site has released bundles before "
            "(federated.released_before, or an earlier bundle in results/site): restore the copy the last release "
            "wrote (not an older backup, which forgets the releases made since), or start a new release line "
            "with federated.release_line (name and reason); nothing written"
        )
    log.warning("study %s: no release ledger at %s; starting a new one", study, path)
    return {"format": LEDGER_FORMAT, "study": study, "lines": [], "releases": []}


def write_ledger(path: Path, key: bytes, ledger: dict) -> None:
    ledger = {**ledger, "mac": ledger_mac(key, ledger)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(ledger, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def current_line(ledger: dict) -> str | None:
    return ledger["lines"][-1]["name"] if ledger["lines"] else None


def entry_views(entry: dict, masks: Masks) -> dict[int, list[tuple[str, str]]]:
    """participants -> [(statistic, subgroup)] of a ledger entry (see `views`); entries written
    before subgroups were recorded give their statistics whole."""
    scope = Scope(entry.get("splits", {}), {})
    masks.groups = {label: masks.mask(tags) for label, tags in entry.get("subgroups", {}).items()}
    current = {name: masks.mask(tags) for name, tags in entry["statistics"].items()}
    out: dict[int, list[tuple[str, str]]] = {}
    for mask, members in views(current, masks, scope).items():
        out.setdefault(mask, []).extend(members)
    return {mask: sorted(members, key=lambda view: (view[1] != "", view)) for mask, members in out.items()}


def same_participants(views_: list[tuple[str, str]]) -> str:
    """The first statistic (or subgroup) of these with the same participants, and the others' names."""
    whole = [view_name(v) for v in views_ if not v[1]]
    first, others = (whole[0], whole[1:]) if whole else (view_name(views_[0]), [])
    return f"{first} (and {', '.join(others)}: the same participants)" if others else first


def ledger_problems(ledger: dict, entry: dict, threshold: int, shown: int = 40) -> list[str]:
    """Statistics of the new release, or their subgroups, whose participants differ from those of
    ANY statistic or subgroup of an earlier release of the same line (whatever its name) by 1 to
    threshold - 1. A new set equal to one released before in the line adds nothing that could be
    differenced, so it is not compared. Whole statistics are all listed, subgroups the first `shown`."""
    study = ledger["study"]
    earlier = [r for r in ledger["releases"] if r["release_line"] == entry["release_line"]]
    tags = {
        t
        for r in [*earlier, entry]
        for members in [*r["statistics"].values(), *r.get("subgroups", {}).values()]
        for t in members
    }
    masks = Masks({"": frozenset(tags)}, Scope())
    new = entry_views(entry, masks)
    old = [(r["released"], entry_views(r, masks)) for r in earlier]
    seen = {mask for _, views_ in old for mask in views_}
    problems = []
    for mask, names in new.items():
        if mask in seen:
            continue
        for released, views_ in old:
            for before, before_names in views_.items():
                added, removed = (mask & ~before).bit_count(), (before & ~mask).bit_count()
                same = bool(set(names) & set(before_names))
                if not (
                    0 < added + removed < threshold or (same and (0 < added < threshold or 0 < removed < threshold))
                ):
                    continue
                problems.append(
                    f"study {study}: statistic {same_participants(names)} would differ from statistic "
                    f"{same_participants(before_names)} of the release of {released} by {removed} participant(s) "
                    f"removed and {added} added (between 1 and nfilter_subset {threshold} - 1): the two releases "
                    "together would give those participants' values away"
                )
    # every whole statistic is listed; of differences in subgroups only the first `shown`
    whole = sorted(p for p in problems if "participants)" in p or "(" not in p.split(" would differ")[0])
    parts = sorted(set(problems) - set(whole))
    more = [f"... and {len(parts) - shown} more in subgroups of statistics"] if len(parts) > shown else []
    return whole + parts[:shown] + more


def ledger_exposures(ledger: dict, entry: dict) -> list[str]:
    """The linear combination check over the sums of every release of the line and the new one:
    products of which some combination isolates a participant. Releases recorded before the
    ledger kept their sums ('sums') cannot take part: they are named, so that a new line can be
    started instead."""
    earlier = [r for r in ledger["releases"] if r["release_line"] == entry["release_line"]]
    tags = {t for r in [*earlier, entry] for members in r["statistics"].values() for t in members}
    tags |= {t for r in [*earlier, entry] for t in r.get("subgroups", {}).get("IPS", ())}
    masks = Masks({"": frozenset(tags)}, Scope())
    stacked: dict[tuple, dict[int, set]] = {}
    for r in [*earlier, entry]:
        current = {name: masks.mask(members) for name, members in r["statistics"].items()}
        rows = {name: [(tuple(f), arm) for f, arm in sums] for name, sums in r.get("sums", {}).items()}
        stack_sums(stacked, current, rows, masks.mask(r.get("subgroups", {}).get("IPS", ())))
    problems = []
    for factors, found in sorted(stacked.items()):
        count = exposed_in(list(found), len(masks.ids))
        if count:
            names = sorted(set().union(*found.values()))
            listed = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            problems.append(
                f"study {ledger['study']}: the sums of {' x '.join(factors)} released in this line and by this "
                f"release together isolate {count} participant(s) (linear combination check; statistics {listed})"
            )
    unchecked = [r["released"] for r in earlier if "sums" not in r]
    if unchecked and "sums" in entry:
        problems.append(
            f"study {ledger['study']}: the releases of {', '.join(unchecked)} were recorded without their sums, so "
            "the linear combination check cannot include them: start a new release line (federated.release_line)"
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
    scope: Scope | None = None,
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
    entry = release_entry(key, study, sets, name, when, scope)
    problems = ledger_problems(ledger, entry, threshold) + (ledger_exposures(ledger, entry) if threshold > 1 else [])
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
