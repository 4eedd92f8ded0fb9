"""Disclosure control: small counts suppressed; participant-level files never shared."""

import pandas as pd
import pytest
from conftest import snakemake

from ipdpool.disclosure import ShareRefused, collect_shareable, suppress_small_counts


def test_counts_from_one_to_threshold_minus_one_are_suppressed():
    frame = pd.DataFrame({"stage": ["a", "b", "c", "d"], "n": [0, 1, 4, 5], "other": [1, 2, 3, 4]})
    out = suppress_small_counts(frame, ["n"], 5)
    assert out["n"].tolist() == [0, "<5", "<5", 5]
    assert out["other"].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "name",
    [
        "results/harmonized/pooled.parquet",
        "results/harmonized/DK.csv",
        "results/audit/DK/distributions.svg",
        "results/audit/DK/distributions.png",
        "results/audit/DK/distributions.tsv",
        "results/report.html",
    ],
)
def test_participant_level_files_are_refused_before_anything_is_written(tmp_path, name):
    with pytest.raises(ShareRefused, match="participant-level files cannot be shared"):
        collect_shareable([tmp_path / "results/tables/one_stage.tsv", tmp_path / name], tmp_path / "share", 5)
    assert not (tmp_path / "share").exists()


@pytest.mark.workflow
def test_share_target_holds_only_aggregate_outputs_with_small_counts_suppressed(completed_run):
    result = snakemake(completed_run, "--cores", "2", "share")
    assert result.returncode == 0, result.stderr[-2000:]
    share = completed_run / "results" / "share"
    files = [p for p in share.rglob("*") if p.is_file()]
    assert files and not [p for p in files if p.suffix in (".parquet", ".csv") or p.stem == "distributions"]
    flow = pd.read_csv(share / "tables" / "flow.tsv", sep="\t", dtype=str, keep_default_na=False)
    for column in ("IPS", "SAU", "total"):
        numbers = pd.to_numeric(flow[column], errors="coerce")
        assert not ((numbers > 0) & (numbers < 5)).any()
    assert (flow[["IPS", "SAU", "total"]] == "<5").any().any()  # the demo has small cells to suppress
    assert (share / "figures" / "participant_flow.svg").is_file() and (share / "summary.md").is_file()
    assert len(list((share / "figures").glob("forest_*.svg"))) == 48


def test_reconciliation_fails_when_a_participant_is_lost():
    from ipdpool.harmonize.output import ReconciliationError, reconcile

    flows = pd.DataFrame([{"study": "A", "stage": "raw participants", "reason": "", "IPS": 3, "SAU": 2, "total": 5}])
    pooled = pd.DataFrame({"study": ["A"] * 5, "arm": ["IPS", "IPS", "IPS", "SAU", "SAU"]})
    assert (reconcile(flows, pooled)["difference"] == 0).all()
    with pytest.raises(ReconciliationError, match="study A, arm SAU: 2 in the raw files, 1 pooled, 0 excluded"):
        reconcile(flows, pooled.iloc[:4])
