"""The headline summary: the inference it names, the flag of material disagreement, the order of its rows."""

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipdpool.harmonize.schema import load_schema
from ipdpool.labels import outcome_label
from ipdpool.summary import disagreement, headline_table, introduction

SCHEMA = load_schema(Path(__file__).resolve().parents[1] / "config" / "schema.yaml")["outcomes"]


def test_the_introduction_names_the_df_method_of_the_headline_rows():
    one_stage = pd.DataFrame(
        {"term": ["employed", "ips", "baseline"], "inference": ["t (Kenward-Roger)", "t (Kenward-Roger)", "z"]}
    )
    assert "(REML; inference: t (Kenward-Roger))." in introduction(one_stage)[1]


def test_without_any_model_the_introduction_says_so():
    assert "(REML; no model estimated)." in introduction(pd.DataFrame())[1]


# ------------------------------------------------------------ material disagreement and the headline


def interval(estimate, low, high, **extra):
    return {"estimate": estimate, "ci_low": low, "ci_high": high, "status": "estimated", **extra}


@pytest.mark.parametrize(
    "one, other, flagged",
    [
        ((0.27, 0.17, 0.37), (0.26, -0.09, 0.61), True),  # only one excludes 0 (issue 23's quality of life)
        ((0.27, 0.17, 0.37), (0.27, 0.11, 0.44), False),  # same conclusion, 1.65 times as wide
        ((0.11, -0.08, 0.29), (0.11, -0.39, 0.61), True),  # both include 0, 2.7 times as wide
        ((0.10, -0.10, 0.30), (0.10, -0.10, 0.30), False),
    ],
)
def test_material_disagreement_follows_the_documented_definition(one, other, flagged):
    assert bool(disagreement(interval(*one), interval(*other))) is flagged


finite = st.floats(-3, 3, allow_nan=False, allow_subnormal=False)  # 5e-324 * 0.5 underflows to 0


@settings(max_examples=200, deadline=None)
@given(finite, finite, finite, finite, st.floats(0.1, 10))
def test_disagreement_is_symmetric_and_unchanged_by_the_scale_of_the_smd(a, b, c, d, scale):
    one, other = interval(0, *sorted((a, b))), interval(0, *sorted((c, d)))
    assert bool(disagreement(one, other)) == bool(disagreement(other, one))
    scaled = [{**row, "ci_low": row["ci_low"] * scale, "ci_high": row["ci_high"] * scale} for row in (one, other)]
    assert bool(disagreement(*scaled)) == bool(disagreement(one, other))


def test_a_missing_interval_is_never_flagged():
    assert disagreement(interval(0.1, 0.05, 0.15), None) == ""
    assert disagreement(interval(0.1, 0.05, 0.15), {"status": "not estimated", "estimate": float("nan")}) == ""


def tables(outcomes: list[str], published: set[str]):
    one = pd.DataFrame(
        [
            {"outcome": o, "term": "employed", "n_studies": 4, "n_participants": 100 + i, **interval(0.2, 0.1, 0.3)}
            for i, o in enumerate(outcomes)
        ]
    )
    two = one.assign(method="REML", hksj=False, i2=40.0, tau2=0.01, pi_low=-0.1, pi_high=0.5)
    replication = pd.DataFrame(
        {
            "outcome": outcomes,
            "published_estimate": [0.3 if o in published else float("nan") for o in outcomes],
            "published_ci_low": 0.1,
            "published_ci_high": 0.5,
            "true_smd": 0.25,
        }
    )
    return one, two, replication


@settings(max_examples=30, deadline=None)
@given(st.permutations(list(SCHEMA)), st.sets(st.sampled_from(list(SCHEMA)), max_size=3))
def test_headline_puts_published_outcomes_first_in_schema_order_whatever_the_row_order(order, published):
    one, two, replication = tables(order, published)
    table = headline_table(one, two, replication, None, SCHEMA)
    expected = [o for o in SCHEMA if o in published] + [o for o in SCHEMA if o not in published]
    assert list(table["outcome"]) == [outcome_label(o, SCHEMA[o]) for o in expected]
    assert (table["I²"] == "40%").all() and (table["95% PI"] == "(-0.10, 0.50)").all()
