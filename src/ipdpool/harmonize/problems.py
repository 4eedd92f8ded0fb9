"""Problems found while checking or applying a study's rules, all reported at once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

SHOW = 5  # offending values / rows listed per problem
# Column names of identifiers and free text in the trials' languages (en, da, sv, nl, de, fr).
IDENTIFIER_NAME = re.compile(
    r"name|navn|namn|naam|surname|ssn|social.?sec|cpr|bsn|person.?n|national|passport|birth|dob|f[oøö]dsel|geboort|geburt|"
    r"address|adress|street|phone|telefo|e.?mail|comment|kommentar|opmerking|remark|note|free.?text|fritekst",
    re.IGNORECASE,
)
NEAR_UNIQUE = 0.5  # share of distinct values among non-missing cells
MIN_CELLS = 20  # fewer cells cannot be judged near-unique
ID_DIGITS = 6  # numbers with this many digits or more may be national ids, phone numbers or record numbers


@dataclass(frozen=True)
class Problem:
    study: str
    file: str
    variable: str
    message: str
    rows: tuple[int, ...] = ()
    values: tuple = ()

    def __str__(self) -> str:
        text = f"study {self.study}, file {self.file}, variable {self.variable}: {self.message}"
        if self.values:
            text += (
                "; values "
                + ", ".join(repr(v) for v in self.values[:SHOW])
                + (" ..." if len(self.values) > SHOW else "")
            )
        if self.rows:
            text += (
                "; rows "
                + ", ".join(str(r) for r in self.rows[:SHOW])
                + (f" ... ({len(self.rows)} rows)" if len(self.rows) > SHOW else "")
            )
        return text


@dataclass
class Problems:
    study: str
    items: list[Problem] = field(default_factory=list)

    def add(
        self,
        file: str,
        variable: str,
        message: str,
        rows=(),
        values=(),
        column: str | None = None,
        cells: pd.Series | None = None,
    ) -> None:
        """`values` come from the raw `column` (all its `cells`, declared by the rule for `variable`): they
        are shown only when that column does not look like identifiers; otherwise only their number."""
        why = identifier_like(column, cells) if column is not None else None
        if why and values:
            message += f"; {len(values)} distinct value{'s' if len(values) != 1 else ''} not shown ({why})"
            values = ()
        plain = tuple(v.item() if hasattr(v, "item") else v for v in values)  # numpy scalars print as np.float64(...)
        problem = Problem(self.study, file, variable, message, tuple(int(r) for r in rows), plain)
        if problem not in self.items:  # e.g. one unreadable workbook declared as several sheet tables
            self.items.append(problem)

    def __bool__(self) -> bool:
        return bool(self.items)


def identifier_like(column: str, cells: pd.Series | None) -> str | None:
    """Why values of this column must not appear in a message (names, ids, birth dates, free text), or None.

    Named like an identifier; or near-unique text, dates or long numbers (ages, scores and codes
    repeat; names, national ids, birth dates and comments hardly do)."""
    if IDENTIFIER_NAME.search(str(column)):
        return f"column {column!r} is named like an identifier or free text"
    why = identifier_values(cells) if cells is not None else None
    return f"column {column!r} {why}" if why else None


def identifier_values(cells: pd.Series) -> str | None:
    text = pd.Series(cells).dropna().astype(str).str.strip()
    text = text[text != ""]
    if len(text) < MIN_CELLS:
        return None
    distinct_text = pd.Series(text.unique())  # parsed once per distinct text: codes and sites repeat
    numbers = pd.to_numeric(distinct_text, errors="coerce")
    long_numbers = numbers.abs().ge(10 ** (ID_DIGITS - 1)).any()
    distinct = len(distinct_text)
    if distinct >= NEAR_UNIQUE * len(text) and (numbers.isna().any() or long_numbers):
        return f"looks like identifiers: {distinct} distinct values in {len(text)} cells"
    return None


class HarmonizationError(Exception):
    """Every problem found in a study's rules or raw data; nothing was written."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = [f"{len(problems)} problem(s) in the harmonization rules or raw data:"] + [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


def data_rows(index) -> list[int]:
    """1-based data row numbers (the first row after any header is row 1)."""
    return [int(i) + 1 for i in index]


def column_list(columns, show: int = 15) -> str:
    """The columns a table has, shortened for wide tables."""
    names = [str(c) for c in columns]
    return repr(names[:show])[:-1] + (f", ... ({len(names)} columns)]" if len(names) > show else "]")
