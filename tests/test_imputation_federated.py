"""Federated multiple imputation: each site imputes its own rows and releases its completed data
sets' statistics in its bundle (under disclosure control, covered by the manifest checksum); the
coordinator fits and pools them, and the result equals the pooled-participant-data MI run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from tests_support import harmonized_pool

from ipdpool import __version__
from ipdpool.federated import (
    DISCLOSURE_DEFAULTS,
    BundleError,
    check_bundle,
    make_bundle,
    manifest,
    plain,
    table1_aggregates,
)
from ipdpool.harmonize.schema import load_schema
from ipdpool.imputation.analysis import chunk_estimates, pool_estimates, site_imputations
from ipdpool.models.statistics import study_statistics

MI = {"imputations": 2, "iterations": 5, "seed": 11, "method": "stratified"}


@pytest.fixture(scope="module")
def setting(repo_root):
    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    analysis = {**config["analysis"], "outcomes": ["negative_symptoms"]}
    return analysis, harmonized_pool(repo_root)


def bundle_of(part: pd.DataFrame, analysis: dict, repo_root, thresholds=DISCLOSURE_DEFAULTS) -> dict:
    study = str(part["study"].iloc[0])
    about = manifest(
        study,
        repo_root / "config" / "studies" / f"{study}.yaml",
        repo_root / "config" / "schema.yaml",
        analysis,
        __version__,
    )
    # the schema's levels, as site_bundle.py writes them (the centre checks the column names)
    levels = load_schema(repo_root / "config" / "schema.yaml")["variables"]["diagnosis"]["allowed"]
    statistics = study_statistics(part, analysis, levels)
    released = site_imputations(part, analysis, MI)
    return json.loads(
        json.dumps(plain(make_bundle(statistics, table1_aggregates(part), [], [], about, thresholds, released)))
    )


def test_federated_mi_equals_the_pooled_participant_data_run(setting, repo_root):
    analysis, data = setting
    bundles = {study: bundle_of(part, analysis, repo_root) for study, part in data.groupby("study", sort=True)}
    for study, bundle in bundles.items():
        problems = check_bundle(
            bundle, f"{study}.json", study, repo_root / "config" / "schema.yaml", analysis, __version__
        )
        assert problems == []
    for outcome in analysis["outcomes"]:
        pooled_ipd = pool_estimates(chunk_estimates(data, {}, outcome, analysis, MI, range(MI["imputations"])))
        bundled = {study: b["imputations"]["outcomes"][outcome] for study, b in bundles.items()}
        federated = pool_estimates(chunk_estimates(None, bundled, outcome, analysis, MI, range(MI["imputations"])))
        # half the studies held, half bundled: the same again
        held = data[data["study"].isin(["DK", "EU6"])]
        mixed_bundles = {s: v for s, v in bundled.items() if s not in ("DK", "EU6")}
        mixed = pool_estimates(chunk_estimates(held, mixed_bundles, outcome, analysis, MI, range(MI["imputations"])))
        assert (pooled_ipd["status"] == "estimated").all() and len(pooled_ipd) > 20
        for other in (federated, mixed):
            numeric = ["estimate", "se", "ci_low", "ci_high", "df", "fmi", "riv", "between_variance"]
            np.testing.assert_allclose(other[numeric], pooled_ipd[numeric], rtol=1e-10, atol=1e-14)
            assert list(other["studies"]) == list(pooled_ipd["studies"])


def test_released_imputations_are_under_the_manifest_checksum_and_disclosure_control(setting, repo_root):
    analysis, data = setting
    part = data[data["study"] == "NL"]
    bundle = bundle_of(part, analysis, repo_root)
    entry = bundle["imputations"]["outcomes"]["negative_symptoms"][0]
    assert set(entry) == {"study", "n", "outcomes"} and "products" in json.dumps(entry)
    assert "participant_id" not in json.dumps(bundle["imputations"])
    bundle["imputations"]["outcomes"]["negative_symptoms"][0]["n"] += 1
    problems = check_bundle(bundle, "NL.json", "NL", repo_root / "config" / "schema.yaml", analysis, __version__)
    assert any("manifest.content_sha256: does not match the content" in p for p in problems), problems
    strict = {**DISCLOSURE_DEFAULTS, "nfilter_subset": 10_000}
    with pytest.raises(BundleError, match=r"completed data set 0"):
        bundle_of(part, analysis, repo_root, strict)


def test_a_site_refuses_the_pooled_fixed_effects_method(setting):
    analysis, data = setting
    with pytest.raises(ValueError, match="needs multiple_imputation.method: stratified"):
        site_imputations(data[data["study"] == "NL"], analysis, {**MI, "method": "fixed_effects"})
