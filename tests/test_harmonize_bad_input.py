"""Bad raw data and bad rule files fail loudly, naming study, file and variable.

Each test copies one demo study's raw folder into a temporary folder, corrupts the
copy (or the rules) in one known way and checks that harmonization refuses it with
a problem that says where the fault is. The expected wording is spelled out in each
test so that a change in the messages shows up here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from conftest import copy_workflow, snakemake

from ipdpool.harmonize.problems import HarmonizationError, Problem
from ipdpool.harmonize.rulefile import RuleFileError, load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.harmonize.study import harmonize_study

KEY = b"k" * 16
US_FILE = "us_hartford_wide.csv"


# ------------------------------------------------------------ helpers


@dataclass
class StudyCopy:
    """A study's rules pointing at a private copy of its raw folder."""

    study: str
    rules: dict
    raw: Path  # the copied raw folder (corrupt files here)
    base_dir: Path  # rules["raw_dir"] is relative to this
    schema: dict

    def harmonize(self):
        return harmonize_study(self.rules, self.schema, KEY, base_dir=self.base_dir)

    def fails(self) -> HarmonizationError:
        """Harmonize, expect HarmonizationError, and check that nothing was written."""
        before = sorted(self.base_dir.rglob("*"))
        with pytest.raises(HarmonizationError) as caught:
            self.harmonize()
        assert sorted(self.base_dir.rglob("*")) == before, "harmonize_study wrote files although it failed"
        return caught.value

    def edit_csv(self, file: str, change) -> None:
        """Rewrite a comma-separated UTF-8 raw file after `change(frame)` (all cells read as text)."""
        path = self.raw / file
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame = change(frame)
        frame.to_csv(path, index=False, lineterminator="\n")


@pytest.fixture
def study_copy(tmp_path, repo_root):
    schema = load_schema(repo_root / "config" / "schema.yaml")

    def make(study: str) -> StudyCopy:
        raw = tmp_path / "raw" / study
        shutil.copytree(repo_root / "resources" / "demo" / "raw" / study, raw)
        rules = load_rules(repo_root / "config" / "studies" / f"{study}.yaml")
        rules["raw_dir"] = f"raw/{study}"  # relative to base_dir=tmp_path
        return StudyCopy(study, rules, raw, tmp_path, schema)

    return make


def problem_at(error: HarmonizationError, study: str, file: str, variable: str, expected: str) -> Problem:
    """The problem located at (study, file, variable) whose message contains `expected`;
    also checks that str(error) shows it in the documented form."""
    located = [p for p in error.problems if (p.study, p.file, p.variable) == (study, file, variable)]
    assert located, f"no problem for study {study}, file {file}, variable {variable} in:\n{error}"
    matching = [p for p in located if expected in p.message]
    assert matching, f"expected {expected!r} in one of {[p.message for p in located]}"
    assert f"study {study}, file {file}, variable {variable}: " in str(error)
    assert expected in str(error)
    return matching[0]


def first_row_where(frame: pd.DataFrame, column: str, condition) -> int:
    rows = frame.index[frame[column].map(condition)]
    assert len(rows), f"no row of {column} satisfies the condition"
    return rows[0]


def set_cell(column: str, value: str, where=lambda cell: True):
    """A change for StudyCopy.edit_csv: set `column` to `value` in the first row where `where(cell)`."""

    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[first_row_where(frame, column, where), column] = value
        return frame

    return change


def is_score(cell: str) -> bool:
    return cell not in ("", "999")


# ------------------------------------------------------------ the untouched copy is fine


@pytest.mark.parametrize("study", ["EU6", "DK", "SE", "NL", "US"])
def test_an_untouched_copy_harmonizes(study_copy, study):
    """Guards every test below: failures come from the corruption, not from the copying."""
    copy = study_copy(study)
    if study == "US":
        copy.edit_csv(US_FILE, lambda frame: frame)  # the rewrite itself changes nothing that matters
    result = copy.harmonize()
    assert len(result.data) > 0


# ------------------------------------------------------------ unreadable raw files


@pytest.mark.parametrize(
    "table,file,expected",
    [
        # The visits file has no commas, so it reads as one wide column: the message asks about the delimiter.
        (
            "visits",
            "dk_besoeg.csv",
            "has a single column 'løbenr;besøg;dato;rses;whoqol_psyk;sans_global;saps_global;gaf_f':"
            " is the delimiter ',' right?",
        ),
        # Some notes in the participants file contain a comma, but the header decides: one column.
        (
            "participants",
            "dk_deltagere.csv",
            (
                "has a single column 'løbenr;by;gruppe;randomiseringsdato;køn;alder;diagnose;cpr;navn;bemærkning': "
                "is the delimiter ',' right?"
            ),
        ),
    ],
)
def test_wrong_delimiter(study_copy, table, file, expected):
    copy = study_copy("DK")
    assert copy.rules["tables"][table]["delimiter"] == ";"
    copy.rules["tables"][table]["delimiter"] = ","
    error = copy.fails()
    problem_at(error, "DK", file, "(whole file)", expected)
    assert "','" in str(error)  # the delimiter that was tried


@pytest.mark.parametrize("study,file", [("US", US_FILE), ("EU6", "eu6_followup18.sav")])
def test_empty_raw_file(study_copy, study, file):
    copy = study_copy(study)
    (copy.raw / file).write_bytes(b"")
    error = copy.fails()
    problem = problem_at(error, study, file, "(whole file)", "is empty (0 bytes)")
    assert problem.message == "is empty (0 bytes)"


# ------------------------------------------------------------ readable files with bad content


def test_unknown_arm_code(study_copy):
    copy = study_copy("US")
    copy.edit_csv(US_FILE, set_cell("condition", "XYZ", where=lambda cell: cell == "PSR"))
    error = copy.fails()
    expected = "codes in 'condition' missing from the recode map (the map must list every code)"
    problem = problem_at(error, "US", US_FILE, "arm", expected)
    assert problem.values == ("XYZ (n=1)",)
    assert "values 'XYZ (n=1)'" in str(error)


def test_out_of_range_score(study_copy):
    copy = study_copy("US")
    copy.edit_csv(US_FILE, set_cell("gaf_m18", "150", where=is_score))
    error = copy.fails()
    problem = problem_at(error, "US", US_FILE, "functioning_fu", "scores outside the GAF range [1, 100]")
    assert [float(v) for v in problem.values] == [150.0]
    assert "150" in str(error)


def test_duplicate_participant_ids_are_reported_by_row_not_by_id(study_copy):
    copy = study_copy("US")
    duplicated_id = {}

    def duplicate_sixth_row(frame: pd.DataFrame) -> pd.DataFrame:
        duplicated_id["value"] = frame.loc[5, "study_id"]
        return pd.concat([frame, frame.iloc[[5]]], ignore_index=True)  # data rows 6 and 205

    copy.edit_csv(US_FILE, duplicate_sixth_row)
    assert duplicated_id["value"] == "H1006"
    error = copy.fails()
    problem = problem_at(error, "US", US_FILE, "study_id", "duplicate participant ids in the participants table")
    assert problem.rows == (6, 205)
    assert "; rows 6, 205" in str(error)
    assert problem.values == ()
    assert "H1006" not in str(error)  # ids are identifiers and are never echoed


def test_all_problems_of_a_study_are_reported_at_once(study_copy):
    copy = study_copy("US")
    copy.edit_csv(US_FILE, set_cell("condition", "XYZ", where=lambda cell: cell == "PSR"))
    copy.edit_csv(US_FILE, set_cell("gaf_m18", "150", where=is_score))
    error = copy.fails()
    problem_at(error, "US", US_FILE, "arm", "codes in 'condition' missing from the recode map")
    problem_at(error, "US", US_FILE, "functioning_fu", "scores outside the GAF range [1, 100]")
    assert len(error.problems) == 2
    assert str(error).startswith("2 problem(s) in the harmonization rules or raw data:\n  - study US")


# ------------------------------------------------------------ bad rule files


def write_rule_file(tmp_path: Path, repo_root: Path, study: str, old: str, new: str) -> Path:
    text = (repo_root / "config" / "studies" / f"{study}.yaml").read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {study}.yaml"
    path = tmp_path / f"{study}.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def test_misspelled_rule_type(tmp_path, repo_root):
    path = write_rule_file(tmp_path, repo_root, "US", "arm: {recode: {", "arm: {recod: {")
    with pytest.raises(RuleFileError) as caught:
        load_rules(path)
    expected = (
        "variables.arm: unknown key `recod` (did you mean `recode`?); "
        "allowed keys: copy, recode, linear, months_between, constant, not_collected, undetermined"
    )
    assert caught.value.problems == [expected]
    assert caught.value.path == path
    assert str(caught.value).startswith(f"rule file {path}: 1 problem(s):")


# ------------------------------------------------------------ end to end


@pytest.mark.workflow
def test_workflow_stops_on_a_bad_study_and_writes_no_harmonized_data(tmp_path):
    copy_workflow(tmp_path)
    raw = tmp_path / "resources" / "demo" / "raw" / "US" / US_FILE
    frame = pd.read_csv(raw, dtype=str, keep_default_na=False)
    frame = set_cell("condition", "XYZ", where=lambda cell: cell == "PSR")(frame)
    frame.to_csv(raw, index=False, lineterminator="\n")

    result = snakemake(tmp_path, "--cores", "2")

    assert result.returncode != 0, result.stderr[-3000:]
    log = (tmp_path / "logs" / "harmonize" / "US.log").read_text(encoding="utf-8")
    last_lines = log.rstrip("\n").splitlines()[-2:]
    header = "HarmonizationError: 1 problem(s) in the harmonization rules or raw data:"
    assert last_lines[0].endswith(header), log[-2000:]
    assert last_lines[1] == (
        f"  - study US, file {US_FILE}, variable arm: codes in 'condition' missing from the recode map"
        " (the map must list every code); values 'XYZ (n=1)'"
    ), log[-2000:]
    assert not (tmp_path / "results" / "harmonized" / "US.parquet").exists()
    assert not (tmp_path / "results" / "harmonized" / "pooled.parquet").exists()
