"""The closed vocabulary of harmonization rules.

Each rule turns raw columns into one harmonized variable aligned to the study's
participants and returns a log entry saying what it did. Problems (unknown codes,
unparseable numbers or dates, out-of-range scores) are collected, not raised, so
that every problem of a study is reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .tables import DAYS_PER_MONTH, SourceValues, StudyData
from .values import code_key, code_keys, parse_dates, parse_numbers

NUMERIC = ("float", "integer")
NUMBER_FORM = (
    "(plain decimals with decimal mark {decimal!r}; no NaN, inf, overflow, underscores or thousands separators)"
)


@dataclass
class RuleResult:
    values: pd.Series
    rule: str
    status: str = "harmonized"  # harmonized | not_collected | undetermined
    source: str = ""
    rows_in: int = 0
    nonmissing_in: int = 0
    recoded: int = 0
    set_missing: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    before: pd.Series | None = None  # raw values after missing codes, for before/after plots


def empty(data: StudyData) -> pd.Series:
    return pd.Series(np.nan, index=data.participants, dtype=object)


def from_source(src: SourceValues, values: pd.Series, rule: str, **extra) -> RuleResult:
    return RuleResult(
        values,
        rule,
        source=f"{src.file}: {src.column}",
        rows_in=src.present,
        nonmissing_in=src.nonblank,
        set_missing=dict(src.set_missing),
        before=src.values,
        **extra,
    )


def numbers(data: StudyData, src: SourceValues, table: str, variable: str) -> pd.Series:
    decimal = data.one_row_table[table].spec.get("decimal", ".")
    parsed, bad = parse_numbers(src.values, decimal)
    if bad.any():
        data.problems.add(
            src.file,
            variable,
            f"values in {src.column!r} that are not numbers {NUMBER_FORM.format(decimal=decimal)}; "
            "add them to `missing` if they mean unknown",
            rows=data.rows_of(table, bad),
            values=tuple(sorted(set(src.values[bad].astype(str)))),
            column=src.column,
            cells=src.values,
        )
    return parsed


# ------------------------------------------------------------ value rules


def copy_rule(data: StudyData, variable: str, spec: dict, kind: str) -> RuleResult | None:
    src = data.source(spec, variable)
    if src is None:
        return None
    if kind in NUMERIC:
        return from_source(src, numbers(data, src, spec["table"], variable), "copy")
    return from_source(src, code_keys(src.values), "copy")


def recode_rule(data: StudyData, variable: str, spec: dict, kind: str) -> RuleResult | None:
    src = data.source(spec, variable)
    if src is None:
        return None
    mapping = {code_key(k): v for k, v in spec["map"].items()}
    keys = code_keys(src.values)
    unknown = keys.notna() & ~keys.isin(mapping)
    if unknown.any():
        counts = keys[unknown].value_counts().sort_index()
        data.problems.add(
            src.file,
            variable,
            f"codes in {src.column!r} missing from the recode map (the map must list every code)",
            values=tuple(f"{code} (n={n})" for code, n in counts.items()),
            column=src.column,
            cells=src.values,
        )
    recoded = keys.map(mapping).where(keys.notna(), None)
    result = from_source(src, recoded, "recode", recoded=int(recoded.notna().sum()))
    to_missing = int((keys.notna() & keys.isin([k for k, v in mapping.items() if v is None])).sum())
    if to_missing:
        result.set_missing["recoded to missing"] = to_missing
    if kind in NUMERIC:
        not_numbers = [v for v in spec["map"].values() if v is not None and not isinstance(v, (int, float))]
        if not_numbers:
            data.problems.add(
                "(rule file)",
                variable,
                f"recode map values must be numbers for a {kind} variable",
                values=tuple(not_numbers),
            )
        result.values = pd.to_numeric(recoded, errors="coerce")
    return result


def linear_rule(data: StudyData, variable: str, spec: dict, kind: str) -> RuleResult | None:
    src = data.source(spec, variable)
    if src is None:
        return None
    values = numbers(data, src, spec["table"], variable) * spec["scale"] + spec["offset"]
    return from_source(src, values, f"linear (x * {spec['scale']} + {spec['offset']})")


def months_between_rule(data: StudyData, variable: str, spec: dict, kind: str) -> RuleResult:
    start, end = data.dates(spec["start"], variable), data.dates(spec["end"], variable)
    months = (end - start).dt.days / spec.get("month_days", DAYS_PER_MONTH)
    backwards = months < 0
    if backwards.any():
        end_file = data.one_row_file.get(spec["end"]["table"], spec["end"]["table"])
        data.problems.add(
            end_file,
            variable,
            f"{spec['end']['column']!r} is before {spec['start']['column']!r} (follow-up before baseline)",
            values=(f"{int(backwards.sum())} participants",),
        )
    source = f"{spec['start']['table']}.{spec['start']['column']} -> {spec['end']['table']}.{spec['end']['column']}"
    return RuleResult(
        months.astype(float),
        "months_between",
        source=source,
        rows_in=int(end.notna().sum()),
        nonmissing_in=int(end.notna().sum()),
    )


def constant_rule(data: StudyData, variable: str, value, kind: str) -> RuleResult:
    if kind in NUMERIC and not isinstance(value, (int, float)):
        data.problems.add("(rule file)", variable, f"constant {value!r} is not a number, but {variable} is {kind}")
        value = np.nan
    return RuleResult(pd.Series(value, index=data.participants, dtype=object), "constant", source=f"constant {value!r}")


VALUE_RULES = {
    "copy": copy_rule,
    "recode": recode_rule,
    "linear": linear_rule,
    "months_between": months_between_rule,
    "constant": constant_rule,
}


def apply_value_rule(data: StudyData, variable: str, rule: dict, kind: str) -> RuleResult | None:
    ((name, spec),) = rule.items()
    if name == "not_collected":
        return RuleResult(empty(data), "not_collected", status="not_collected")
    if name == "undetermined":
        return RuleResult(empty(data), "undetermined", status="undetermined", notes=[spec])
    if name in EMPLOYMENT_RULES:
        return EMPLOYMENT_RULES[name](data, variable, spec)
    return VALUE_RULES[name](data, variable, spec, kind)


# ------------------------------------------------------------ employment during the follow-up window


def employment_days(data: StudyData, variable: str, spec: dict) -> RuleResult | None:
    src = data.source(spec, variable)
    if src is None:
        return None
    days = numbers(data, src, spec["table"], variable)
    if (days < 0).any():
        data.problems.add(
            src.file,
            variable,
            f"negative days worked in {src.column!r}",
            values=tuple(sorted(days[days < 0].unique())),
            column=src.column,
            cells=src.values,
        )
    return from_source(src, (days > 0).astype(float).where(days.notna()), "employment_days (> 0 days = employed)")


def employment_hours(data: StudyData, variable: str, spec: dict) -> RuleResult | None:
    found = data.long_table(spec["table"], variable, (spec["week"], spec["hours"]))
    if found is None:
        return None
    table, rows = found
    decimal = table.spec.get("decimal", ".")
    weeks, bad_weeks = parse_numbers(rows[spec["week"]], decimal)
    hours, bad_hours = parse_numbers(rows[spec["hours"]], decimal)
    for column, bad, values in (
        (spec["week"], bad_weeks, rows[spec["week"]]),
        (spec["hours"], bad_hours, rows[spec["hours"]]),
    ):
        if bad.any():
            data.problems.add(
                table.file,
                variable,
                f"values in {column!r} that are not numbers {NUMBER_FORM.format(decimal=decimal)}",
                rows=[int(r) + 1 for r in np.flatnonzero(table.position >= 0)[bad.to_numpy()]],
                values=tuple(sorted(set(values[bad.to_numpy()].astype(str)))),
                column=column,
                cells=values,
            )
    if (hours < 0).any():
        data.problems.add(
            table.file,
            variable,
            f"negative hours in {spec['hours']!r}",
            values=tuple(sorted(hours[hours < 0].unique())),
            column=spec["hours"],
            cells=rows[spec["hours"]],
        )
    low, high = spec["window_weeks"]
    if low > high:
        data.problems.add("(rule file)", variable, f"window_weeks [{low}, {high}] runs backwards")
    in_window = (weeks >= low) & (weeks <= high)
    position = data.participants.get_indexer(rows.index)
    worked = data.any_per_participant(position, in_window & (hours > 0))
    logged = data.any_per_participant(position, in_window)
    # Without rows in the window a participant is known not to have worked only if the log covers everyone.
    fallback = 0.0 if spec["absent_means_not_employed"] else np.nan
    values = pd.Series(np.where(logged, worked.astype(float), fallback), index=data.participants)
    notes = [
        f"{int(((weeks < low) | (weeks > high)).sum())} log rows outside weeks {low}-{high} ignored",
        f"{int((hours == 0).sum())} rows with 0 hours",
    ]
    return RuleResult(
        values,
        f"employment_hours (any week {low}-{high} with hours > 0)",
        source=f"{table.file}: {spec['week']}, {spec['hours']}",
        rows_in=len(rows),
        nonmissing_in=int(hours.notna().sum()),
        notes=notes,
    )


def employment_waves(data: StudyData, variable: str, spec: dict) -> RuleResult | None:
    """Answers to "worked since the last assessment" at each wave.

    A blank or absent answer is a missed wave (the next answer covers the gap); an
    `unknown` answer leaves its period uncovered. 1 if any wave says yes; 0 if the
    last wave says no and no wave says unknown; otherwise missing.
    """
    yes, no = {code_key(v) for v in spec["yes"]}, {code_key(v) for v in spec["no"]}
    unknown = {code_key(v) for v in spec.get("unknown", [])}
    answers, sources, set_missing = [], [], {}
    for wave in spec["waves"]:
        src = data.source(wave, variable)
        if src is None:
            return None
        keys = code_keys(src.values)
        other = keys.notna() & ~keys.isin(yes | no | unknown)
        if other.any():
            data.problems.add(
                src.file,
                variable,
                f"answers in {src.column!r} that are not listed as yes {sorted(yes)}, no {sorted(no)} "
                f"or unknown {sorted(unknown)}",
                values=tuple(sorted(set(keys[other]))),
                column=src.column,
                cells=src.values,
            )
        answers.append(keys)
        sources.append(f"{src.file}: {src.column}")
        for reason, n in src.set_missing.items():
            set_missing[reason] = set_missing.get(reason, 0) + n
    frame = pd.concat(answers, axis=1)
    any_yes = frame.isin(yes).any(axis=1)
    all_no = ~frame.isin(unknown).any(axis=1) & frame.iloc[:, -1].isin(no)
    values = pd.Series(np.where(any_yes, 1.0, np.where(all_no, 0.0, np.nan)), index=data.participants)
    notes = [f"{int(frame.isin(unknown).sum().sum())} unknown answers"]
    return RuleResult(
        values,
        "employment_waves (any yes = 1; last wave no and no unknown answer = 0)",
        source="; ".join(sources),
        rows_in=int(frame.notna().any(axis=1).sum()),
        nonmissing_in=int(frame.notna().sum().sum()),
        set_missing=set_missing,
        notes=notes,
    )


def employment_episodes(data: StudyData, variable: str, spec: dict) -> RuleResult | None:
    found = data.long_table(spec["table"], variable, (spec["start"], spec["end"]))
    if found is None:
        return None
    table, rows = found
    all_rows = len(rows)
    if "where" in spec:
        rows = data.filter_rows(rows, spec["where"], table, variable)
    date_format = table.spec.get("date_format")
    start, bad_start = parse_dates(rows[spec["start"]], date_format)
    end, bad_end = parse_dates(rows[spec["end"]], date_format)
    if bad_start.any() or bad_end.any() or start.isna().any():
        shown = tuple(rows[spec["start"]][(bad_start | start.isna()).to_numpy()].astype(str).unique()) + tuple(
            rows[spec["end"]][bad_end.to_numpy()].astype(str).unique()
        )
        data.problems.add(
            table.file,
            variable,
            "episode dates missing or not parseable",
            values=shown,
            column=spec["start"],
            cells=pd.concat([rows[spec["start"]], rows[spec["end"]]]),
        )
    backwards = end.notna() & (end < start)
    if backwards.any():
        data.problems.add(
            table.file,
            variable,
            f"episodes ending before they start ({spec['end']!r} < {spec['start']!r})",
            values=(f"{int(backwards.sum())} episodes",),
        )
    anchor = data.dates(spec["anchor"], variable)
    window_end, window = episode_window_end(anchor, spec)
    episode_anchor = anchor.reindex(rows.index)
    episode_end = window_end.reindex(rows.index)
    overlaps = (start.to_numpy() <= episode_end.to_numpy()) & (
        end.isna().to_numpy() | (end.to_numpy() >= episode_anchor.to_numpy())
    )
    worked = data.any_per_participant(data.participants.get_indexer(rows.index), overlaps)
    values = pd.Series(worked.astype(float), index=data.participants).where(anchor.notna())
    notes = [
        f"{all_rows - len(rows)} episodes excluded by `where`",
        f"{int(end.isna().sum())} ongoing episodes (no end date)",
    ]
    return RuleResult(
        values,
        f"employment_episodes (overlap with [anchor, anchor + {window}])",
        source=f"{table.file}: {spec['start']}, {spec['end']}",
        rows_in=all_rows,
        nonmissing_in=len(rows),
        notes=notes,
    )


def episode_window_end(anchor: pd.Series, spec: dict) -> tuple[pd.Series, str]:
    """Last day of the window: calendar months, months of `month_days` days, or days (partial days do not count)."""
    if "days" in spec:
        return anchor + pd.to_timedelta(spec["days"], unit="D"), f"{spec['days']} days"
    if "month_days" in spec:
        days = int(np.floor(spec["months"] * spec["month_days"]))
        return anchor + pd.to_timedelta(days, unit="D"), f"{spec['months']} x {spec['month_days']} days"
    return anchor + pd.DateOffset(months=spec["months"]), f"{spec['months']} months"


EMPLOYMENT_RULES = {
    "employment_days": employment_days,
    "employment_hours": employment_hours,
    "employment_waves": employment_waves,
    "employment_episodes": employment_episodes,
}


# ------------------------------------------------------------ outcome scores


def item_sum(data: StudyData, variable: str, spec: dict) -> RuleResult | None:
    items = []
    result = None
    for column in spec["columns"]:
        src = data.source({"table": spec["table"], "column": column, "missing": spec.get("missing", [])}, variable)
        if src is None:
            return None
        items.append(numbers(data, src, spec["table"], variable))
        if result is None:
            result = from_source(src, None, "")
        for reason, n in src.set_missing.items():
            result.set_missing[reason] = result.set_missing.get(reason, 0) + n
    frame = pd.concat(items, axis=1)
    answered = frame.notna().sum(axis=1)
    k, need = len(spec["columns"]), spec["min_answered"]
    if need > k:
        data.problems.add("(rule file)", variable, f"min_answered {need} is more than the {k} items")
    values = (frame.mean(axis=1) * k).where(answered >= need)
    result.values = values
    result.before = frame.sum(axis=1, min_count=1)
    result.rule = f"item_sum of {k} items, prorated when at least {need} answered"
    result.source = f"{result.source.split(':')[0]}: {', '.join(spec['columns'])}"
    result.nonmissing_in = int(frame.notna().sum().sum())
    prorated = int(((answered >= need) & (answered < k)).sum())
    too_few = int(((answered > 0) & (answered < need)).sum())
    result.notes = [f"{prorated} prorated", f"{too_few} with too few items answered (set missing)"]
    if too_few:
        result.set_missing["too few items answered"] = too_few
    return result


def apply_score_rule(data: StudyData, variable: str, rule: dict) -> RuleResult | None:
    ((name, spec),) = rule.items()
    if name == "item_sum":
        return item_sum(data, variable, spec)
    return VALUE_RULES[name](data, variable, spec, "float")
