"""Federated analysis: site bundles hold no participant-level data, pass disclosure control or
are refused, are checked by the coordinator, and reproduce the pooled-IPD tables exactly."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, snakemake
from tests_support import harmonized_pool

from ipdpool import __version__
from ipdpool.federated import (
    DISCLOSURE_DEFAULTS,
    BundleError,
    check_bundle,
    make_bundle,
    manifest,
    plain,
    sha256_json,
    table1_aggregates,
)
from ipdpool.harmonize.schema import load_schema
from ipdpool.releases import release
from ipdpool.tables import read_table

STUDIES = ("DK", "EU6", "NL", "SE", "US")


@pytest.fixture(scope="module")
def setting(repo_root):
    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    levels = load_schema(repo_root / "config" / "schema.yaml")["variables"]["diagnosis"]["allowed"]
    return config["analysis"], levels, harmonized_pool(repo_root)


def bundle_of(part: pd.DataFrame, analysis: dict, levels, repo_root, thresholds=DISCLOSURE_DEFAULTS) -> dict:
    study = str(part["study"].iloc[0])
    about = manifest(
        study,
        repo_root / "config" / "studies" / f"{study}.yaml",
        repo_root / "config" / "schema.yaml",
        analysis,
        __version__,
    )
    released = release(part, analysis, levels, thresholds["nfilter_subset"], thresholds["nested"])
    whole = table1_aggregates(part)
    return plain(make_bundle(released.statistics, released.table1, [], [], about, thresholds, whole_table1=whole))


def numbers(value) -> int:
    if isinstance(value, dict):
        return sum(numbers(v) for v in value.values())
    if isinstance(value, list):
        return sum(numbers(v) for v in value)
    return isinstance(value, (int, float))


def test_a_bundle_holds_no_pseudonym_and_no_free_text_value(setting, repo_root):
    analysis, levels, pooled = setting
    categories = {"IPS", "SAU", "male", "female", *levels}
    for study in STUDIES:
        part = pooled[pooled["study"] == study]
        text = json.dumps(bundle_of(part, analysis, levels, repo_root))
        assert not [pid for pid in part["participant_id"] if pid in text], study
        free_text = {str(v) for c in ("site", "arm_original") for v in part[c].dropna().unique()} - categories
        assert not [value for value in free_text if f'"{value}"' in text], study


def test_a_bundle_does_not_grow_with_participants(setting, repo_root):
    analysis, levels, pooled = setting
    part = pooled[pooled["study"] == "SE"]
    copies = pd.concat(
        [part.assign(participant_id=part["participant_id"] + f"-{i}") for i in range(20)], ignore_index=True
    )
    small, large = bundle_of(part, analysis, levels, repo_root), bundle_of(copies, analysis, levels, repo_root)
    assert large["statistics"]["n"] == 20 * small["statistics"]["n"]
    assert numbers(large) == numbers(small)  # the same statistics, only larger sums
    assert len(json.dumps(large)) < 1.1 * len(json.dumps(small))


def test_disclosure_control_refuses_a_small_cell_and_names_it(setting, repo_root):
    analysis, levels, pooled = setting
    part = pooled[pooled["study"] == "NL"]
    rare = part[(part["arm"] == "SAU") & (part["diagnosis"] == "other")].index
    part = part.drop(rare[1:])  # one participant with diagnosis "other" left in SAU
    with pytest.raises(BundleError) as refused:
        bundle_of(part, analysis, levels, repo_root)
    assert "study NL: cell diagnosis = other in arm SAU has 1 participants, fewer than nfilter_tab 3" in str(
        refused.value
    )
    assert "nothing written" in str(refused.value)


def test_disclosure_control_refuses_too_many_parameters_for_a_model(setting, repo_root):
    analysis, levels, pooled = setting
    part = pooled[pooled["study"] == "SE"]
    with pytest.raises(BundleError) as refused:
        # nfilter_subset 1: no design harmonized, so the model keeps all its 82 complete cases
        bundle_of(part, analysis, levels, repo_root, {**DISCLOSURE_DEFAULTS, "nfilter_glm": 0.01, "nfilter_subset": 1})
    assert (
        "study SE: model ips_x_employed/covariates for outcome functioning: "
        "10 parameters for 82 participants, more than nfilter_glm 0.01 x n" in str(refused.value)
    )


def test_the_coordinator_refuses_changed_foreign_or_mismatched_bundles(setting, repo_root, tmp_path):
    analysis, levels, pooled = setting
    bundle = bundle_of(pooled[pooled["study"] == "SE"], analysis, levels, repo_root)
    schema = repo_root / "config" / "schema.yaml"
    assert check_bundle(bundle, "SE.json", "SE", schema, analysis, __version__) == []
    tampered = {**bundle, "table1": {**bundle["table1"], "IPS": {**bundle["table1"]["IPS"], "n": 1000}}}
    assert check_bundle(tampered, "SE.json", "SE", schema, analysis, __version__) == [
        "study SE: bundle SE.json, field manifest.content_sha256: does not match the content "
        "(changed after it was written)",
        "study SE: bundle SE.json, field statistics.n: is not the sum of table1's arms",
    ]
    assert (
        "holds study 'SE', configured as 'NL'"
        in check_bundle(bundle, "SE.json", "NL", schema, analysis, __version__)[0]
    )
    other = {**analysis, "min_studies": 3}
    assert "another analysis configuration" in check_bundle(bundle, "SE.json", "SE", schema, other, __version__)[0]
    assert "mixed versions are refused" in check_bundle(bundle, "SE.json", "SE", schema, analysis, "0.0.1")[0]
    changed_schema = tmp_path / "schema.yaml"
    changed_schema.write_text(schema.read_text() + "\n# local change\n")
    assert "another schema" in check_bundle(bundle, "SE.json", "SE", changed_schema, analysis, __version__)[0]
    assert (
        sha256_json(plain({k: bundle[k] for k in ("statistics", "table1", "flow", "status")}))
        == bundle["manifest"]["content_sha256"]
    )


# ------------------------------------------------------------------ the workflow, end to end

TABLES = [
    "one_stage",
    "sensitivity",
    "per_study",
    "two_stage",
    "leave_one_out",
    "aggregate_trials",
    "aggregate_meta",
    "table1",
    "replication",
    "first_stage",  # the causal analysis's first stage: exact from the 2x2 tables in the bundles
    "evalues",
    "multiple_imputation",
]


def key_pair(folder) -> tuple:
    """An OpenSSH ed25519 key pair made for the test: (private key file, public key line)."""
    key = folder / "site_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key, (folder / "site_key.pub").read_text().strip()


@pytest.fixture(scope="module")
def sent_bundles(completed_run, tmp_path_factory):
    """Each site runs `snakemake site_bundle` with its signing key (and its completed data sets for
    federated multiple imputation); the bundles and their
    signatures travel (copied) to the centre, which holds the public key in allowed_signers.

    The sites keep the default disclosure settings (nfilter_subset 3, nested: harmonize), so their
    bundles hold statistics over the participants the nested-subset rule leaves them; the pooled-IPD
    run they are compared with applies the same rule (`pooled_same_sets`)."""
    keys = tmp_path_factory.mktemp("keys")
    private, public = key_pair(keys)
    site = {"federated": {"signing_key": str(private)}, "multiple_imputation": {"in_bundles": True}}
    (completed_run / "site.yaml").write_text(yaml.safe_dump(site))
    done = snakemake(completed_run, "--cores", "2", "site_bundle", "--configfile", "site.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    inbox = tmp_path_factory.mktemp("inbox")
    for study in STUDIES:
        for suffix in (".bundle.json", ".bundle.json.sig"):
            shutil.copy(completed_run / "results" / "site" / f"{study}{suffix}", inbox)
    (inbox / "allowed_signers").write_text(f"{','.join(STUDIES)} {public}\n")
    return inbox


SAME_SETS = {"disclosure": {"apply_to_pooled_ipd": True}}


@pytest.fixture(scope="module")
def pooled_same_sets(completed_run, tmp_path_factory):
    """The pooled-IPD run (the demo's participant data, every study held) with the nested-subset
    rule applied as the sites apply it (federated.disclosure.apply_to_pooled_ipd), so that both
    routes analyse the same participants: completed_run copied, then the tables re-made."""
    workdir = tmp_path_factory.mktemp("same_sets") / "run"
    shutil.copytree(completed_run, workdir, symlinks=True, ignore=shutil.ignore_patterns("site", "locks"))
    (workdir / "same_sets.yaml").write_text(
        yaml.safe_dump({"federated": SAME_SETS, "multiple_imputation": {"in_bundles": True}})
    )
    targets = [f"results/tables/{name}.tsv" for name in TABLES] + ["results/summary.md"]
    done = snakemake(workdir, "--cores", "2", *targets, "--configfile", "same_sets.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "harmonized or withheld by the nested-subset rule" in (workdir / "logs" / "statistics.log").read_text()
    return workdir


def coordinator(tmp_path, inbox, studies, unsigned: bool = False) -> tuple:
    workdir = copy_workflow(tmp_path)
    bundles = {study: str(inbox / f"{study}.bundle.json") for study in studies}
    federated = {
        "bundles": bundles,
        "signatures": {"allowed_signers": str(inbox / "allowed_signers")},
        **SAME_SETS,  # for studies whose participant data are held here
    }
    if unsigned:
        federated = {"bundles": bundles, "unsigned": "acknowledged", "unsigned_reason": "test: no keys yet"}
    settings = {"federated": federated, "multiple_imputation": {"in_bundles": True}}
    (workdir / "federated.yaml").write_text(yaml.safe_dump(settings))
    return workdir, ("--configfile", "federated.yaml")


def assert_same_table(ours: pd.DataFrame, theirs: pd.DataFrame, name: str) -> None:
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs), name
    for column in ours.columns:
        if column == "data_source":
            continue
        if column == "warnings":
            # the centre names the bundle of a study refused for a model (withheld by the site); the
            # pooled run withholds the same statistics (the numbers must be equal) without that note
            mine = [without_refusals(str(w)) for w in ours[column].fillna("")]
            assert mine == theirs[column].fillna("").astype(str).tolist(), f"{name}.{column}"
        elif pd.api.types.is_numeric_dtype(theirs[column]) and not pd.api.types.is_bool_dtype(theirs[column]):
            np.testing.assert_allclose(
                ours[column].to_numpy(float),
                theirs[column].to_numpy(float),
                rtol=1e-10,
                atol=0,
                err_msg=f"{name}.{column}",
            )
        else:
            assert ours[column].fillna("").astype(str).tolist() == theirs[column].fillna("").astype(str).tolist(), (
                f"{name}.{column}"
            )


def without_refusals(warnings: str) -> str:
    return "; ".join(part for part in warnings.split("; ") if not re.match(r"study \S+ refused for model ", part))


@pytest.mark.workflow
def test_five_site_bundles_reproduce_the_pooled_ipd_tables(pooled_same_sets, sent_bundles, tmp_path):
    workdir, options = coordinator(tmp_path, sent_bundles, STUDIES)
    done = snakemake(workdir, "--cores", "4", *options)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list((workdir / "results" / "harmonized").glob("*.parquet"))  # no participant data at the centre
    for name in TABLES:
        ours, theirs = (
            read_table(workdir / "results" / "tables" / f"{name}.tsv"),
            read_table(pooled_same_sets / "results" / "tables" / f"{name}.tsv"),
        )
        assert_same_table(ours, theirs, name)
        if "data_source" in ours:  # per study: "site bundle"; pooled rows: "site bundles"
            assert set(ours["data_source"]) <= {"site bundle", "site bundles"} and set(theirs["data_source"]) == {
                "participant data"
            }, name
    for name in ("flow", "status_matrix"):
        assert_same_table(
            read_table(workdir / "results" / "audit" / f"{name}.tsv"),
            read_table(pooled_same_sets / "results" / "audit" / f"{name}.tsv"),
            name,
        )
    bundles = read_table(workdir / "results" / "audit" / "bundles.tsv")
    assert bundles["study"].tolist() == list(STUDIES)
    assert all(
        a.startswith(f"signed by {s}, verified with ssh-keygen -Y") for s, a in zip(STUDIES, bundles["authenticity"])
    )
    # the IV table from the bundles' cross-products: that of the pooled-IPD run over the same
    # (released) participants, which also works from cross-products (no robust SE without rows)
    iv_bundles, iv_pooled = (read_table(w / "results" / "tables" / "iv.tsv") for w in (workdir, pooled_same_sets))
    assert_same_table(iv_bundles, iv_pooled, "iv")
    assert iv_bundles["se_robust"].isna().all() and (iv_bundles["status"] == "estimated").any()
    # centre within study from the bundles' per-centre blocks (DK's self_esteem/ips blocks pass
    # every disclosure check on the demo; the other designs' blocks are withheld, their studies
    # enter as one centre): compared with the pooled run above, row by row to 1e-10
    dk = json.loads((sent_bundles / "DK.bundle.json").read_text())["statistics"]["outcomes"]
    assert sorted(dk["self_esteem"]["designs"]["ips/primary"]["centres"]) == ["c1", "c2", "c3"]
    centre_rows = read_table(workdir / "results" / "tables" / "sensitivity.tsv").query(
        "variant == 'centre_within_study' and outcome == 'self_esteem' and contrast == 'ips'"
    )
    assert (centre_rows["status"] == "estimated").all() and len(centre_rows)
    assert centre_rows["warnings"].str.contains("DK 3").all()
    assert not centre_rows["warnings"].str.contains(r"one centre\): [^;]*DK").any()
    one_stage = read_table(workdir / "results" / "tables" / "one_stage.tsv")
    assert len(one_stage) == 48 and (one_stage["status"] == "estimated").sum() >= 40
    assert (workdir / "results" / "summary.md").read_text() == (pooled_same_sets / "results" / "summary.md").read_text()


@pytest.mark.workflow
def test_bundles_and_participant_data_mix(pooled_same_sets, sent_bundles, tmp_path):
    workdir, options = coordinator(tmp_path, sent_bundles, ("NL", "SE"))
    targets = [
        f"results/models/{o}/{t}.tsv"
        for o in ("functioning", "quality_of_life")
        for t in ("one_stage", "sensitivity", "two_stage")
    ]
    done = snakemake(workdir, "--cores", "4", *targets, *options)
    assert done.returncode == 0, done.stderr[-3000:]
    for target in targets:
        ours, theirs = read_table(workdir / target), read_table(pooled_same_sets / target)
        assert_same_table(ours, theirs, target)
        for studies, source in zip(ours["studies"].fillna(""), ours["data_source"]):
            names = [s for s in studies.split(",") if s]
            held, bundled = [s for s in names if s not in ("NL", "SE")], [s for s in names if s in ("NL", "SE")]
            expected = (
                f"participant data: {','.join(held)}; site bundles: {','.join(bundled)}"
                if held and bundled
                else ("site bundles" if bundled else "participant data")
            )
            assert source == expected, (target, studies, source)


@pytest.mark.workflow
def test_a_bundle_for_another_analysis_is_refused_by_the_centre(sent_bundles, tmp_path):
    workdir, options = coordinator(tmp_path, sent_bundles, ("SE",))
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["analysis"]["min_studies"] = 3
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    done = snakemake(workdir, "--cores", "1", "results/statistics/SE.json", *options)
    assert done.returncode != 0
    log = (workdir / "logs" / "site" / "import_SE.log").read_text()
    assert "study SE: bundle refused" in log and "computed for another analysis configuration" in log
    assert not (workdir / "results" / "statistics" / "SE.json").exists()


@pytest.mark.workflow
def test_a_site_whose_bundle_breaks_disclosure_rules_sends_nothing(completed_run, sent_bundles):
    target, log_file = completed_run / "results" / "site" / "SE.bundle.json", completed_run / "logs" / "site" / "SE.log"
    target.unlink()
    log_file.unlink()
    (completed_run / "strict.yaml").write_text(yaml.safe_dump({"federated": {"disclosure": {"nfilter_tab": 100}}}))
    done = snakemake(completed_run, "--cores", "1", "results/site/SE.bundle.json", "--configfile", "strict.yaml")
    assert done.returncode != 0 and not target.exists()
    log = log_file.read_text()
    assert "bundle refused by disclosure control, nothing written" in log
    assert "study SE: arm IPS has 60 participants, fewer than nfilter_tab 100" in log


@pytest.mark.workflow
def test_a_site_with_the_rule_on_harmonizes_and_an_unsigned_bundle_needs_acknowledging(
    completed_run, sent_bundles, tmp_path
):
    """The defaults end to end: the site harmonizes nested designs (logged, listed in the bundle)
    and keeps its ledger; the centre refuses the unsigned bundle unless told otherwise, and then
    shows the reason and the harmonized designs in the report's table of site bundles."""
    target = completed_run / "results" / "site" / "SE.bundle.json"
    target.unlink(missing_ok=True)
    (completed_run / "rule_on.yaml").write_text(yaml.safe_dump({"federated": {"ledger": "ledger_rule_on"}}))
    done = snakemake(
        completed_run, "--cores", "1", str(target.relative_to(completed_run)), "--configfile", "rule_on.yaml"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    harmonized = {
        outcome: content.get("harmonized", {})
        for outcome, content in json.loads(target.read_text())["statistics"]["outcomes"].items()
    }
    assert sum(map(len, harmonized.values())) > 0
    assert "harmonized from" in (completed_run / "logs" / "site" / "SE.log").read_text()
    ledger = (completed_run / "ledger_rule_on" / "SE.json").read_text()
    pseudonyms = pd.read_parquet(completed_run / "results" / "harmonized" / "SE.parquet")["participant_id"]
    assert not [p for p in pseudonyms if p in ledger]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(target, inbox)
    for name in ("refusing", "acknowledging"):
        (tmp_path / name).mkdir()
    workdir, options = coordinator(tmp_path / "refusing", inbox, ("SE",))
    (workdir / "federated.yaml").write_text(
        yaml.safe_dump({"federated": {"bundles": {"SE": str(inbox / target.name)}}})
    )
    done = snakemake(workdir, "--cores", "1", "results/statistics/SE.json", *options)
    assert done.returncode != 0
    assert "unsigned bundles are refused" in (workdir / "logs" / "site" / "import_SE.log").read_text()
    workdir, options = coordinator(tmp_path / "acknowledging", inbox, ("SE",), unsigned=True)
    done = snakemake(workdir, "--cores", "1", "results/audit/bundles.tsv", *options)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = read_table(workdir / "results" / "audit" / "bundles.tsv").to_dict("records")
    assert row["authenticity"] == "UNSIGNED, accepted because federated.unsigned is acknowledged: test: no keys yet"
    assert row["designs_harmonized"] == sum(map(len, harmonized.values())) and row["designs_refused"] == 0
