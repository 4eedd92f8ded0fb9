"""The draft's id decisions: which table lists the participants, which column holds the id in every
table, and the `id_type`, `id_format` and `site` that link the most rows across tables.

Every combination is tried on the data (a trial has a handful of tables and id candidates): ids written
"FI-001" in one file and 1 in another link only with `extract`, ids unique within a centre only with the
centre as `site`. Messages describe ids by their shape (`AA-999`), never by value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from ..rawio import RawTable
from .values import code_keys, common_shapes, normalize_ids

EXTRACT = {"extract": "([0-9]+)"}
ID_NAMES = re.compile(
    r"^(id|pid|subject|record_?id|study_?id|.*_id|id_.*|tunnus|respnr|løbenr|lobenr|lopnr|löpnr|deelnemer.*|nr|"
    r"nummer|deltager.*|deltaker.*|codigo|código|code|kood|koodi|participant.*|patient.*|case)$",
    re.IGNORECASE,
)
SITE_NAMES = re.compile(
    r"site|cent(re|er|ro|rum)|senter|keskus|locati|^by$|kunta|paikka|^ort$|stad|city|clinic|klinik|sairaala",
    re.IGNORECASE,
)
CANDIDATES = 3  # id columns tried per table


@dataclass(frozen=True)
class Choice:
    """One way of reading a table's participant keys."""

    column: str
    id_type: str
    id_format: dict | None
    site: str | None
    keys: pd.Series = field(compare=False, hash=False, repr=False)

    @property
    def unique(self) -> bool:
        present = self.keys.dropna()
        return len(present) > 0 and present.is_unique and len(present) >= 0.9 * len(self.keys)


@dataclass
class Linkage:
    participants: str
    id_type: str
    choices: dict[str, Choice]  # table -> how its keys are read
    matched: dict[str, int]  # table -> rows whose participant is in the participants table

    def rows_many(self, table: str) -> bool:
        return bool(self.choices[table].keys.dropna().duplicated().any())


def id_candidates(raw: RawTable) -> list[str]:
    """Columns named like ids, in order, then the first column: at most CANDIDATES."""
    columns = [str(c) for c in raw.frame.columns]
    named = [c for c in columns if ID_NAMES.match(c) and not SITE_NAMES.search(c)]
    return list(dict.fromkeys(named + columns[:1]))[:CANDIDATES]


def site_column(raw: RawTable, id_column: str) -> str | None:
    return next((str(c) for c in raw.frame.columns if str(c) != id_column and SITE_NAMES.search(str(c))), None)


def key_options(values: pd.Series) -> list[tuple[str, dict | None, pd.Series]]:
    """(id_type, id_format, keys) under which the column's ids are valid: integers as written, integers
    extracted from text ("FI-001", "no0001", "PT/001"), and text."""
    present = values.notna() & code_keys(values).ne("")
    options = []
    plain, bad = normalize_ids(values, "integer")
    if not (bad & present).any():
        options.append(("integer", None, plain))
    else:
        extracted, bad = normalize_ids(values, "integer", EXTRACT)
        one_number = code_keys(values)[present].str.fullmatch(r"\D*[0-9]+\D*").all()
        if one_number and not (bad & present).any():
            options.append(("integer", EXTRACT, extracted))
    options.append(("text", None, normalize_ids(values, "text")[0]))
    return options


def choices(raw: RawTable) -> list[Choice]:
    found = []
    for column in id_candidates(raw):
        site = site_column(raw, column)
        sites = code_keys(raw.frame[site]) if site else None
        for id_type, id_format, keys in key_options(raw.frame[column]):
            found.append(Choice(column, id_type, id_format, None, keys))
            if site:
                scoped = sites.str.cat(keys, sep="/").where(keys.notna() & sites.notna(), None)
                found.append(Choice(column, id_type, id_format, site, scoped))
    return found


def _best_match(options: list[Choice], participant_keys: set, id_type: str, scoped: bool) -> tuple[Choice, int]:
    best, best_score = None, None
    for rank, choice in enumerate(options):
        if choice.id_type != id_type or bool(choice.site) != scoped:
            continue
        matched = int(choice.keys.isin(participant_keys).sum())
        score = (matched, choice.id_format is None, -rank)
        if best_score is None or score > best_score:
            best, best_score = choice, score
    return best, (best_score[0] if best_score else -1)


def link(tables: dict[str, RawTable], preferred: dict[str, int]) -> Linkage | None:
    """The participants table, id type and every table's id choice linking the most rows; ties go to
    the table `preferred` ranks higher (one with an arm column), then ids as written (no id_format),
    then integers, then ids without site. None when no table has unique ids."""
    options = {name: choices(raw) for name, raw in tables.items()}
    best, best_score = None, None
    for name in tables:
        for anchor in options[name]:
            if not anchor.unique:
                continue
            keys = set(anchor.keys.dropna())
            picks, matched = {name: anchor}, {name: int(anchor.keys.notna().sum())}
            for other in tables:
                if other == name:
                    continue
                pick, count = _best_match(options[other], keys, anchor.id_type, bool(anchor.site))
                if pick is None:
                    break
                picks[other], matched[other] = pick, count
            else:
                score = (
                    sum(matched.values()),
                    preferred.get(name, 0),
                    all(pick.id_format is None for pick in picks.values()),  # ids as written where they link
                    anchor.id_type == "integer",
                    anchor.site is None,
                    len(tables[name].frame),
                )
                if best_score is None or score > best_score:
                    best, best_score = Linkage(name, anchor.id_type, picks, matched), score
    return best


def linkage_report(linkage: Linkage, tables: dict[str, RawTable], files: dict[str, str]) -> list[str]:
    """One line per table: rows matched to a participant, and for tables not fully linked why (id shapes)."""
    lines = []
    home = linkage.participants
    home_ids = tables[home].frame[linkage.choices[home].column]
    for name, raw in tables.items():
        choice, n = linkage.choices[name], len(raw.frame)
        matched = linkage.matched[name]
        rate = matched / n if n else 1.0
        line = f"linkage: {name} ({files[name]}): {matched} of {n} rows ({rate:.0%}) match a participant"
        if name == home:
            line = f"linkage: {name} ({files[name]}): participants table, {matched} ids"
        elif matched < n:
            unmatched = raw.frame[choice.column][~choice.keys.isin(set(linkage.choices[home].keys.dropna()))]
            line += (
                f"; the others have ids like {common_shapes(unmatched)} in {files[name]}, participants ids "
                f"look like {common_shapes(home_ids)} in {files[home]}: check `id_format` (e.g. "
                '`id_format: {extract: "([0-9]+)"}`), `id_type` and `site` (config/README.md, section 5.3)'
            )
        lines.append(line)
    return lines
