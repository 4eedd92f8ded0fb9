"""Benchmark: how often the rule-file draft (`python -m ipdpool.harmonize draft`) gets a trial's layout
right, scored against each trial's completed rule file.

Evaluation set: the five demo studies (config/studies), the reader corpus's FI trial (tests/corpus.py,
tests/data/FI.yaml) and three NEW trials written by R openxlsx/foreign, PSPP and LibreOffice with layouts
the demo lacks (bench/draft_trials). Decisions scored, each right or wrong:

- tables: every table of the completed file is declared (same file and sheet); every declared table
  that the completed file lacks (an instructions sheet read as data) is wrong;
- the participants table;
- per table: the id column; the id format (id_type, id_format and site give every row the same
  participant key as the completed file's); `rows` (one or many);
- per variable and outcome: its source (the raw columns) and its rule (kind: copy, recode,
  months_between, item_sum, employment_*, constant, not_collected).

The draft writes tables, ids and rows as decisions (confident: a wrong one is "wrong but confident")
and leaves every variable and outcome `undetermined` with its proposal (`proposed rule: <kind>;
columns: <table.column, ...>`), which counts as right when rule kind and columns equal the completed
file's, and is never confident. Targets (issue 24): >= 85% right and 0 wrong-but-confident on the new
trials.

Usage: python bench/bench_draft.py   (needs Rscript with openxlsx/foreign/haven, pspp and soffice)
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bench.draft_trials.build import build_trials, rule_file  # noqa: E402
from ipdpool.harmonize.draft import draft_rule_file  # noqa: E402
from ipdpool.harmonize.schema import load_schema  # noqa: E402
from ipdpool.harmonize.values import normalize_ids  # noqa: E402
from ipdpool.rawio import read_table  # noqa: E402

DEMO = ("DK", "EU6", "NL", "SE", "US")
VARIABLES = ("site", "arm", "arm_original", "employed", "followup_months", "age", "sex", "diagnosis")


def where(spec: dict) -> tuple:
    return spec["file"], spec.get("sheet")


def resolve(rules: dict, name: str) -> tuple:
    """(file, sheet) of a table or of the table a selection reads."""
    selection = rules.get("selections", {}).get(name)
    return where(rules["tables"][selection["from"] if selection else name])


def rule_sources(rules: dict, rule: dict) -> tuple[set[str], set]:
    """(rule kinds, raw columns as (file, sheet, column)) of a variable's or outcome's entry."""
    if "not_collected" in rule:
        return {"not_collected"}, set()
    if "instrument" in rule:
        kinds, columns = set(), set()
        for part in ("baseline", "followup"):
            k, c = rule_sources(rules, rule[part])
            kinds |= k
            columns |= c
        return kinds, columns
    ((kind, spec),) = rule.items()
    if kind == "constant":
        return {"constant"}, set()
    columns = set()

    def add(table, *names):
        columns.update((*resolve(rules, table), name) for name in names)

    if kind == "months_between":
        add(spec["start"]["table"], spec["start"]["column"])
        add(spec["end"]["table"], spec["end"]["column"])
    elif kind == "item_sum":
        add(spec["table"], *spec["columns"])
    elif kind == "employment_episodes":
        add(spec["table"], spec["start"], spec["end"])
    elif kind == "employment_hours":
        add(spec["table"], spec["week"], spec["hours"])
    elif kind == "employment_waves":
        for wave in spec["waves"]:
            add(wave["table"], wave["column"])
    else:
        add(spec["table"], spec["column"])
    return {kind}, columns


PROPOSED = re.compile(r"proposed rule: ([a-z_, ]+?)(?:;|$)")
COLUMNS = re.compile(r"(?:^|; )columns: ([^;]*)")


def proposal(rules: dict, text: str) -> tuple[set[str], set]:
    kind = PROPOSED.search(text)
    columns = COLUMNS.search(text)
    found = set()
    for item in columns.group(1).split(", ") if columns and columns.group(1).strip() != "none" else []:
        table, column = item.split(".", 1)
        found.add((*resolve(rules, table), column))
    return ({k.strip() for k in kind.group(1).split(",")} if kind else set()), found


def keys(raw_dir: Path, rules: dict, name: str) -> list:
    spec = rules["tables"][name]
    raw = read_table(rules["study"], name, spec, raw_dir)
    ids, _ = normalize_ids(raw.frame[spec["id"]], rules["participants"]["id_type"], spec.get("id_format"))
    if spec.get("site"):
        sites = raw.frame[spec["site"]].astype(str)
        ids = sites.str.cat(ids, sep="/").where(ids.notna(), None)
    return ids.tolist()


def score(draft: dict, truth: dict, raw_dir: Path) -> list[tuple[str, bool, bool]]:
    """(decision, right, confident) for every decision."""
    decisions = []
    drafted = {where(spec): name for name, spec in draft["tables"].items()}
    completed = {where(spec): name for name, spec in truth["tables"].items()}
    for place, name in completed.items():
        decisions.append((f"table {name} declared", place in drafted, True))
    for place, name in drafted.items():
        if place not in completed:
            decisions.append((f"table {name} is not a table of the trial", False, True))
    participants = where(truth["tables"][truth["participants"]["table"]])
    chosen = where(draft["tables"][draft["participants"]["table"]])
    decisions.append(("participants table", chosen == participants, True))
    for place, name in completed.items():
        if place not in drafted:
            continue
        mine, theirs = draft["tables"][drafted[place]], truth["tables"][name]
        decisions.append((f"{name}: id column", mine["id"] == theirs["id"], True))
        same_keys = mine["id"] == theirs["id"] and keys(raw_dir, draft, drafted[place]) == keys(raw_dir, truth, name)
        decisions.append((f"{name}: id format and site", same_keys, True))
        decisions.append((f"{name}: rows", mine.get("rows", "one") == theirs.get("rows", "one"), True))
    for group in ("variables", "outcomes"):
        for variable, rule in truth[group].items():
            if variable == "participant_id":
                continue
            kinds, columns = rule_sources(truth, rule)
            entry = draft[group].get(variable, {})
            confident = "undetermined" not in entry
            got_kinds, got_columns = (
                rule_sources(draft, entry) if confident else proposal(draft, entry.get("undetermined", ""))
            )
            decisions.append((f"{variable}: source", got_columns == columns, confident))
            decisions.append((f"{variable}: rule", got_kinds == kinds, confident))
    return decisions


def evaluation_set(folder: Path) -> list[tuple[str, str, Path, dict]]:
    """(group, study, raw folder, completed rules) for every trial of the evaluation set."""
    from corpus import build_corpus

    trials = [
        ("demo", s, REPO / "resources/demo/raw" / s, yaml.safe_load((REPO / f"config/studies/{s}.yaml").read_text()))
        for s in DEMO
    ]
    corpus = build_corpus(folder / "corpus")
    fi = (REPO / "tests/data/FI.yaml").read_text(encoding="utf-8").replace("RAW_DIR", str(corpus / "FI"))
    trials.append(("corpus", "FI", corpus / "FI", yaml.safe_load(fi)))
    for trial, raw in build_trials(folder / "new").items():
        trials.append(("new", trial, raw, yaml.safe_load(rule_file(trial, raw))))
    return trials


def main() -> int:
    outcomes = load_schema(REPO / "config" / "schema.yaml")["outcomes"]
    totals: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for group, study, raw, truth in evaluation_set(Path(tmp)):
            draft = yaml.safe_load(draft_rule_file(raw, study, outcomes))
            decisions = score(draft, truth, raw)
            right = sum(r for _, r, _ in decisions)
            confident_wrong = [d for d, r, c in decisions if c and not r]
            wrong = [d for d, r, _ in decisions if not r]
            total = totals.setdefault(group, [0, 0, 0])
            total[0] += len(decisions)
            total[1] += right
            total[2] += len(confident_wrong)
            print(f"{group:6s} {study:4s} {right:3d}/{len(decisions):3d} right ({right / len(decisions):6.1%}), "
                  f"{len(confident_wrong)} wrong but confident")  # fmt: skip
            for decision in wrong:
                print(f"         wrong{' (confident)' if decision in confident_wrong else ''}: {decision}")
    for group, (n, right, confident_wrong) in totals.items():
        print(f"{group:6s} all: {right}/{n} right ({right / n:.1%}), {confident_wrong} wrong but confident "
              f"({confident_wrong / n:.1%})")  # fmt: skip
    n, right, confident_wrong = totals["new"]
    return 0 if right / n >= 0.85 and confident_wrong == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
