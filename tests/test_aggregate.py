"""Aggregate-data file: format checks naming the row, Hedges' g, combination with IPD."""

import pytest

from ipdpool.aggregate import AggregateDataError, aggregate_analyses, read_aggregate, trial_effects_from_aggregate
from ipdpool.meta import hedges_g


@pytest.fixture
def schema(repo_root):
    return repo_root / "workflow" / "schemas" / "aggregate.schema.yaml"


@pytest.fixture
def demo_file(repo_root):
    return repo_root / "config" / "aggregate" / "ips_rcts.tsv"


def corrupted(tmp_path, demo_file, change):
    lines = demo_file.read_text(encoding="utf-8").splitlines()
    lines = change(lines)
    path = tmp_path / "aggregate.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def set_field(line: str, column: int, value: str) -> str:
    fields = line.split("\t")
    fields[column] = value
    return "\t".join(fields)


HEADER = [
    "trial",
    "reference",
    "outcome",
    "instrument",
    "direction",
    "arm",
    "n",
    "mean",
    "sd",
    "baseline_mean",
    "baseline_sd",
]


def test_the_demo_file_reads_and_has_six_trials(demo_file, schema):
    rows = read_aggregate(demo_file, schema)
    assert sorted(rows["trial"].unique()) == ["DK", "EU6", "NL", "NO", "SE", "US"]
    assert (rows[rows["trial"] == "NO"].groupby("outcome")["n"].sum() <= 410).all()  # 410 randomized


@pytest.mark.parametrize(
    "change,expected",
    [
        (
            lambda lines: lines[:3] + [set_field(lines[3], HEADER.index("sd"), "-4.8")] + lines[4:],
            (
                "line 4 (trial 'EU6', outcome 'quality_of_life', arm 'SAU'): "
                "sd: -4.8 is less than or equal to the minimum of 0"
            ),
        ),
        (
            lambda lines: lines[:2] + [set_field(lines[2], HEADER.index("n"), "1")] + lines[3:],
            "line 3 (trial 'EU6', outcome 'quality_of_life', arm 'IPS'): n: 1 is less than the minimum of 2",
        ),
        (lambda lines: lines[:3] + lines[4:], "lines 3: trial 'EU6', outcome 'quality_of_life' has no SAU arm"),
        (
            lambda lines: (
                lines[:2]
                + [
                    set_field(lines[2], HEADER.index("outcome"), "wellbeing"),
                    set_field(lines[3], HEADER.index("outcome"), "wellbeing"),
                ]
                + lines[4:]
            ),
            "line 3 (trial 'EU6', outcome 'wellbeing', arm 'IPS'): outcome: 'wellbeing' is not one of",
        ),
        (
            lambda lines: lines + [lines[2]],
            "trial 'EU6', outcome 'quality_of_life', arm 'IPS' is listed more than once",
        ),
    ],
    ids=["negative_sd", "n_below_2", "missing_arm", "unknown_outcome", "trial_listed_twice"],
)
def test_bad_rows_are_named(tmp_path, demo_file, schema, change, expected):
    with pytest.raises(AggregateDataError) as caught:
        read_aggregate(corrupted(tmp_path, demo_file, change), schema)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems
    assert str(caught.value).startswith("aggregate-data file")


def test_all_bad_rows_are_reported_at_once(tmp_path, demo_file, schema):
    def two_problems(lines):
        lines[2] = set_field(lines[2], HEADER.index("sd"), "-1")
        lines[5] = set_field(lines[5], HEADER.index("n"), "0")
        return lines

    with pytest.raises(AggregateDataError) as caught:
        read_aggregate(corrupted(tmp_path, demo_file, two_problems), schema)
    assert len(caught.value.problems) == 2


def test_reversed_instruments_flip_the_sign(demo_file, schema):
    rows = read_aggregate(demo_file, schema)
    effects = trial_effects_from_aggregate(rows).set_index(["trial", "outcome"])
    nl = rows[(rows["trial"] == "NL") & (rows["outcome"] == "functioning")].set_index("arm")
    g, _ = hedges_g(
        nl.loc["IPS", "n"],
        nl.loc["IPS", "mean"],
        nl.loc["IPS", "sd"],
        nl.loc["SAU", "n"],
        nl.loc["SAU", "mean"],
        nl.loc["SAU", "sd"],
    )
    assert effects.loc[("NL", "functioning"), "g"] == pytest.approx(-g)


def test_ipd_and_aggregate_trials_combine_and_agree_with_the_typed_summaries(demo_file, schema, repo_root):
    from tests_support import harmonized_pool

    from ipdpool.models.statistics import statistics_by_study

    analysis = {"outcomes": ["functioning"], "models": {}}
    trials, meta = aggregate_analyses(
        read_aggregate(demo_file, schema), statistics_by_study(harmonized_pool(repo_root), analysis)
    )
    combined = trials[(trials["analysis"] == "ipd_where_available") & (trials["outcome"] == "functioning")].set_index(
        "trial"
    )
    assert combined.loc["NO", "source"] == "aggregate" and (combined.drop("NO")["source"] == "IPD").all()
    typed = trials[(trials["analysis"] == "aggregate_only") & (trials["outcome"] == "functioning")].set_index("trial")
    # the summaries were typed (rounded) from the same data: the effects agree closely
    for trial in ("DK", "EU6", "SE", "US"):
        assert combined.loc[trial, "g"] == pytest.approx(typed.loc[trial, "g"], abs=0.02)
    row = meta[
        (meta["analysis"] == "ipd_where_available")
        & (meta["outcome"] == "functioning")
        & (meta["method"] == "REML")
        & (~meta["hksj"])
    ].iloc[0]
    assert row["k"] == 6 and row["k_ipd"] == 5 and row["k_aggregate"] == 1 and "aggregate: NO" in row["trials"]
