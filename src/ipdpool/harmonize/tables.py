"""A study's raw tables linked to its randomized participants.

Every table names the column holding the trial's participant id (and the site
column where ids are unique only within a site). Ids are compared after
normalization, so "007", " 7" and 7.0 are one participant when ids are integers.
Long tables (rows: many) become one row per participant through selections.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..rawio import RawDataError, RawTable, read_table
from .problems import Problems, column_list, data_rows
from .values import code_key, code_keys, common_shapes, key_list, normalize_ids, parse_dates, unique_values

DAYS_PER_MONTH = 365.25 / 12
ROW = "\0row"  # a column name no raw file can hold (NUL): the raw row number inside selections


@dataclass
class LinkedTable:
    name: str
    spec: dict
    raw: RawTable
    keys: pd.Series  # participant key per raw row (None where the id is missing or invalid)
    ids: pd.Series  # the trial's own id, normalized, per raw row
    reformatted: int = 0  # rows whose id `id_format` changed
    position: np.ndarray | None = None  # participant (position in the participant index) per raw row; -1: none

    @property
    def file(self) -> str:
        sheet = self.spec.get("sheet")
        return f"{self.spec['file']} [{sheet}]" if sheet else self.spec["file"]

    @property
    def frame(self) -> pd.DataFrame:
        return self.raw.frame


@dataclass
class SourceValues:
    """A source column aligned to the participants, with the raw cells set missing by code."""

    values: pd.Series  # object values indexed by participant key; NaN/None where missing
    file: str
    column: str
    present: int  # participants with a row in the source table
    nonblank: int  # cells with a value before missing codes were applied
    set_missing: dict[str, int]  # reason -> number of cells made missing


class StudyData:
    def __init__(self, rules: dict, problems: Problems, base_dir: Path = Path("."), secret: bytes = b""):
        self.rules = rules
        self.secret = secret  # the pseudonym key: a file holding it is never read as a table
        self.study = rules["study"]
        self.problems = problems
        self.raw_dir = Path(base_dir) / rules["raw_dir"]
        self.id_type = rules["participants"]["id_type"]
        self.tables: dict[str, LinkedTable] = {}
        self.one_row: dict[str, pd.DataFrame] = {}
        self.one_row_file: dict[str, str] = {}
        self.one_row_table: dict[str, LinkedTable] = {}
        self.warnings: list[str] = []  # e.g. likely mojibake; logged, they do not stop the study
        self.unreadable: list[str] = []  # files refused by the reader (damaged, missing, wrong format)
        self.empty: dict[str, str] = {}  # "table <name>" or "selection <name>" without rows -> its file
        self.indexers: dict[str, np.ndarray] = {}  # one-row table or selection -> its row of each participant
        # one-row table or selection -> the raw file's data row (1-based) of each participant, for messages
        self.row_numbers: dict[str, pd.Series] = {}
        for name, spec in rules["tables"].items():
            self._load(name, spec)
        self.participants = self._participant_index()
        for table in self.tables.values():
            # Once per table: rows are matched to participants by position, not by comparing ids again.
            table.position = self.participants.get_indexer(table.keys)
        for name, table in self.tables.items():
            if name != rules["participants"]["table"]:
                self._link(table)
        for name, spec in rules.get("selections", {}).items():
            self._select(name, spec)

    # ------------------------------------------------------------ loading and linking

    def _load(self, name: str, spec: dict) -> None:
        try:
            raw = read_table(self.study, name, spec, self.raw_dir, self.secret)
        except RawDataError as error:
            self.problems.add(error.file, error.variable or "(whole file)", error.message)
            self.unreadable.append(error.file)
            return
        file = f"{spec['file']} [{spec['sheet']}]" if spec.get("sheet") else spec["file"]
        self.warnings += [f"study {self.study}, file {file}: {warning}" for warning in raw.warnings]
        missing_columns = [c for c in [spec["id"], spec.get("site")] if c and c not in raw.frame.columns]
        if missing_columns:
            for column in missing_columns:
                self.problems.add(
                    file, column, f"id/site column {column!r} not found; columns are {column_list(raw.frame.columns)}"
                )
            return
        ids, bad = normalize_ids(raw.frame[spec["id"]], self.id_type, spec.get("id_format"))
        reformatted = (
            int((ids.notna() & ids.ne(normalize_ids(raw.frame[spec["id"]], "text")[0])).sum())
            if spec.get("id_format")
            else 0
        )
        if bad.any():
            self.problems.add(
                file,
                spec["id"],
                f"participant id missing or not a valid {self.id_type} id",
                rows=data_rows(np.flatnonzero(bad)),
            )
        keys = ids
        if spec.get("site"):
            sites = code_keys(raw.frame[spec["site"]])
            if sites.isna().any():
                self.problems.add(file, spec["site"], "site missing", rows=data_rows(np.flatnonzero(sites.isna())))
            keys = sites.str.cat(ids, sep="/").where(ids.notna() & sites.notna(), None)
        self.tables[name] = LinkedTable(name, spec, raw, keys, ids, reformatted)
        if len(raw.frame) == 0 and name != self.rules["participants"]["table"]:
            self.empty[f"table {name}"] = file

    def _participant_index(self) -> pd.Index:
        name = self.rules["participants"]["table"]
        self.trial_ids = pd.Series([], dtype=object)
        if name not in self.tables:
            if name not in self.rules["tables"]:
                self.problems.add(
                    "(rule file)", "participants", f"participants table {name!r} is not declared under tables"
                )
            return pd.Index([], dtype=object)
        table = self.tables[name]
        for other in self.tables.values():
            if bool(other.spec.get("site")) != bool(table.spec.get("site")):
                self.problems.add(
                    other.file,
                    other.spec["id"],
                    "every table must name a site column when the participants table does (ids unique within site), "
                    "and none otherwise",
                )
        duplicated = table.keys.duplicated(keep=False) & table.keys.notna()
        if duplicated.any():
            # Row numbers only: ids are identifiers and are not echoed.
            self.problems.add(
                table.file,
                table.spec["id"],
                "duplicate participant ids in the participants table",
                rows=data_rows(np.flatnonzero(duplicated)),
            )
        keep = (table.keys.notna() & ~table.keys.duplicated()).to_numpy()
        self.one_row[name] = table.frame.set_axis(table.keys).loc[keep]
        self.row_numbers[name] = pd.Series(np.flatnonzero(keep) + 1, index=self.one_row[name].index)
        self.trial_ids = pd.Series(table.ids.to_numpy()[keep], index=table.keys.to_numpy()[keep])
        self.one_row_file[name] = table.file
        self.one_row_table[name] = table
        return pd.Index(self.one_row[name].index, dtype=object)

    def _link(self, table: LinkedTable) -> None:
        known = table.position >= 0
        orphans = table.keys.notna().to_numpy() & ~known
        if orphans.any() and len(self.participants):
            home = self.one_row_table[self.rules["participants"]["table"]]
            self.problems.add(
                table.file,
                table.spec["id"],
                "rows whose participant is not in the participants table: ids as written look like "
                f"{common_shapes(table.frame[table.spec['id']][orphans])} in these rows and like "
                f"{common_shapes(home.frame[home.spec['id']])} in {home.file}; check `id_format`, `id_type` "
                "and `site` (config/README.md, section 5.3)",
                rows=data_rows(np.flatnonzero(orphans)),
            )
        if table.spec.get("rows", "one") == "one":
            duplicated = table.keys.duplicated(keep=False) & table.keys.notna()
            if duplicated.any():
                self.problems.add(
                    table.file,
                    table.spec["id"],
                    "more than one row per participant in a table declared rows: one",
                    rows=data_rows(np.flatnonzero(duplicated)),
                )
            keep = known & ~table.keys.duplicated().to_numpy()
            self.one_row[table.name] = table.frame.set_axis(table.keys).loc[keep]
            self.row_numbers[table.name] = pd.Series(np.flatnonzero(keep) + 1, index=self.one_row[table.name].index)
            self.one_row_file[table.name] = table.file
            self.one_row_table[table.name] = table

    def _select(self, name: str, spec: dict) -> None:
        table = self.tables.get(spec["from"])
        if table is None:
            if spec["from"] not in self.rules["tables"]:
                self.problems.add(
                    "(rule file)", f"selection {name}", f"table {spec['from']!r} is not declared under tables"
                )
            return
        linked = table.position >= 0
        # The raw row number rides along as a column no file can have, and leaves before any rule sees the frame.
        frame = table.frame.set_axis(table.keys).assign(**{ROW: np.arange(1, len(table.keys) + 1)}).loc[linked]
        if "where" in spec:
            frame = self.filter_rows(frame, spec["where"], table, f"selection {name}")
        if "visit_window" in spec:
            frame = self._visit_window(frame, spec["visit_window"], table, name)
        duplicated = frame.index.duplicated(keep=False)
        if duplicated.any():
            self.problems.add(
                table.file,
                f"selection {name}",
                "the selection keeps more than one row for some participants",
                values=(f"{duplicated.sum()} rows",),
            )
            frame = frame.loc[~frame.index.duplicated()]
        if len(frame) == 0 and f"table {table.name}" not in self.empty:
            self.empty[f"selection {name}"] = table.file
        self.row_numbers[name] = frame.pop(ROW).astype(int)
        self.one_row[name] = frame
        self.one_row_file[name] = table.file
        self.one_row_table[name] = table

    def filter_rows(self, frame: pd.DataFrame, where: dict, table: LinkedTable, variable: str) -> pd.DataFrame:
        column = where["column"]
        if column not in frame.columns:
            self.problems.add(
                table.file,
                variable,
                f"column {column!r} (in where) not found; columns are {column_list(table.frame.columns)}",
            )
            return frame.iloc[0:0]
        wanted = {code_key(v) for v in (where["in"] if "in" in where else [where["equals"]])}
        return frame.loc[code_keys(frame[column]).isin(wanted).to_numpy()]

    def _visit_window(self, frame: pd.DataFrame, window: dict, table: LinkedTable, name: str) -> pd.DataFrame:
        variable = f"selection {name}"
        if window["date"] not in frame.columns:
            self.problems.add(
                table.file,
                variable,
                f"date column {window['date']!r} not found; columns are {column_list(table.frame.columns)}",
            )
            return frame.iloc[0:0]
        dates, bad = parse_dates(frame[window["date"]], table.spec.get("date_format"))
        if bad.any():
            self.problems.add(
                table.file,
                variable,
                f"dates in {window['date']!r} that do not parse with date_format {table.spec.get('date_format')!r}",
                values=tuple(frame[window["date"]][bad.to_numpy()].unique()),
                column=window["date"],
                cells=frame[window["date"]],
            )
        anchor = self.dates(window["anchor"], variable)
        unit = "days" if "days" in window else "months"
        # The window's unit: days as they are, or months of `month_days` days.
        per_unit = 1.0 if unit == "days" else window.get("month_days", DAYS_PER_MONTH)
        offset = (dates.to_numpy() - anchor.reindex(frame.index).to_numpy()) / np.timedelta64(1, "D") / per_unit
        low, high = window[unit]
        if low > high:
            self.problems.add("(rule file)", variable, f"visit_window {unit} [{low}, {high}] run backwards")
        inside = (offset >= low) & (offset <= high)
        candidates = frame.loc[inside].assign(
            _distance=np.abs(offset[inside] - window["target"]), _order=np.arange(inside.sum())
        )
        best = candidates.sort_values(["_distance", "_order"], kind="stable")
        best = best.loc[~best.index.duplicated()].drop(columns=["_distance", "_order"])
        return best.reindex([k for k in frame.index.unique() if k in best.index])

    def id_audit(self) -> str:
        """Per table: rows, ids changed by `id_format`, rows matched to a participant (for the rule log)."""
        parts = []
        for table in self.tables.values():
            matched = int((table.position >= 0).sum())
            parts.append(
                f"{table.name}: {len(table.keys)} rows, {table.reformatted} ids reformatted, {matched} matched"
            )
        return "; ".join(parts)

    # ------------------------------------------------------------ values

    def source(self, spec: dict, variable: str) -> SourceValues | None:
        """The column of a one-row table or selection, aligned to participants, missing codes applied."""
        name, column = spec["table"], spec["column"]
        if name not in self.one_row:
            declared = set(self.rules["tables"]) | set(self.rules.get("selections", {}))
            if name not in declared:
                self.problems.add("(rule file)", variable, f"table or selection {name!r} is not declared")
            elif name in self.tables and self.tables[name].spec.get("rows") == "many":
                self.problems.add(
                    self.tables[name].file,
                    variable,
                    f"table {name!r} has many rows per participant; read it through a selection",
                )
            elif name in self.rules.get("selections", {}) and self.rules["selections"][name]["from"] in self.tables:
                self.problems.add(
                    "(rule file)",
                    variable,
                    f"selection {name!r} is used before it is defined; list it earlier under selections",
                )
            return None
        frame, file = self.one_row[name], self.one_row_file[name]
        if column not in frame.columns:
            self.problems.add(file, variable, f"column {column!r} not found; columns are {column_list(frame.columns)}")
            return None
        cells = frame[column]
        table = self.one_row_table[name]
        set_missing = {}
        # Blank and missing codes are decided once per distinct value, then spread over the cells.
        codes, uniques = unique_values(cells)
        keys = key_list(uniques)
        declared = {code_key(v) for v in spec.get("missing", [])}
        blank = np.array([key is None or key == "" for key in keys])[codes]
        coded = np.array([key in declared for key in keys])[codes] & ~blank
        user = self._user_missing(table, column, cells).to_numpy() & ~blank & ~coded
        for reason, mask in (
            ("blank", blank & (codes >= 0)),
            ("missing code", coded),
            ("declared user-missing in file", user),
        ):
            if mask.any():
                set_missing[reason] = int(mask.sum())
        values = cells.astype(object).where(~(blank | coded | user), None)
        if spec.get("labels"):
            values = self._labelled(values, table, column, file, variable)
        return SourceValues(
            self._aligned(name, values), file, column, int(len(frame)), int((~blank).sum()), set_missing
        )

    def rows_of(self, name: str, participants: pd.Series) -> list[int]:
        """The raw data rows (1-based) behind the participants where `participants` (a mask on the
        participant index) holds, in one-row table or selection `name`."""
        keys = participants.index[participants.to_numpy(dtype=bool)]
        return sorted(int(r) for r in self.row_numbers[name].reindex(keys).dropna())

    def _aligned(self, name: str, values: pd.Series) -> pd.Series:
        """A column of a one-row table or selection on the participants' index (NaN for participants
        without a row), as reindex does, with the indexer found once per table or selection."""
        if name not in self.indexers:
            self.indexers[name] = self.one_row[name].index.get_indexer(self.participants)
        return pd.Series(
            values.array.take(self.indexers[name], allow_fill=True),
            index=self.participants,
            name=values.name,
            dtype=values.dtype,
        )

    def _user_missing(self, table: LinkedTable, column: str, cells: pd.Series) -> pd.Series:
        declared = table.raw.user_missing.get(column, [])
        mask = pd.Series(False, index=cells.index)
        if not declared:  # most columns (and every CSV and Excel column): no need to parse the cells
            return mask
        numbers, keys = pd.to_numeric(cells, errors="coerce"), code_keys(cells)
        for item in declared:
            if isinstance(item, tuple):
                mask |= (numbers >= item[0]) & (numbers <= item[1])
            else:
                mask |= keys.eq(code_key(item))
        return mask

    def _labelled(self, values: pd.Series, table: LinkedTable, column: str, file: str, variable: str) -> pd.Series:
        labels = {code_key(k): v for k, v in table.raw.value_labels.get(column, {}).items()}
        if not labels:
            self.problems.add(
                file, variable, f"column {column!r} has no value labels (labels: true needs SPSS/Stata labels)"
            )
            return values
        keys = code_keys(values)
        unlabelled = keys.notna() & ~keys.isin(labels)
        if unlabelled.any():
            self.problems.add(
                file,
                variable,
                f"codes in {column!r} without a value label",
                values=tuple(sorted(set(keys[unlabelled]))),
                column=column,
                cells=values,
            )
        return keys.map(labels).where(keys.notna(), None)

    def dates(self, spec: dict, variable: str) -> pd.Series:
        found = self.source(spec, variable)
        if found is None:
            return pd.Series(pd.NaT, index=self.participants)
        table = self.one_row_table[spec["table"]]
        dates, bad = parse_dates(found.values, table.spec.get("date_format"))
        if bad.any():
            self.problems.add(
                found.file,
                variable,
                f"dates in {found.column!r} that do not parse with date_format {table.spec.get('date_format')!r}",
                values=tuple(found.values[bad].astype(str).unique()),
                column=found.column,
                cells=found.values,
            )
        return dates

    def long_table(
        self, name: str, variable: str, columns: tuple[str, ...] = ()
    ) -> tuple[LinkedTable, pd.DataFrame] | None:
        """Rows of a long table that belong to known participants, indexed by participant key;
        None (with a problem recorded) if the table or one of `columns` is missing."""
        if name not in self.tables:
            if name not in self.rules["tables"]:
                self.problems.add("(rule file)", variable, f"table {name!r} is not declared under tables")
            return None
        table = self.tables[name]
        for column in columns:
            if column not in table.frame.columns:
                self.problems.add(
                    table.file, variable, f"column {column!r} not found; columns are {column_list(table.frame.columns)}"
                )
                return None
        return table, table.frame.set_axis(table.keys).loc[table.position >= 0]

    def any_per_participant(self, position: np.ndarray, mask) -> np.ndarray:
        """Per participant, whether `mask` holds on any of their rows (`position`: each row's participant)."""
        return np.bincount(position[np.asarray(mask, dtype=bool)], minlength=len(self.participants)) > 0
