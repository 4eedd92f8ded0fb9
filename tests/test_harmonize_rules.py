"""Each rule type on small hand-made tables, including the edge cases."""

import numpy as np
import pandas as pd
import pytest

from ipdpool.harmonize.problems import Problems
from ipdpool.harmonize.rules import (
    apply_score_rule,
    apply_value_rule,
    employment_episodes,
    employment_hours,
    employment_waves,
)
from ipdpool.harmonize.tables import StudyData
from ipdpool.harmonize.values import code_key, normalize_ids, parse_numbers


def make_study(
    tmp_path, tables: dict[str, pd.DataFrame], specs: dict[str, dict] | None = None, id_type="integer", selections=None
):
    """Write each frame as a semicolon CSV with decimal commas and link it as a study."""
    specs = specs or {}
    rules = {
        "study": "T",
        "raw_dir": str(tmp_path),
        "tables": {},
        "participants": {"table": "people", "id_type": id_type},
    }
    for name, frame in tables.items():
        frame.to_csv(tmp_path / f"{name}.csv", sep=";", index=False)
        rules["tables"][name] = {
            "file": f"{name}.csv",
            "format": "csv",
            "delimiter": ";",
            "decimal": ",",
            "id": "id",
            **specs.get(name, {}),
        }
    if selections:
        rules["selections"] = selections
    problems = Problems("T")
    return StudyData(rules, problems), problems


PEOPLE = pd.DataFrame(
    {
        "id": ["001", "2", " 3 ", "4"],
        "arm": ["a", "b", "a", "b"],
        "score": ["1,5", "", "99", "x"],
        "randomized": ["01-01-2020", "15-03-2020", "31-01-2020", "01-06-2020"],
    }
)


def test_ids_compare_as_integers_after_trimming():
    ids, bad = normalize_ids(pd.Series(["007", " 7", 7.0, "7.5", None, "abc"]), "integer")
    assert ids.tolist()[:3] == ["7", "7", "7"]
    assert bad.tolist() == [False, False, False, True, True, True]
    text, bad = normalize_ids(pd.Series([" H1 ", "H1"]), "text")
    assert text.tolist() == ["H1", "H1"] and not bad.any()


def test_code_keys_make_numbers_and_text_comparable():
    assert code_key(1) == code_key(1.0) == code_key("1") == code_key(" 1 ") == "1"
    assert code_key(1.5) == "1.5" and code_key(np.nan) is None


def test_numbers_parse_with_decimal_commas_and_flag_text():
    values, bad = parse_numbers(pd.Series(["1,5", "2", None, "abc", 3.0]), ",")
    assert values.tolist()[:2] == [1.5, 2.0] and np.isnan(values[2]) and values[4] == 3.0
    assert bad.tolist() == [False, False, False, True, False]


def test_copy_with_missing_codes_and_blank(tmp_path):
    data, problems = make_study(tmp_path, {"people": PEOPLE})
    result = apply_value_rule(
        data, "age", {"copy": {"table": "people", "column": "score", "missing": [99, "x"]}}, "float"
    )
    assert not problems
    assert result.values.iloc[0] == 1.5 and result.values.isna().tolist() == [False, True, True, True]
    assert result.set_missing == {"blank": 1, "missing code": 2}


def test_copy_of_text_in_a_numeric_variable_is_a_problem_naming_the_value(tmp_path):
    data, problems = make_study(tmp_path, {"people": PEOPLE})
    apply_value_rule(data, "age", {"copy": {"table": "people", "column": "score", "missing": [99]}}, "float")
    assert len(problems.items) == 1 and problems.items[0].values == ("x",)
    assert "not numbers" in str(problems.items[0]) and problems.items[0].variable == "age"


def test_recode_needs_every_code_and_null_sets_missing(tmp_path):
    data, problems = make_study(tmp_path, {"people": PEOPLE})
    result = apply_value_rule(
        data, "arm", {"recode": {"table": "people", "column": "arm", "map": {"a": "IPS", "b": None}}}, "category"
    )
    assert not problems
    assert result.values.tolist()[::2] == ["IPS", "IPS"] and result.values.isna().tolist() == [False, True, False, True]
    assert result.set_missing == {"recoded to missing": 2}
    apply_value_rule(data, "arm", {"recode": {"table": "people", "column": "arm", "map": {"a": "IPS"}}}, "category")
    assert problems.items[0].values == ("b (n=2)",) and "missing from the recode map" in problems.items[0].message


def test_recode_of_an_all_missing_column_gives_all_missing_without_problems(tmp_path):
    frame = PEOPLE.assign(arm="")
    data, problems = make_study(tmp_path, {"people": frame})
    result = apply_value_rule(
        data, "arm", {"recode": {"table": "people", "column": "arm", "map": {"a": "IPS"}}}, "category"
    )
    assert not problems and result.values.isna().all() and result.set_missing == {"blank": 4}


def test_linear_transform(tmp_path):
    data, problems = make_study(tmp_path, {"people": PEOPLE})
    result = apply_value_rule(
        data,
        "age",
        {"linear": {"table": "people", "column": "score", "missing": [99, "x"], "scale": 2, "offset": -1}},
        "float",
    )
    assert result.values.iloc[0] == 2.0 and not problems


def test_months_between_with_a_date_format(tmp_path):
    followup = pd.DataFrame({"id": ["1", "2"], "seen": ["01-07-2021", "15-09-2021"]})
    data, problems = make_study(
        tmp_path,
        {"people": PEOPLE, "fu": followup},
        {"people": {"date_format": "%d-%m-%Y"}, "fu": {"date_format": "%d-%m-%Y"}},
    )
    result = apply_value_rule(
        data,
        "followup_months",
        {
            "months_between": {
                "start": {"table": "people", "column": "randomized"},
                "end": {"table": "fu", "column": "seen"},
            }
        },
        "float",
    )
    assert not problems
    assert result.values.iloc[0] == pytest.approx(547 / (365.25 / 12)) and result.values.isna().tolist() == [
        False,
        False,
        True,
        True,
    ]


def test_constant_not_collected_and_undetermined(tmp_path):
    data, _ = make_study(tmp_path, {"people": PEOPLE})
    assert apply_value_rule(data, "site", {"constant": "Malmö"}, "string").values.tolist() == ["Malmö"] * 4
    assert apply_value_rule(data, "age", {"not_collected": True}, "float").status == "not_collected"
    undetermined = apply_value_rule(data, "diagnosis", {"undetermined": "only free text"}, "category")
    assert undetermined.status == "undetermined" and undetermined.values.isna().all()


def test_item_sum_prorates_up_to_the_threshold(tmp_path):
    items = pd.DataFrame(
        {
            "id": ["1", "2", "3", "4"],
            "i1": ["1", "2", "", ""],
            "i2": ["2", "", "", "9"],
            "i3": ["3", "4", "3", ""],
            "i4": ["4", "4", "", ""],
        }
    )
    data, problems = make_study(tmp_path, {"people": items})
    result = apply_score_rule(
        data,
        "x_bl",
        {"item_sum": {"table": "people", "columns": ["i1", "i2", "i3", "i4"], "missing": [9], "min_answered": 3}},
    )
    assert not problems
    # 1: complete; 2: three answered -> mean 10/3 x 4; 3: one answered (too few); 4: none answered
    assert result.values.iloc[0] == 10 and result.values.iloc[1] == pytest.approx(40 / 3)
    assert result.values.isna().tolist() == [False, False, True, True]
    assert result.set_missing["too few items answered"] == 1
    assert "1 prorated" in result.notes


def test_long_table_selection_by_where_and_duplicates(tmp_path):
    visits = pd.DataFrame(
        {"id": ["1", "1", "2", "3", "3"], "visit": ["bl", "fu", "bl", "bl", "bl"], "score": ["1", "2", "3", "4", "5"]}
    )
    data, problems = make_study(
        tmp_path,
        {"people": PEOPLE, "visits": visits},
        {"visits": {"rows": "many"}},
        selections={"baseline": {"from": "visits", "where": {"column": "visit", "equals": "bl"}}},
    )
    assert "more than one row" in problems.items[0].message


def test_visit_window_picks_the_visit_nearest_the_target_inside_the_window(tmp_path):
    visits = pd.DataFrame(
        {
            "id": ["1", "1", "1", "2", "2", "3"],
            "date": ["01-07-2021", "01-09-2021", "01-01-2022", "01-03-2022", "01-09-2021", "01-06-2020"],
            "score": ["18m", "20m", "24m", "22.5m", "17.5m", "5m"],
        }
    )
    selection = {
        "followup": {
            "from": "visits",
            "visit_window": {
                "date": "date",
                "anchor": {"table": "people", "column": "randomized"},
                "months": [15, 21],
                "target": 18,
            },
        }
    }
    data, problems = make_study(
        tmp_path,
        {"people": PEOPLE, "visits": visits},
        {"people": {"date_format": "%d-%m-%Y"}, "visits": {"rows": "many", "date_format": "%d-%m-%Y"}},
        selections=selection,
    )
    assert not problems
    chosen = data.one_row["followup"]["score"]
    assert chosen.to_dict() == {"1": "18m", "2": "17.5m"}


def test_orphan_rows_and_duplicate_participants_are_problems_without_echoing_ids(tmp_path):
    people = pd.concat([PEOPLE, PEOPLE.iloc[[1]]])
    followup = pd.DataFrame({"id": ["1", "77"], "x": ["1", "2"]})
    data, problems = make_study(tmp_path, {"people": people, "fu": followup})
    messages = [str(p) for p in problems.items]
    assert any("duplicate participant ids" in m and "rows 2, 5" in m for m in messages)
    assert any("not in the participants table" in m and "rows 2" in m for m in messages)
    assert not any("77" in m.split("rows")[0] for m in messages)


# ------------------------------------------------------------ employment


def test_employment_days(tmp_path):
    fu = pd.DataFrame({"id": ["1", "2", "3"], "days": ["0", "12", "-99"]})
    data, problems = make_study(tmp_path, {"people": PEOPLE, "fu": fu})
    result = apply_value_rule(
        data, "employed", {"employment_days": {"table": "fu", "column": "days", "missing": [-99]}}, "integer"
    )
    assert result.values.tolist()[:2] == [0.0, 1.0] and result.values.isna().tolist() == [False, False, True, True]


@pytest.mark.parametrize("absent,expected", [(True, [1.0, 0.0, 0.0, 0.0]), (False, [1.0, np.nan, 0.0, np.nan])])
def test_employment_hours_window_and_zero_hours(tmp_path, absent, expected):
    log = pd.DataFrame(
        {
            "id": ["1", "1", "2", "3", "3"],
            "week": ["5", "90", "79", "10", "11"],
            "hours": ["12,5", "30", "20", "0", "0,0"],
        }
    )
    data, problems = make_study(tmp_path, {"people": PEOPLE, "log": log}, {"log": {"rows": "many"}})
    spec = {
        "table": "log",
        "week": "week",
        "hours": "hours",
        "window_weeks": [1, 78],
        "absent_means_not_employed": absent,
    }
    values = employment_hours(data, "employed", spec).values
    assert not problems
    # 1 worked in week 5; 2 only after the window; 3 logged 0 hours in the window; 4 has no rows.
    # Unless the log covers everyone, no rows in the window means unknown.
    np.testing.assert_array_equal(values.to_numpy(dtype=float), np.array(expected))


def test_employment_waves_missed_wave_is_covered_but_unknown_is_not(tmp_path):
    waves = pd.DataFrame(
        {
            "id": ["1", "2", "3", "4"],
            "w6": ["nej", "", "ja", "vet ej"],
            "w12": ["nej", "nej", "", "nej"],
            "w18": ["ja", "nej", "", "nej"],
        }
    )
    data, problems = make_study(tmp_path, {"people": waves})
    spec = {
        "waves": [{"table": "people", "column": c} for c in ("w6", "w12", "w18")],
        "yes": ["ja"],
        "no": ["nej"],
        "unknown": ["vet ej"],
    }
    values = employment_waves(data, "employed", spec).values
    assert not problems
    # 1: yes at 18; 2: missed 6 months, later answers cover it; 3: yes then dropped out; 4: unknown period
    assert values.tolist()[:3] == [1.0, 0.0, 1.0] and np.isnan(values.iloc[3])


def test_employment_waves_unlisted_answer_is_a_problem(tmp_path):
    waves = pd.DataFrame({"id": ["1"], "w6": ["maybe"]})
    data, problems = make_study(tmp_path, {"people": waves})
    employment_waves(data, "employed", {"waves": [{"table": "people", "column": "w6"}], "yes": ["ja"], "no": ["nej"]})
    assert problems.items[0].values == ("maybe",)


def test_employment_episodes_overlap_is_inclusive_at_both_window_edges(tmp_path):
    jobs = pd.DataFrame(
        {
            "id": ["1", "2", "3", "4", "4"],
            # 1 starts on the window's last day; 2 ends on randomization day; 3 ended the day before;
            # 4 has sheltered work in the window and a competitive job after it
            "start": ["01-07-2021", "01-01-2019", "01-01-2019", "01-08-2020", "01-01-2022"],
            "end": ["", "15-03-2020", "31-01-2020", "01-09-2020", ""],
            "kind": ["1", "1", "1", "2", "1"],
        }
    )
    people = PEOPLE.assign(randomized=["01-01-2020", "15-03-2020", "01-02-2020", "01-06-2020"])
    data, problems = make_study(
        tmp_path,
        {"people": people, "jobs": jobs},
        {"people": {"date_format": "%d-%m-%Y"}, "jobs": {"rows": "many", "date_format": "%d-%m-%Y"}},
    )
    spec = {
        "table": "jobs",
        "start": "start",
        "end": "end",
        "where": {"column": "kind", "equals": 1},
        "anchor": {"table": "people", "column": "randomized"},
        "months": 18,
    }
    values = employment_episodes(data, "employed", spec).values
    assert not problems
    assert values.tolist() == [1.0, 1.0, 0.0, 0.0]


def test_employment_episode_ending_before_it_starts_is_a_problem(tmp_path):
    jobs = pd.DataFrame({"id": ["1"], "start": ["01-07-2021"], "end": ["01-06-2021"]})
    data, problems = make_study(
        tmp_path,
        {"people": PEOPLE, "jobs": jobs},
        {"people": {"date_format": "%d-%m-%Y"}, "jobs": {"rows": "many", "date_format": "%d-%m-%Y"}},
    )
    employment_episodes(
        data,
        "employed",
        {
            "table": "jobs",
            "start": "start",
            "end": "end",
            "anchor": {"table": "people", "column": "randomized"},
            "months": 18,
        },
    )
    assert "ending before they start" in problems.items[0].message


@pytest.mark.parametrize(
    "raw,id_format,id_type,expected",
    [
        (["FI-001", "FI-012"], {"extract": "^FI-([0-9]+)$"}, "integer", ["1", "12"]),
        ([" 001", "fi001"], {"case": "upper", "remove_prefix": "FI"}, "integer", ["1", "1"]),
        (["001/A", "7/A"], {"remove_suffix": "/A", "pad_zeros": 3}, "text", ["001", "007"]),
        (["007", "70"], {"strip_zeros": True}, "text", ["7", "70"]),
        (["12345678901234567890"], {"remove_prefix": "X"}, "integer", ["12345678901234567890"]),
    ],
)
def test_id_format_steps_and_exact_integers(raw, id_format, id_type, expected):
    ids, bad = normalize_ids(pd.Series(raw), id_type, id_format)
    assert ids.tolist() == expected and not bad.any()


def test_id_format_extract_without_match_is_an_invalid_id():
    ids, bad = normalize_ids(pd.Series(["FI-001", "SE-002"]), "integer", {"extract": "^FI-([0-9]+)$"})
    assert bad.tolist() == [False, True]


def test_episode_window_in_days_months_and_months_of_stated_length(tmp_path):
    people = pd.DataFrame({"id": ["1", "2", "3"], "randomized": ["01-03-2015"] * 3})
    # Jobs starting on day 547, 548 and 549 after randomization; 18 calendar months end on day 550.
    jobs = pd.DataFrame({"id": ["1", "2", "3"], "start": ["29-08-2016", "30-08-2016", "31-08-2016"], "end": [""] * 3})
    data, problems = make_study(
        tmp_path,
        {"people": people, "jobs": jobs},
        {"people": {"date_format": "%d-%m-%Y"}, "jobs": {"rows": "many", "date_format": "%d-%m-%Y"}},
    )
    base = {"table": "jobs", "start": "start", "end": "end", "anchor": {"table": "people", "column": "randomized"}}
    window = {}
    for name, extra in {
        "calendar": {"months": 18},
        "days": {"days": 548},
        "month_days": {"months": 18, "month_days": 30.4375},
    }.items():
        window[name] = employment_episodes(data, "employed", {**base, **extra}).values.tolist()
    assert not problems
    assert window == {"calendar": [1.0, 1.0, 1.0], "days": [1.0, 1.0, 0.0], "month_days": [1.0, 0.0, 0.0]}


def test_visit_window_in_days(tmp_path):
    people = pd.DataFrame({"id": ["1", "2"], "randomized": ["01-01-2020", "01-01-2020"]})
    visits = pd.DataFrame(
        {"id": ["1", "1", "2"], "date": ["01-07-2021", "15-07-2021", "01-01-2022"], "score": ["5", "6", "7"]}
    )
    selections = {
        "fu": {
            "from": "visits",
            "visit_window": {
                "date": "date",
                "anchor": {"table": "people", "column": "randomized"},
                "days": [500, 600],
                "target": 548,
            },
        }
    }
    data, problems = make_study(
        tmp_path,
        {"people": people, "visits": visits},
        {"people": {"date_format": "%d-%m-%Y"}, "visits": {"rows": "many", "date_format": "%d-%m-%Y"}},
        selections=selections,
    )
    result = apply_value_rule(data, "age", {"copy": {"table": "fu", "column": "score"}}, "float")
    assert (
        not problems and result.values.tolist()[0] == 5.0 and np.isnan(result.values.tolist()[1])
    )  # day 547 is nearer 548 than day 561
