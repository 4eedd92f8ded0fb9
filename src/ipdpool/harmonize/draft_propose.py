"""The draft's proposals: for every variable and outcome a rule kind and the raw columns it would read,
found from column names (several languages), value labels and the values' form (ICD-10 codes, dates,
numbered item sets). The draft leaves each `undetermined` with its proposal: the user confirms it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

import pandas as pd

from ..rawio import RawTable
from .draft_link import SITE_NAMES
from .values import code_keys

HINTS = {
    "arm": r"^arm|group|groep|grupp|ryhm|ruhm|braco|braço|condition|allocat|random.*arm|behandling|interventi|^ips$",
    "age": r"^age|alder|ålder|leeftijd|^ik[aä]|alter|vanus|idade|edad",
    "sex": r"^sex|gender|geslacht|køn|kjønn|kjonn|^k[oö]n$|sukupuoli|geschlecht|sugu|sexo",
    "diagnosis": r"diag|^dx",
    "self_esteem": r"rses|rosenberg|self.?est|itsetunto",
    "empowerment": r"mdes|empower",
    "quality_of_life": r"qol|whoqol|mansa|manchester|livskval|elämänlaatu",
    "depression": r"bdi|hamd|madrs|phq|depress|masennus",
    "negative_symptoms": r"panss_?n|sans|negat",
    "positive_symptoms": r"panss_?p|saps|posit",
    "anxiety": r"bai|gad|anx|ahdist|angst",
    "functioning": r"gaf|whodas|sofas|funct|toimintakyky",
}
RANDOMIZED = re.compile(r"rand|aleat|satunn|inklu|inclu|alloc|start|baseline", re.IGNORECASE)
FOLLOW_UP = re.compile(r"fu|follow|seuranta|jälgi|jalgi|jkp|oppf|besøk|besok|visit|meting|datum|date|pvm|18", re.I)
JOBS = re.compile(r"job|work|employ|arbeid|arbete|baan|banen|ty[oö]|emprego|trabalho|töö|ansæt|anställ", re.I)
DAYS_WORKED = re.compile(r"days?_?work|work.*days|dage|paevad|päevad|arbeitstage|tyopaiv|työpäiv", re.I)
HOURS = re.compile(r"hours|timer|timmar|tunnit|horas|uren", re.I)
WEEKS = re.compile(r"^(week|uge|vecka|viikko|semana|week_?nr)", re.I)
WORKED = re.compile(r"worked|arbetat|arbejdet|gewerkt|työssä|trabalhou", re.I)
ICD10 = re.compile(r"[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?")
NUMBERED = re.compile(r"^(?P<stem>.*?[A-Za-z_])(?P<number>[0-9]{1,2})(?P<suffix>(_[A-Za-z0-9]+)?)$")
BASELINE_SUFFIX = re.compile(r"(_m?0|_bl|_base.*|_t0|_0m)$", re.IGNORECASE)
FOLLOWUP_SUFFIX = re.compile(r"(_m?18|_fu|_t2|_18m)$", re.IGNORECASE)
CHAPTERS = (  # ICD-10 F codes to the schema's diagnosis categories: a starting point the user checks
    (("F20", "F21", "F22", "F23", "F24", "F25", "F28", "F29"), "schizophrenia_spectrum"),
    (("F30", "F31"), "bipolar"),
    (("F32", "F33"), "depression"),
)


@dataclass
class Proposal:
    kind: str
    columns: list[str]  # "table.column"
    sketch: list[str]  # YAML lines (commented in the draft) for the proposed rule
    note: str = ""


@dataclass
class Context:
    tables: dict[str, RawTable]
    participants: str
    many: set[str]  # tables with rows: many
    dates: dict[str, list[str]]  # table -> its date columns
    site: str | None = None  # the participants table's site column when ids are unique only within a site

    def ordered(self) -> list[str]:
        """The participants table first, then the other one-row tables, then long tables."""
        rest = [t for t in self.tables if t != self.participants]
        return [self.participants] + [t for t in rest if t not in self.many] + [t for t in rest if t in self.many]

    def columns(self, pattern: str, tables=None) -> list[tuple[str, str]]:
        regex = re.compile(pattern, re.IGNORECASE)
        found = []
        for table in tables or self.ordered():
            raw = self.tables[table]
            for column in map(str, raw.frame.columns):
                labels = " ".join(map(str, raw.value_labels.get(column, {}).values()))
                if regex.search(column) or (labels and regex.search(labels)):
                    found.append((table, column))
        return found


def is_date_column(values: pd.Series, formats) -> bool:
    from .values import parse_dates

    present = values.dropna()
    if present.empty:
        return False
    if present.map(lambda v: isinstance(v, (dt.date, dt.datetime, pd.Timestamp))).all():
        return True
    text = present.astype(str).str.strip()
    return any(not parse_dates(text, f)[1].any() for f in formats)


def _icd10_column(context: Context) -> tuple[str, str] | None:
    for table in context.ordered():
        for column in map(str, context.tables[table].frame.columns):
            keys = code_keys(context.tables[table].frame[column]).dropna()
            keys = keys[keys != ""]
            if len(keys) and keys.str.fullmatch(ICD10.pattern).mean() >= 0.9:
                return table, column
    return None


def icd10_map(values: pd.Series) -> dict[str, str]:
    codes = sorted(set(code_keys(values).dropna()) - {""})
    return {code: next((c for prefixes, c in CHAPTERS if code[:3] in prefixes), "other") for code in codes}


def _one(table_column: tuple[str, str] | None) -> list[str]:
    return [f"{table_column[0]}.{table_column[1]}"] if table_column else []


def propose_variable(variable: str, context: Context) -> Proposal:
    home = context.participants
    if variable == "site":
        site = context.site or _site(context)
        if site is None:
            return Proposal("constant", [], [], "no site column: a single-site trial names its site")
        return Proposal("copy", [f"{home}.{site}"], [], "ids unique within a site" if context.site else "")
    if variable in ("arm", "arm_original"):
        found = context.columns(HINTS["arm"], [home])[:1]
        return Proposal("recode" if variable == "arm" else "copy", _one(found[0] if found else None), [])
    if variable == "age":
        return Proposal("copy", _one((context.columns(HINTS["age"], [home]) or [None])[0]), [])
    if variable == "sex":
        return Proposal("recode", _one((context.columns(HINTS["sex"], [home]) or [None])[0]), [])
    if variable == "diagnosis":
        return _diagnosis(context)
    if variable == "followup_months":
        return _followup_months(context)
    return _employed(context)


def _site(context: Context) -> str | None:
    raw = context.tables[context.participants]
    for column in map(str, raw.frame.columns):
        distinct = code_keys(raw.frame[column]).dropna().nunique()
        if SITE_NAMES.search(column) and 2 <= distinct <= 50:
            return column
    return None


def _diagnosis(context: Context) -> Proposal:
    icd = _icd10_column(context)
    if icd:
        table, column = icd
        mapping = icd10_map(context.tables[table].frame[column])
        sketch = ["diagnosis:", "  recode:", f"    table: {table}", f"    column: {column}", "    map:"]
        sketch += [f"      {code}: {category}   # ICD-10, check" for code, category in mapping.items()]
        return Proposal("recode", [f"{table}.{column}"], sketch, "ICD-10 codes")
    found = context.columns(HINTS["diagnosis"])
    return Proposal("recode", _one(found[0] if found else None), [])


def _date_pick(context: Context, table: str, pattern: re.Pattern, exclude=()) -> str | None:
    dates = [c for c in context.dates.get(table, []) if c not in exclude]
    named = [c for c in dates if pattern.search(c)]
    return (named or dates or [None])[0]


def _followup_months(context: Context) -> Proposal:
    home = context.participants
    start = _date_pick(context, home, RANDOMIZED)
    if start is None:
        return Proposal("months_between", [], [])
    episodes = _episode_table(context)
    end, end_table = None, None
    for table in context.ordered()[1:]:
        if table == (episodes[0] if episodes else None):
            continue
        end = _date_pick(context, table, FOLLOW_UP)
        if end:
            end_table = table
            break
    if end is None:  # a wide file: the follow-up date beside the baseline one
        end = next((c for c in context.dates.get(home, []) if c != start and FOLLOWUP_SUFFIX.search(c)), None)
        end_table = home if end else None
    if end is None:
        return Proposal("months_between", [f"{home}.{start}"], [])
    sketch = [
        "followup_months:",
        "  months_between:",
        f"    start: {{table: {home}, column: {start}}}",
        f"    end: {{table: {'followup_visit' if end_table in context.many else end_table}, column: {end}}}",
    ]
    note = ""
    if end_table in context.many:
        note = "visit dates in a long table: select the 18-month visit with a window"
        sketch = [
            "selections:",
            "  followup_visit:",
            f"    from: {end_table}",
            f"    visit_window: {{date: {end}, anchor: {{table: {home}, column: {start}}},",
            "                   months: [15, 21], target: 18}",
            *sketch,
        ]
    return Proposal("months_between", [f"{home}.{start}", f"{end_table}.{end}"], sketch, note)


def _episode_table(context: Context) -> tuple[str, str, str] | None:
    """A long table of dated episodes (start and end dates): named like jobs, or without scores."""
    for table in context.ordered():
        dates = context.dates.get(table, [])
        if table in context.many and len(dates) >= 2:
            others = len(context.tables[table].frame.columns) - len(dates)
            if JOBS.search(table) or others <= 2:
                return table, dates[0], dates[1]
    return None


def _employed(context: Context) -> Proposal:
    home = context.participants
    episodes = _episode_table(context)
    if episodes:
        table, start, end = episodes
        anchor = _date_pick(context, home, RANDOMIZED)
        sketch = ["employed:", "  employment_episodes:", f"    table: {table}", f"    start: {start}",
                  f"    end: {end}", f"    anchor: {{table: {home}, column: {anchor}}}",
                  "    months: 18   # or days: N, or months: 18 with month_days (config/README.md 5.7)"]  # fmt: skip
        return Proposal("employment_episodes", [f"{table}.{start}", f"{table}.{end}"], sketch, "job episodes")
    days = context.columns(DAYS_WORKED.pattern)
    if days:
        return Proposal("employment_days", _one(days[0]), [])
    for table in context.many:
        hours, weeks = context.columns(HOURS.pattern, [table]), context.columns(WEEKS.pattern, [table])
        if hours and weeks:
            return Proposal("employment_hours", [f"{table}.{weeks[0][1]}", f"{table}.{hours[0][1]}"], [])
    waves = context.columns(WORKED.pattern)
    if waves:
        return Proposal("employment_waves", [f"{t}.{c}" for t, c in waves], [])
    return Proposal("employment_episodes", [], [])


def item_sets(raw: RawTable, pattern: str) -> list[list[str]]:
    """Numbered item columns (stem 1..k with the same suffix, k >= 3) whose stem matches `pattern`."""
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for column in map(str, raw.frame.columns):
        match = NUMBERED.match(column)
        if match and re.search(pattern, match["stem"], re.IGNORECASE):
            groups.setdefault((match["stem"], match["suffix"]), []).append((int(match["number"]), column))
    found = []
    for items in groups.values():
        numbers = sorted(n for n, _ in items)
        if len(items) >= 3 and numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            found.append([c for _, c in sorted(items)])
    return found


def propose_outcome(outcome: str, context: Context) -> Proposal:
    pattern = HINTS.get(outcome, re.escape(outcome))
    sets = [(table, items) for table in context.ordered() for items in item_sets(context.tables[table], pattern)]
    if sets:
        return _item_sum(outcome, sets)
    found = [
        (t, c)
        for t, c in context.columns(pattern)
        if not NUMBERED.match(c) or not item_sets(context.tables[t], pattern)
    ]
    if not found:
        return Proposal("not_collected", [], [])
    baseline = next(((t, c) for t, c in found if not FOLLOWUP_SUFFIX.search(c)), found[0])
    followup = next(
        ((t, c) for t, c in found if (t, c) != baseline and (t != baseline[0] or FOLLOWUP_SUFFIX.search(c))), None
    )
    if baseline[0] in context.many:
        followup = baseline  # a long table: the same column at the baseline and 18-month visits (selections)
    return Proposal("copy", sorted({f"{t}.{c}" for t, c in (baseline, followup) if t}), [])


def _item_sum(outcome: str, sets: list[tuple[str, list[str]]]) -> Proposal:
    baseline = next(((t, items) for t, items in sets if not FOLLOWUP_SUFFIX.search(items[0])), sets[0])
    followup = next(((t, items) for t, items in sets if (t, items) != baseline), None)
    k = len(baseline[1])
    need = math.ceil(0.8 * k)
    sketch = [f"{outcome}:", "  instrument: TODO", "  range: [TODO, TODO]", "  direction: same   # or reversed"]
    columns = []
    for part, found in (("baseline", baseline), ("followup", followup)):
        if found:
            table, items = found
            sketch.append(
                f"  {part}: {{item_sum: {{table: {table}, columns: [{', '.join(items)}], min_answered: {need}}}}}"
            )
            columns += [f"{table}.{c}" for c in items]
    return Proposal("item_sum", columns, sketch, f"{k} numbered items, prorated when at least {need} are answered")
