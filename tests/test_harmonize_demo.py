"""End to end on the demo: harmonized values equal the generator's known values."""

import hashlib
import hmac
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ipdpool.demo.design import INSTRUMENTS, OUTCOMES, TRIALS
from ipdpool.harmonize.pseudonym import ENV_VAR, PseudonymKeyError, load_key
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.harmonize.study import harmonize_study

KEY = b"test-key-0123456789abcdef"
STUDIES = list(TRIALS)


@pytest.fixture(scope="module")
def harmonized(repo_root):
    schema = load_schema(repo_root / "config" / "schema.yaml")
    results = {}
    for study in STUDIES:
        rules = load_rules(repo_root / "config" / "studies" / f"{study}.yaml")
        results[study] = harmonize_study(rules, schema, KEY, base_dir=repo_root)
    return results


def as_float(values) -> np.ndarray:
    return pd.Series(values).astype(float).to_numpy()


def assert_same(actual, expected, atol=1e-9):
    actual, expected = as_float(actual), as_float(expected)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual[~np.isnan(actual)], expected[~np.isnan(expected)], atol=atol)


@pytest.mark.parametrize("study", STUDIES)
def test_one_row_per_randomized_participant_in_raw_order(harmonized, demo, study):
    data, truth = harmonized[study].data, demo.exports[study].truth
    assert len(data) == len(truth) == TRIALS[study].n
    assert data["participant_id"].is_unique
    assert (data["site"].to_numpy() == truth["site"].to_numpy()).all()


@pytest.mark.parametrize("study", STUDIES)
def test_participant_variables_equal_the_generator_truth(harmonized, demo, study):
    data, truth = harmonized[study].data, demo.exports[study].truth
    trial = TRIALS[study]
    assert (data["arm"].eq("IPS").astype(int).to_numpy() == truth["ips"].to_numpy()).all()
    assert (data["arm_original"].to_numpy() == truth["arm_label"].to_numpy()).all()
    assert set(data.loc[data["arm"] == "IPS", "arm_original"]) == set(trial.ips_arms)
    assert_same(data["employed"], truth["employed_recorded"])
    assert_same(data["followup_months"], truth["followup_months"], atol=1e-9)
    assert_same(data["age"], truth["age"])
    assert (data["sex"].to_numpy() == truth["sex"].to_numpy()).all()
    assert (data["diagnosis"].to_numpy() == truth["diagnosis"].to_numpy()).all()


@pytest.mark.parametrize("study", STUDIES)
def test_outcome_scores_equal_the_generator_values_reversed_where_needed(harmonized, demo, repo_root, study):
    data, truth = harmonized[study].data, demo.exports[study].truth
    rules = load_rules(repo_root / "config" / "studies" / f"{study}.yaml")
    for outcome in OUTCOMES:
        name = TRIALS[study].instruments.get(outcome)
        if name is None:
            assert data[[f"{outcome}_bl", f"{outcome}_fu", f"{outcome}_instrument"]].isna().all().all()
            continue
        instrument = INSTRUMENTS[name]
        for when, part in (("bl", "baseline"), ("fu", "followup")):
            delivered = truth[f"{outcome}_{when}_score"].to_numpy(dtype=float)
            exact = truth[f"{outcome}_{when}_exact"].to_numpy(dtype=float)
            if instrument.direction < 0:
                delivered = instrument.low + instrument.high - delivered
                exact = instrument.low + instrument.high - exact
            value = data[f"{outcome}_{when}"].to_numpy(dtype=float)
            missing_items = truth.get(f"{outcome}_{when}_items_missing", pd.Series(0, index=truth.index)).to_numpy()
            items = rules["outcomes"][outcome][part].get("item_sum")
            allowed = len(items["columns"]) - items["min_answered"] if items else 0
            complete = missing_items == 0
            # Complete scores equal the delivered instrument score, and lie within half a
            # rounding step of the exact (unrounded) value unless the instrument clipped it.
            assert_same(value[complete], delivered[complete])
            unclipped = complete & ~np.isnan(value) & (exact > instrument.low) & (exact < instrument.high)
            assert np.all(np.abs(value[unclipped] - exact[unclipped]) <= instrument.step / 2 + 1e-9)
            if instrument.n_items:
                prorated = (missing_items > 0) & (missing_items <= allowed)
                too_few = missing_items > allowed
                assert np.isnan(value[too_few]).all()
                # A prorated sum differs from the complete sum by at most the item range per missing item.
                spread = (instrument.item_high - instrument.item_low) * missing_items[prorated]
                assert np.all(np.abs(value[prorated] - delivered[prorated]) <= spread + 1e-9)


@pytest.mark.parametrize("study", STUDIES)
def test_z_scores_use_the_study_baseline_mean_and_sd(harmonized, study):
    data = harmonized[study].data
    for outcome in TRIALS[study].instruments:
        baseline = data[f"{outcome}_bl"].dropna()
        mean, sd = baseline.mean(), baseline.std(ddof=1)
        assert_same(data[f"{outcome}_bl_z"], (data[f"{outcome}_bl"] - mean) / sd, atol=1e-12)
        assert_same(data[f"{outcome}_fu_z"], (data[f"{outcome}_fu"] - mean) / sd, atol=1e-12)


@pytest.mark.parametrize("study", STUDIES)
def test_every_participant_is_analysable_or_excluded_with_one_reason(harmonized, study):
    result = harmonized[study]
    flow = result.flow
    randomized = flow[flow["stage"] == "randomized participants"].iloc[0]
    assert randomized["total"] == TRIALS[study].n
    for outcome in TRIALS[study].instruments:
        rows = flow[flow["stage"].str.startswith(f"{outcome}: ")]
        for arm in ("IPS", "SAU", "total"):
            assert rows[arm].sum() == randomized[arm], (outcome, arm)
        analysable = rows.loc[rows["stage"] == f"{outcome}: analysable", "total"].iloc[0]
        complete = result.data[[f"{outcome}_bl", f"{outcome}_fu", "employed"]].notna().all(axis=1).sum()
        assert analysable == complete


@pytest.mark.parametrize("study", STUDIES)
def test_arm_counts_match_the_published_numbers(harmonized, study):
    counts = harmonized[study].arm_counts
    assert not counts["differs"].any()
    assert dict(zip(counts["arm_original"], counts["n"])) == TRIALS[study].arms


def test_pseudonyms_are_hmac_of_study_site_and_trial_id(harmonized, demo):
    data, truth = harmonized["EU6"].data, demo.exports["EU6"].truth
    expected = [
        hmac.new(KEY, f"EU6\x1f{site}\x1f{pid}".encode(), hashlib.sha256).hexdigest()[:20]
        for site, pid in zip(truth["site"], truth["id_key"])
    ]
    assert data["participant_id"].tolist() == expected


def test_changing_the_key_changes_every_pseudonym(repo_root, harmonized):
    schema = load_schema(repo_root / "config" / "schema.yaml")
    rules = load_rules(repo_root / "config" / "studies" / "NL.yaml")
    other = harmonize_study(rules, schema, b"another-key-0123456789", base_dir=repo_root).data["participant_id"]
    assert (other.to_numpy() != harmonized["NL"].data["participant_id"].to_numpy()).all()


def test_provenance_names_the_raw_files_with_their_checksums(harmonized, repo_root):
    provenance = harmonized["DK"].provenance
    for name, digest in provenance["raw_files_sha256"].items():
        assert (
            hashlib.sha256((repo_root / "resources" / "demo" / "raw" / "DK" / name).read_bytes()).hexdigest() == digest
        )
    assert set(provenance["raw_files_sha256"]) == {"dk_deltagere.csv", "dk_besoeg.csv", "dk_timer_uge.csv"}


def test_only_schema_columns_are_harmonized(harmonized, repo_root):
    schema = load_schema(repo_root / "config" / "schema.yaml")
    from ipdpool.harmonize.schema import columns

    for result in harmonized.values():
        assert list(result.data.columns) == columns(schema)


# ------------------------------------------------------------ the pseudonym key


def test_key_from_environment_takes_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, "from-the-environment-123")
    assert load_key({"pseudonym": {"key_file": str(tmp_path / "absent")}}) == b"from-the-environment-123"


def test_no_key_configured_stops_with_a_clear_message(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(PseudonymKeyError, match="no pseudonym key"):
        load_key({})


def test_demo_key_is_refused_outside_demo_mode(monkeypatch, repo_root):
    monkeypatch.delenv(ENV_VAR, raising=False)
    settings = {"pseudonym": {"key_file": "resources/demo/DEMO_ONLY_pseudonym.key", "demo_key": True}}
    with pytest.raises(PseudonymKeyError, match="public demo key"):
        load_key(settings, base_dir=repo_root)
    assert len(load_key({**settings, "demo_mode": True}, base_dir=repo_root)) >= 16


def test_short_keys_are_refused(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "short")
    with pytest.raises(PseudonymKeyError, match="shorter than 16 bytes"):
        load_key({})


def test_missing_key_file_is_named(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(PseudonymKeyError, match="absent.key not found"):
        load_key({"pseudonym": {"key_file": "absent.key"}}, base_dir=Path(tmp_path))


def test_check_command_reports_ok_or_every_problem(repo_root, tmp_path, capsys, monkeypatch):
    from ipdpool.harmonize.__main__ import main

    monkeypatch.chdir(repo_root)
    assert main(["config/studies/NL.yaml"]) == 0
    assert "config/studies/NL.yaml: OK, 151 participants" in capsys.readouterr().out
    broken = tmp_path / "NL.yaml"
    broken.write_text(
        (repo_root / "config" / "studies" / "NL.yaml")
        .read_text(encoding="utf-8")
        .replace("map: {1: IPS, 2: SAU}", "map: {1: IPS}"),
        encoding="utf-8",
    )
    assert main([str(broken)]) == 1
    assert (
        "study NL, file nl_deelnemers.dta, variable arm: codes in 'groep' missing from the recode map"
        in capsys.readouterr().out
    )
