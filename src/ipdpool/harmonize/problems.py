"""Problems found while checking or applying a study's rules, all reported at once."""

from __future__ import annotations

from dataclasses import dataclass, field

SHOW = 5  # offending values / rows listed per problem


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
            text += "; values " + ", ".join(repr(v) for v in self.values[:SHOW]) + (" ..." if len(self.values) > SHOW else "")
        if self.rows:
            text += "; rows " + ", ".join(str(r) for r in self.rows[:SHOW]) + (f" ... ({len(self.rows)} rows)" if len(self.rows) > SHOW else "")
        return text


@dataclass
class Problems:
    study: str
    items: list[Problem] = field(default_factory=list)

    def add(self, file: str, variable: str, message: str, rows=(), values=()) -> None:
        plain = tuple(v.item() if hasattr(v, "item") else v for v in values)  # numpy scalars print as np.float64(...)
        problem = Problem(self.study, file, variable, message, tuple(int(r) for r in rows), plain)
        if problem not in self.items:  # e.g. one unreadable workbook declared as several sheet tables
            self.items.append(problem)

    def __bool__(self) -> bool:
        return bool(self.items)


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
