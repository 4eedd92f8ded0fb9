"""Differencing attacks on released statistics, tried as an adversary would, and the rules that
stop them: the nested-subset rule inside one bundle and the release ledger across releases."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests_support import harmonized_pool

from ipdpool.demo.files import write_raw_file
from ipdpool.demo.generate import build_demo
from ipdpool.federated import plain
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import conform, load_schema
from ipdpool.harmonize.study import harmonize_study
from ipdpool.models.statistics import study_statistics
from ipdpool.releases import (
    ReleaseRefused,
    Scope,
    design_keys,
    design_participants,
    exposing_centres,
    record_release,
    release,
    release_scope,
    released_sets,
    resolve_nested,
    small_differences,
)

KEY = b"site-ledger-test-key-5f1d2c9a7b3e"
LOG = logging.getLogger("test_releases")
SUBSET = 3
LEVELS = ["schizophrenia_spectrum", "bipolar"]


@pytest.fixture(scope="module")
def setting(repo_root):
    analysis = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())["analysis"]
    levels = load_schema(repo_root / "config" / "schema.yaml")["variables"]["diagnosis"]["allowed"]
    return analysis, levels, harmonized_pool(repo_root)


def small_study(n: int = 30, seed: int = 7) -> pd.DataFrame:
    """A complete study of n participants: every design has the same participants."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "study": "X",
            "participant_id": [f"p{i:03d}" for i in range(n)],
            "arm": np.where(np.arange(n) % 2 == 0, "IPS", "SAU"),
            "employed": rng.integers(0, 2, n).astype(float),
            "age": rng.normal(40, 10, n).round(),
            "sex": np.where(rng.random(n) < 0.5, "female", "male"),
            "diagnosis": rng.choice(["schizophrenia_spectrum", "bipolar"], n),
            "functioning_bl": rng.normal(50, 10, n),
            "functioning_bl_z": rng.normal(0, 1, n),
            "functioning_fu": rng.normal(50, 10, n),
            "functioning_fu_z": rng.normal(0, 1, n),
            "functioning_instrument": "GAF",
        }
    )


ANALYSIS = {
    "outcomes": ["functioning"],
    "models": {"employed": {"terms": ["employed"], "adjust": ["baseline"], "report": {"employed": {"employed": 1}}}},
    "sensitivity": {"covariates": ["age", "sex", "diagnosis"]},
}


def about_zero(entry: dict) -> np.ndarray:
    """[X y]'[X y] about 0 from products about the entry's reference (as an attacker would undo
    it: sum (c + r)(c + r)' = C + s r' + r s' + n r r', with s = C[:, 0] the sums about r)."""
    centred = np.asarray(entry["products"], float)
    reference = np.asarray(entry.get("reference", np.zeros(len(centred))), float)
    sums = centred[:, 0]
    return centred + np.outer(sums, reference) + np.outer(reference, sums) + entry["n"] * np.outer(reference, reference)


def products(statistics: dict, design: str) -> tuple[list[str], np.ndarray]:
    entry = statistics["outcomes"]["functioning"]["designs"][design]
    return entry["names"], about_zero(entry)


def shared_small_differences(sets: dict, part: pd.DataFrame, analysis: dict = ANALYSIS, levels=LEVELS) -> list:
    """Pairs of released statistics (whole or over a subgroup an indicator column marks) that sum a
    value in common and differ by 1 to SUBSET - 1."""
    return small_differences(sets, SUBSET, release_scope(part, analysis, sets, levels))


def design_items(mapping: dict, analysis: dict) -> list:
    """The (name, value) items of `mapping` that are designs ('outcome:model/design')."""
    designs = {f"{outcome}:{key}" for outcome, key, _ in design_keys(analysis)}
    return [(k, v) for k, v in mapping.items() if k in designs]


# ------------------------------------------------------------------ one bundle


def test_one_missing_baseline_gives_a_participant_away_without_the_rule_and_not_with_it():
    """The minimal case: participant p005 misses only the baseline score."""
    data = small_study()
    data.loc[5, ["functioning_bl", "functioning_bl_z"]] = np.nan
    victim = data.loc[5]
    levels = ["schizophrenia_spectrum", "bipolar"]
    # Without the rule (what bundles held before): the unadjusted design has 30 participants, the
    # primary 29; on their shared columns (intercept, employed, y) the difference of the two
    # cross-product matrices is p005's own [1, employed, y] outer product: employment and score exactly.
    old = study_statistics(data, ANALYSIS, levels)
    names_u, unadjusted = products(old, "employed/unadjusted")
    names_p, primary = products(old, "employed/primary")
    shared = [names_p.index(n) for n in names_u]
    difference = unadjusted - primary[np.ix_(shared, shared)]
    assert difference[0, 0] == 1  # one participant
    assert difference[0, names_u.index("employed")] == victim["employed"]
    assert difference[0, names_u.index("y")] == pytest.approx(victim["functioning_fu_z"], abs=1e-12)
    # harmonize: both designs use the 29 common complete cases, and differencing gives nothing
    released = release(data, ANALYSIS, levels, SUBSET, "harmonize")
    new, reasons, sets = released.statistics, released.reasons, released.sets
    names_u, unadjusted = products(new, "employed/unadjusted")
    names_p, primary = products(new, "employed/primary")
    assert np.allclose(unadjusted - primary[np.ix_(shared, shared)], 0, atol=1e-12)
    assert "employed/unadjusted" in new["outcomes"]["functioning"]["harmonized"]
    assert reasons and shared_small_differences(sets, data) == []
    # the harmonized design is exactly the pooled-IPD statistics of those 29 participants
    expected = study_statistics(data.drop(index=5), ANALYSIS, levels)["outcomes"]["functioning"]["designs"]
    np.testing.assert_array_equal(unadjusted, about_zero(expected["employed/unadjusted"]))
    # withhold: the smaller design (primary, 29) is not released, with its reason
    withheld = release(data, ANALYSIS, levels, SUBSET, "withhold")
    kept = withheld.statistics
    assert "employed/primary" not in kept["outcomes"]["functioning"]["designs"]
    assert "withheld" in kept["outcomes"]["functioning"]["withheld"]["employed/primary"]
    assert shared_small_differences(withheld.sets, data) == []


def test_a_difference_of_nfilter_subset_or_more_is_left_alone():
    """Three participants of one arm, employment status, sex and diagnosis without a baseline: every
    design, and every subgroup of a design, differs from the others by 0 or 3, so nothing changes."""
    data = small_study()
    cells = data.groupby(["arm", "employed", "sex", "diagnosis"]).groups.values()
    trio = next(list(rows[:3]) for rows in cells if len(rows) >= 3)
    data.loc[trio, ["functioning_bl", "functioning_bl_z"]] = np.nan
    released = release(data, ANALYSIS, LEVELS, SUBSET, "harmonize")
    assert released.reasons == {}
    assert released.statistics["outcomes"]["functioning"]["designs"]["employed/unadjusted"]["n"] == 30


def test_a_difference_of_three_split_two_to_one_between_the_employed_and_the_others_is_not():
    """Three participants without a baseline, two employed and one not: the designs differ by 3,
    but by 2 among the employed and 1 among the others, and the employment column's
    cross-products are sums over exactly those: the unadjusted design is harmonized to the primary
    design's 27. The follow-up summaries by arm and Table 1 stay whole: no design of this model
    has the arm column, so none gives sums by arm to subtract them from."""
    data = small_study()
    assert data.loc[[3, 5, 8], "employed"].tolist() == [1, 1, 0]
    data.loc[[3, 5, 8], ["functioning_bl", "functioning_bl_z"]] = np.nan
    released = release(data, ANALYSIS, LEVELS, SUBSET, "harmonize")
    assert set(released.reasons) == {"functioning:employed/unadjusted"}
    assert "count of employed" in released.reasons["functioning:employed/unadjusted"]
    designs = released.statistics["outcomes"]["functioning"]["designs"]
    assert designs["employed/unadjusted"]["n"] == designs["employed/primary"]["n"] == 27
    arms = released.statistics["outcomes"]["functioning"]["arms"]
    assert (arms["IPS"]["n"], arms["SAU"]["n"], released.table1["SAU"]["age"]["n"]) == (15, 15, 15)
    assert shared_small_differences(released.sets, data) == []


def test_on_the_demo_no_two_released_statistics_summing_a_common_value_differ_by_one_or_two(setting):
    """Before the rule, released statistics of the demo (designs, Table 1, follow-up scores by arm,
    and their subgroups) differ by 1 or 2 participants (NL, SE, US); after it, none does, every
    released design's and arm summary's n is the size of its participant set, and a harmonized
    design holds the pooled-IPD statistics of its participants."""
    analysis, levels, pooled = setting
    before = after = 0
    for study in ("NL", "SE"):
        part = pooled[pooled["study"] == study]
        before += len(shared_small_differences(released_sets(part, analysis), part, analysis, levels))
        released = release(part, analysis, levels, SUBSET, "harmonize")
        statistics, reasons, sets = released.statistics, released.reasons, released.sets
        after += len(shared_small_differences(sets, part, analysis, levels))
        for key, ids in design_items(sets, analysis):
            outcome, design = key.split(":", 1)
            assert statistics["outcomes"][outcome]["designs"][design]["n"] == len(ids), key
        for outcome in analysis["outcomes"]:
            for arm in ("IPS", "SAU"):
                summary = statistics["outcomes"][outcome]["arms"][arm]
                assert summary["n"] == len(sets.get(f"{outcome}:arms/{arm}", ())), (outcome, arm)
                assert released.table1[arm]["age"]["n"] == len(sets.get(f"table1/{arm}/age", ()))
        key = sorted(k for k, _ in design_items(reasons, analysis) if k in sets)[0]  # a harmonized one
        outcome, design = key.split(":", 1)
        alone = study_statistics(part[part["participant_id"].isin(sets[key])], analysis, levels)
        ours, theirs = statistics["outcomes"][outcome]["designs"][design], alone["outcomes"][outcome]["designs"][design]
        assert ours["names"] == theirs["names"] and ours["n"] == theirs["n"]
        np.testing.assert_array_equal(np.asarray(ours["products"]), np.asarray(theirs["products"]))
    assert before > 100 and after == 0


def test_at_another_seed_of_the_demo_no_two_released_statistics_differ_by_one_or_two(setting, tmp_path):
    """The demo drawn with seed 1 (bench/bench_release_rule.py runs five seeds), study SE, both choices."""
    analysis, levels, _ = setting
    for raw in build_demo(1).exports["SE"].files:
        write_raw_file(raw, tmp_path / "resources" / "demo" / "raw" / "SE")
    repo = Path(__file__).resolve().parents[1]
    schema = load_schema(repo / "config" / "schema.yaml")
    part = harmonize_study(load_rules(repo / "config" / "studies" / "SE.yaml"), schema, KEY, tmp_path).data
    part = conform(part, schema)
    assert len(shared_small_differences(released_sets(part, analysis), part, analysis, levels)) > 100
    for choice in ("harmonize", "withhold"):
        released = release(part, analysis, levels, SUBSET, choice)
        statistics, reasons, sets = released.statistics, released.reasons, released.sets
        assert reasons and shared_small_differences(sets, part, analysis, levels) == []
        for key, ids in design_items(sets, analysis):
            outcome, design = key.split(":", 1)
            assert statistics["outcomes"][outcome]["designs"][design]["n"] == len(ids), (choice, key)


def test_on_the_demo_the_old_bundles_gave_participants_away(setting):
    """The attack on the statistics as they were sent before the rule: wherever a model's
    unadjusted design has exactly one participant more than its primary design, the difference of
    their cross-products on the unadjusted columns is that participant's row, arm, employment and
    follow-up score exactly. The rule leaves no such pair (previous test)."""
    analysis, levels, pooled = setting
    recovered = 0
    for study in ("NL", "SE", "US"):
        part = pooled[pooled["study"] == study]
        sets = design_participants(part, analysis)
        old = study_statistics(part, analysis, levels)
        for outcome in analysis["outcomes"]:
            for model in analysis["models"]:
                wide, narrow = sets[f"{outcome}:{model}/unadjusted"], sets[f"{outcome}:{model}/primary"]
                if len(wide - narrow) != 1 or narrow - wide:
                    continue
                (victim,) = part[part["participant_id"].isin(wide - narrow)].to_dict("records")
                designs = old["outcomes"][outcome]["designs"]
                names = designs[f"{model}/unadjusted"]["names"]
                columns = [designs[f"{model}/primary"]["names"].index(name) for name in names]
                wide_products = about_zero(designs[f"{model}/unadjusted"])
                gap = wide_products - about_zero(designs[f"{model}/primary"])[np.ix_(columns, columns)]
                row = dict(zip(names, gap[0]))
                assert row["Intercept"] == 1 and row["y"] == pytest.approx(victim[f"{outcome}_fu_z"], abs=1e-9)
                if "ips" in row:
                    assert row["ips"] == (victim["arm"] == "IPS")
                if "employed" in row:
                    assert row["employed"] == victim["employed"]
                recovered += 1
    assert recovered >= 3


family = st.dictionaries(
    st.sampled_from([f"o{i}:m/d" for i in range(8)]),
    st.frozensets(st.integers(0, 25), max_size=25),
    min_size=2,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family, st.sampled_from(["harmonize", "withhold"]), st.permutations(list(range(26))))
def test_the_rule_leaves_no_small_difference_only_shrinks_and_ignores_who_is_who(sets, choice, relabel):
    kept, reasons = resolve_nested(sets, SUBSET, choice)
    assert small_differences(kept, SUBSET) == []
    assert all(kept[k] <= sets[k] for k in kept)
    assert set(sets) - set(kept) <= set(reasons) and set(reasons) <= set(sets)
    # the same sets with participants relabelled: the same designs changed, by the same sizes
    renamed = {k: frozenset(relabel[i] for i in v) for k, v in sets.items()}
    kept_renamed, reasons_renamed = resolve_nested(renamed, SUBSET, choice)
    assert reasons_renamed == reasons
    assert {k: len(v) for k, v in kept_renamed.items()} == {k: len(v) for k, v in kept.items()}


# ------------------------------------------------------------------ per-centre blocks

CENTRES = {**ANALYSIS, "sensitivity": {**ANALYSIS["sensitivity"], "variants": ["centre_within_study"]}}


def two_centre_study() -> pd.DataFrame:
    """small_study at two sites: 12 participants at 'Zurich' (cells of 6 per arm, all unemployed,
    female, bipolar, so no cell is small) and 18 at 'Bern'."""
    data = small_study()
    data["site"] = np.where(np.arange(len(data)) < 12, "Zurich", "Bern")
    data.loc[:11, ["employed", "sex", "diagnosis"]] = [0.0, "female", "bipolar"]
    return data


def test_centre_blocks_add_up_to_their_design_under_pseudonymous_keys():
    data = two_centre_study()
    released = release(data, CENTRES, LEVELS, SUBSET, "harmonize")
    design = released.statistics["outcomes"]["functioning"]["designs"]["employed/primary"]
    blocks = design["centres"]
    assert sorted(blocks) == ["c1", "c2"] and [blocks[c]["n"] for c in ("c1", "c2")] == [18, 12]  # sorted sites
    assert "Zurich" not in json.dumps(plain(released.statistics)) and "Bern" not in json.dumps(plain(blocks))
    total = sum(about_zero(block) for block in blocks.values())
    np.testing.assert_allclose(total, about_zero(design), rtol=1e-12, atol=1e-9)
    # each block is the design over its centre's rows, and a released statistic for the ledger
    alone = study_statistics(data[data["site"] == "Zurich"], ANALYSIS, LEVELS)
    np.testing.assert_allclose(about_zero(blocks["c2"]), products(alone, "employed/primary")[1], rtol=1e-12, atol=1e-9)
    assert len(released.sets["functioning:employed/primary@c2"]) == 12
    assert not small_differences(released.sets, SUBSET, released.scope)
    assert released.scope.splits["functioning:employed/primary@c2"] == ("employed",)


@settings(max_examples=10, deadline=None)
@given(st.permutations(list(range(30))), st.sampled_from(["", "site ", "Hôpital "]))
def test_centre_blocks_ignore_row_order_and_the_spelling_of_site_names(order, prefix):
    data = two_centre_study()
    blocks = release(data, CENTRES, LEVELS, SUBSET, "harmonize").statistics
    shuffled = data.iloc[order].reset_index(drop=True)
    shuffled["site"] = prefix + shuffled["site"]
    again = release(shuffled, CENTRES, LEVELS, SUBSET, "harmonize").statistics
    first, second = (s["outcomes"]["functioning"]["designs"]["employed/primary"]["centres"] for s in (blocks, again))
    assert sorted(first) == sorted(second) == ["c1", "c2"]
    for centre in first:
        assert first[centre]["n"] == second[centre]["n"]
        np.testing.assert_allclose(about_zero(first[centre]), about_zero(second[centre]), rtol=1e-12, atol=1e-9)


def one_employed_at_zurich(data):
    data.loc[3, "employed"] = 1.0


def sites_of(first: int):
    def edit(data):
        data["site"] = np.where(np.arange(len(data)) < first, "Zurich", "Bern")

    return edit


@pytest.mark.parametrize(
    "edit, why",
    [
        (one_employed_at_zurich, "cell"),
        (sites_of(2), "nfilter_subset"),
        (sites_of(8), "nfilter_glm"),
    ],
)
def test_small_centres_withhold_the_design_s_blocks_with_a_reason_and_the_study_enters_as_one_centre(edit, why):
    data = two_centre_study()
    edit(data)
    released = release(data, CENTRES, LEVELS, SUBSET, "harmonize")
    assert "centres" not in released.statistics["outcomes"]["functioning"]["designs"]["employed/primary"]
    reason = released.reasons["functioning:employed/primary@centres"]
    assert reason.startswith("withheld: per-centre blocks") and why in reason and "Zurich" not in reason
    assert not [name for name in released.sets if "@" in name]


def test_a_centre_block_one_participant_away_from_another_statistic_is_withheld():
    """Zurich misses every age, so the covariates design is Bern's participants: Bern's block of
    the primary design over the same set is safe, but one Bern participant more without an age
    would make the two differ by that one participant's values."""
    data = two_centre_study()
    data.loc[:11, "age"] = np.nan
    released = release(data, CENTRES, LEVELS, SUBSET, "harmonize")
    assert "centres" in released.statistics["outcomes"]["functioning"]["designs"]["employed/primary"]
    assert not small_differences(released.sets, SUBSET, released.scope)
    data.loc[20, ["age", "employed"]] = [np.nan, 0.0]
    released = release(data, CENTRES, LEVELS, SUBSET, "harmonize")
    assert "centres" not in released.statistics["outcomes"]["functioning"]["designs"]["employed/primary"]
    reason = released.reasons["functioning:employed/primary@centres"]
    assert "functioning:employed/primary@c1" in reason and "functioning:employed/covariates" in reason
    assert "differ by 0 and 1" in reason or "differ by 1 and 0" in reason


# ------------------------------------------------------------------ across releases


def test_a_withdrawal_then_re_export_is_refused_and_names_no_one(setting, tmp_path):
    analysis, levels, pooled = setting
    part = pooled[pooled["study"] == "SE"].reset_index(drop=True)
    ledger = tmp_path / "ledger" / "SE.json"
    record_release(ledger, KEY, "SE", released_sets(part, analysis), SUBSET, None, LOG)
    withdrawn = part.drop(index=10)
    victim = part.loc[10]
    # The attack, had the second bundle been written: the first bundle's statistics minus the
    # second's are the withdrawn participant's values, e.g. their follow-up score and arm.
    first = study_statistics(part, analysis, levels)["outcomes"]["functioning"]["designs"]["ips/unadjusted"]
    second = study_statistics(withdrawn, analysis, levels)["outcomes"]["functioning"]["designs"]["ips/unadjusted"]
    gap = about_zero(first) - about_zero(second)
    names = first["names"]
    assert gap[0, 0] == 1 and gap[0, names.index("ips")] == (victim["arm"] == "IPS")
    assert gap[0, names.index("y")] == pytest.approx(victim["functioning_fu_z"], abs=1e-9)
    # The ledger refuses the second release, naming statistics and sizes, not the participant.
    with pytest.raises(ReleaseRefused) as refused:
        record_release(ledger, KEY, "SE", released_sets(withdrawn, analysis), SUBSET, None, LOG)
    message = str(refused.value)
    design = "functioning:ips/unadjusted"  # named with every statistic of the same participants
    assert [
        line
        for line in message.splitlines()
        if design in line.split(" would differ")[0]
        and design in line.split(" would differ")[1]
        and "by 1 participant(s) removed and 0 added" in line
    ]
    assert re.search(rf"study SE: statistic [^\n]*table1/{victim['arm']}\b(?!/)[^\n]* would differ", message)
    text = ledger.read_text()
    assert victim["participant_id"] not in message and not [p for p in part["participant_id"] if p in text]
    assert len(json.loads(text)["releases"]) == 1  # the refused release is not recorded


def test_a_change_of_nfilter_subset_participants_is_allowed_and_a_new_line_is_explicit(setting, tmp_path, caplog):
    analysis, _, pooled = setting
    part = pooled[pooled["study"] == "SE"].reset_index(drop=True)
    ledger = tmp_path / "SE.json"
    record_release(ledger, KEY, "SE", released_sets(part, analysis), SUBSET, None, LOG)
    # the same data again: nothing differs, nothing new recorded
    record_release(ledger, KEY, "SE", released_sets(part, analysis), SUBSET, None, LOG)
    assert len(json.loads(ledger.read_text())["releases"]) == 1
    # three participants of one arm with the same missing values: every statistic loses 0 or 3
    pattern = part.notna().astype(int).astype(str).agg("".join, axis=1) + part["arm"]
    trio = next(list(rows[:3]) for rows in pattern.groupby(pattern).groups.values() if len(rows) >= 3)
    record_release(ledger, KEY, "SE", released_sets(part.drop(index=trio), analysis), SUBSET, None, LOG)
    # one more withdrawal is refused in this line; a new, named line with a reason accepts it, logged
    fewer = part.drop(index=[*trio, 0])
    with pytest.raises(ReleaseRefused):
        record_release(ledger, KEY, "SE", released_sets(fewer, analysis), SUBSET, None, LOG)
    with pytest.raises(ReleaseRefused, match="needs federated.release_line.reason"):
        record_release(ledger, KEY, "SE", released_sets(fewer, analysis), SUBSET, {"name": "2"}, LOG)
    line = {"name": "2", "reason": "participant withdrew; the centre deleted release line 1"}
    with caplog.at_level(logging.WARNING):
        entry = record_release(ledger, KEY, "SE", released_sets(fewer, analysis), SUBSET, line, LOG)
    assert entry["release_line"] == "2" and "release line '2' started" in caplog.text
    assert json.loads(ledger.read_text())["lines"][-1]["reason"] == line["reason"]


@settings(max_examples=40, deadline=None)
@given(
    st.frozensets(st.integers(0, 40), min_size=5, max_size=40),
    st.frozensets(st.integers(0, 40), max_size=6),
    st.frozensets(st.integers(41, 60), max_size=6),
    st.binary(min_size=16, max_size=32),
)
def test_the_ledger_refuses_exactly_differences_of_one_to_nfilter_subset_minus_one(first, removed, added, key):
    """Whatever the key, a release is refused iff the statistic lost or gained 1 to 2 participants."""
    import tempfile

    second = (first - removed) | added
    with tempfile.TemporaryDirectory() as folder:
        ledger = Path(folder) / "X.json"
        record_release(ledger, key, "X", {"s": frozenset(map(str, first))}, SUBSET, None, LOG)
        lost, gained = len(first & removed), len(added)
        refused = 0 < lost < SUBSET or 0 < gained < SUBSET
        try:
            record_release(ledger, key, "X", {"s": frozenset(map(str, second))}, SUBSET, None, LOG)
            assert not refused
        except ReleaseRefused as error:
            assert refused and f"by {lost} participant(s) removed and {gained} added" in str(error)


@pytest.mark.parametrize(
    "first, second",
    [
        ("y:primary/adjusted", "y:main/adjusted"),  # the model renamed in the config
        ("y:primary/adjusted", "y:primary/unadjusted"),  # its sums are a sub-block of the adjusted design's
        ("table1/IPS", "y:arms/IPS"),
    ],
)
def test_the_ledger_compares_every_new_set_with_every_earlier_one_whatever_its_name(first, second, tmp_path):
    everyone = frozenset(f"p{i}" for i in range(20))
    ledger = tmp_path / "X.json"
    record_release(ledger, KEY, "X", {first: everyone}, SUBSET, None, LOG)
    with pytest.raises(ReleaseRefused) as refused:
        record_release(ledger, KEY, "X", {second: everyone - {"p7"}}, SUBSET, None, LOG)
    assert f"statistic {second} would differ from statistic {first} of the release of" in str(refused.value)
    assert "by 1 participant(s) removed and 0 added" in str(refused.value) and "p7" not in str(refused.value)
    # a difference of nfilter_subset or more under another name is allowed, and so is the same set again
    record_release(ledger, KEY, "X", {second: everyone - {"p7", "p8", "p9"}}, SUBSET, None, LOG)
    last = record_release(ledger, KEY, "X", {"other": everyone}, SUBSET, None, LOG)
    assert last["sequence"] == 3  # every release written is numbered; the refused one is not


@settings(max_examples=40, deadline=None)
@given(
    st.frozensets(st.integers(0, 40), min_size=5, max_size=40),
    st.frozensets(st.integers(0, 40), max_size=6),
    st.frozensets(st.integers(41, 60), max_size=6),
)
def test_across_names_the_ledger_refuses_exactly_symmetric_differences_of_one_to_nfilter_subset_minus_one(
    first, removed, added
):
    import tempfile

    second = (first - removed) | added
    with tempfile.TemporaryDirectory() as folder:
        ledger = Path(folder) / "X.json"
        record_release(ledger, KEY, "X", {"a": frozenset(map(str, first))}, SUBSET, None, LOG)
        refused = 0 < len(first & removed) + len(added) < SUBSET
        try:
            record_release(ledger, KEY, "X", {"b": frozenset(map(str, second))}, SUBSET, None, LOG)
            assert not refused
        except ReleaseRefused:
            assert refused


def test_an_edited_ledger_is_refused_and_a_lost_one_stops_a_site_that_released_before(tmp_path, caplog):
    """F1: the ledger is keyed (HMAC under the site key); deleting it no longer turns the check off silently."""
    everyone = frozenset(f"p{i}" for i in range(20))
    ledger = tmp_path / "X.json"
    with caplog.at_level(logging.WARNING):
        record_release(ledger, KEY, "X", {"s": everyone}, SUBSET, None, LOG)
    assert "no release ledger at" in caplog.text and "starting a new one" in caplog.text
    kept = ledger.read_text()
    # an edit that would make the check skip the earlier release (its release line renamed)
    edited = json.loads(kept)
    edited["releases"][0]["release_line"] = "0"
    ledger.write_text(json.dumps(edited))
    with pytest.raises(ReleaseRefused, match="was changed outside ipdpool .*MAC under the site's key") as refused:
        record_release(ledger, KEY, "X", {"s": everyone - {"p1"}}, SUBSET, None, LOG)
    # attack5 R6: the advice must not be a plain restore from an older backup (it forgets releases)
    assert "restore it from a backup" not in str(refused.value)
    assert "Do not restore an older backup" in str(refused.value) and "federated.release_line" in str(refused.value)
    # the same file is refused under another key (the MAC is keyed, not a plain checksum)
    ledger.write_text(kept)
    with pytest.raises(ReleaseRefused, match="was changed outside ipdpool"):
        record_release(ledger, b"another key", "X", {"s": everyone}, SUBSET, None, LOG)
    # a lost ledger at a site that released before: refused, unless a new line is started explicitly
    ledger.unlink()
    with pytest.raises(ReleaseRefused, match="there is no release ledger at .* although this site has released"):
        record_release(ledger, KEY, "X", {"s": everyone - {"p1"}}, SUBSET, None, LOG, released_before=True)
    with pytest.raises(ReleaseRefused, match="there is no release ledger"):
        record_release(ledger, KEY, "X", {"s": everyone - {"p1"}}, SUBSET, {"name": "2"}, LOG, released_before=True)
    assert not ledger.exists()
    line = {"name": "2", "reason": "ledger lost; the centre deleted the earlier bundles"}
    entry = record_release(ledger, KEY, "X", {"s": everyone - {"p1"}}, SUBSET, line, LOG, released_before=True)
    assert entry["release_line"] == "2" and json.loads(ledger.read_text())["lines"][0]["reason"] == line["reason"]


def flat(value, prefix="") -> dict:
    """Nested numbers as one mapping path -> value (to compare with a tolerance: sums in another order)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}/{key}").items()}
    return {prefix: value}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 29), st.sampled_from(["functioning_bl", "functioning_fu", "age", "sex"])), max_size=8
    ),
    st.sampled_from(["harmonize", "withhold"]),
    st.randoms(use_true_random=False),
)
def test_what_is_released_leaves_no_small_difference_and_ignores_row_order_and_pseudonyms(holes, choice, rng):
    """Random missing values in a small study: after the rule no two sums of one quantity differ by
    1 to SUBSET - 1, every released design has its participant set's n; and shuffling the rows and
    renaming every pseudonym changes nothing that is released."""
    data = small_study()
    for row, column in holes:
        data.loc[row, [column, f"{column}_z"] if column.startswith("functioning") else [column]] = np.nan
    released = release(data, ANALYSIS, LEVELS, SUBSET, choice)
    assert shared_small_differences(released.sets, data) == []
    for key, ids in design_items(released.sets, ANALYSIS):
        outcome, design = key.split(":", 1)
        assert released.statistics["outcomes"][outcome]["designs"][design]["n"] == len(ids)
    order = list(data.index)
    rng.shuffle(order)
    renamed = data.loc[order].assign(participant_id=lambda d: "q" + d["participant_id"].str[::-1])
    again = release(renamed.reset_index(drop=True), ANALYSIS, LEVELS, SUBSET, choice)
    assert again.reasons == released.reasons
    ours, theirs = flat(again.table1), flat(released.table1)
    floats = [k for k, v in theirs.items() if isinstance(v, float)]
    assert {k: ours[k] for k in floats} == pytest.approx({k: theirs[k] for k in floats}, rel=1e-12)
    assert {k: v for k, v in ours.items() if k not in floats} == {k: v for k, v in theirs.items() if k not in floats}
    for outcome, content in released.statistics["outcomes"].items():
        for design, entry in content["designs"].items():
            other = again.statistics["outcomes"][outcome]["designs"][design]
            assert other["n"] == entry["n"]
            np.testing.assert_allclose(other["products"], entry["products"], rtol=1e-12, atol=1e-9)


# ------------------------------------------------------------------ combinations of three to five sums

AGE = (frozenset(), ("age",))
AGE_IPS, AGE_SAU = (frozenset({("IPS", True)}), ("age",)), (frozenset({("IPS", False)}), ("age",))


def block(label: str, size: int) -> frozenset:
    return frozenset(f"{label}{i}" for i in range(size))


def isolated(sets: dict[str, frozenset], scope: Scope, arms: dict[str, frozenset]) -> set[str]:
    """Participants whose age some combination of the released sums gives, found independently of
    releases.py: e_p solves M' c = e_p (least squares, zero residual) over the sums' 0/1 rows."""
    ids = sorted(set().union(*sets.values()))
    rows = []
    for name, ids_ in sets.items():
        for restrictions, _ in scope.quantities[name]:
            members = ids_
            for _, member in restrictions:
                members = members & (arms["IPS"] if member else arms["SAU"])
            rows.append([float(i in members) for i in ids])
    matrix = np.array(rows)
    found = set()
    for k, pid in enumerate(ids):
        target = np.eye(len(ids))[k]
        solution = np.linalg.lstsq(matrix.T, target, rcond=None)[0]
        if np.abs(matrix.T @ solution - target).max() < 1e-9:
            found.add(pid)
    return found


def r2_blocks() -> tuple[dict[str, frozenset], Scope, dict]:
    """attack5 R2: X = S+a+P+Q, Y = S+P+R, Z = S+Q+R, W = S+R, T = S+a+P+Q+R (P, Q, R of 3): every
    pair differs by 0 or >= 3 on each side, yet a = T + W - Y - Z."""
    s, p, q, r, a = block("s", 20), block("p", 3), block("q", 3), block("r", 3), frozenset({"lone"})
    sets = {"X": s | a | p | q, "Y": s | p | r, "Z": s | q | r, "W": s | r, "T": s | a | p | q | r}
    everyone = frozenset().union(*sets.values())
    arms = {"IPS": everyone, "SAU": frozenset()}
    return sets, Scope(groups={"IPS": everyone}, quantities={name: {AGE} for name in sets}), arms


def r1_three_statistics() -> tuple[dict[str, frozenset], Scope, dict]:
    """attack5 R1: Table 1's IPS age over S_IPS+a+bcde, a design without an IPS column over
    S+bcde, and one with it over S (its SAU part S_SAU): age_a = T1_IPS - qol + dep_SAU."""
    s_ips, s_sau, bcde, a = block("i", 15), block("u", 15), block("b", 4), frozenset({"lone"})
    arms = {"IPS": s_ips | bcde | a, "SAU": s_sau}
    sets = {"table1/IPS/age": s_ips | bcde | a, "qol": s_ips | s_sau | bcde, "dep": s_ips | s_sau}
    quantities = {"table1/IPS/age": {AGE_IPS}, "qol": {AGE}, "dep": {AGE, AGE_IPS, AGE_SAU}}
    return sets, Scope(groups={"IPS": arms["IPS"]}, quantities=quantities), arms


@pytest.mark.parametrize("case", [r1_three_statistics, r2_blocks])
@pytest.mark.parametrize("choice", ["harmonize", "withhold"])
def test_no_combination_of_released_sums_isolates_a_participant(case, choice):
    sets, scope, arms = case()
    assert small_differences(sets, SUBSET, scope) == []  # the pairwise rule sees nothing
    assert isolated(sets, scope, arms) == {"lone"}
    final, reasons = resolve_nested(sets, SUBSET, choice, scope)
    assert isolated(final, scope, arms) == set()
    withheld = [name for name, reason in reasons.items() if "linear combination check" in reason]
    # greedy, the smallest statistic first: one is enough to break these combinations
    assert withheld == [min(sets, key=lambda name: (len(sets[name]), name))] and withheld[0] not in final


def test_the_ledger_refuses_a_release_that_completes_a_combination_with_an_earlier_one(tmp_path):
    """attack5 R5: release 1 gives X, Y, T and release 2 X, Z, W, T of R2's blocks: neither alone
    isolates anyone, every pair differs by 0 or >= 3, but a = T(1) + W(2) - Y(1) - Z(2)."""
    sets, scope, arms = r2_blocks()
    first = {name: sets[name] for name in ("X", "Y", "T")}
    second = {name: sets[name] for name in ("X", "Z", "W", "T")}
    assert isolated(first, scope, arms) == isolated(second, scope, arms) == set()
    renamed = {f"{name}'": ids for name, ids in second.items()}  # the same sums under other names
    assert isolated({**first, **renamed}, Scope(quantities={n: {AGE} for n in [*first, *renamed]}), arms) == {"lone"}
    ledger = tmp_path / "X.json"
    record_release(ledger, KEY, "X", first, SUBSET, None, LOG, scope=scope)
    with pytest.raises(ReleaseRefused, match=r"sums of age released in this line .* isolate 1 participant") as refused:
        record_release(ledger, KEY, "X", second, SUBSET, None, LOG, scope=scope)
    assert not re.search(r"\b(lone|[spqr]\d+)\b", str(refused.value))  # names no one


def test_centre_blocks_that_split_a_combination_of_released_sums_are_withheld():
    """attack6 X1: designs X = S+a+d+P+Q, W = S, Y = S+P, Z = S+Q give X + W - Y - Z = {a, d}
    (nobody alone), and every pair differs by 0 or >= 3; their blocks in centres c1 (a, half of
    each block) and c2 (d, the other half) give a alone: X@c1 + W@c1 - Y@c1 - Z@c1."""
    s1, s2 = block("s", 10), block("t", 10)
    p1, p2, q1, q2 = block("p", 3), block("o", 3), block("q", 3), block("r", 3)
    centre = {"c1": s1 | p1 | q1 | {"a"}, "c2": s2 | p2 | q2 | {"d"}}
    s, p, q = s1 | s2, p1 | p2, q1 | q2
    final = {"X": s | p | q | {"a", "d"}, "W": s, "Y": s | p, "Z": s | q}
    everyone = frozenset().union(*final.values())
    scope, arms = Scope(groups={"IPS": everyone}, quantities={n: {AGE} for n in final}), {"IPS": everyone}
    assert small_differences(final, SUBSET, scope) == [] and isolated(final, scope, arms) == set()
    candidates = {name: {c: ids & sites for c, sites in centre.items()} for name, ids in final.items()}
    blocks = {f"{n}@{c}": ids for n, members in candidates.items() for c, ids in members.items()}
    block_scope = Scope(groups=scope.groups, quantities={n: {AGE} for n in [*final, *blocks]})
    assert isolated({**final, **blocks}, block_scope, arms) == {"a", "d"}
    while exposing := exposing_centres(final, candidates, scope):
        del candidates[exposing[0]]
    assert candidates  # not every design's blocks had to go
    kept = {f"{n}@{c}": ids for n, members in candidates.items() for c, ids in members.items()}
    assert (
        isolated({**final, **kept}, Scope(groups=scope.groups, quantities={n: {AGE} for n in [*final, *kept]}), arms)
        == set()
    )
