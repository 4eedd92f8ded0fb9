"""Shared helpers of the tests: the harmonized demo in memory; the comparisons of the mixed-model
property tests (tests/test_lmm_properties.py, tests/test_nested_properties.py)."""

from functools import lru_cache

import numpy as np
import pandas as pd

from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import conform, load_schema
from ipdpool.harmonize.study import harmonize_study


@lru_cache(maxsize=1)
def _pool(repo_root_text: str) -> pd.DataFrame:
    from pathlib import Path

    repo_root = Path(repo_root_text)
    schema = load_schema(repo_root / "config" / "schema.yaml")
    frames = [
        harmonize_study(
            load_rules(repo_root / "config" / "studies" / f"{s}.yaml"),
            schema,
            b"tests-support-key-0123",
            base_dir=repo_root,
        ).data
        for s in ("DK", "EU6", "NL", "SE", "US")
    ]
    return conform(pd.concat(frames, ignore_index=True), schema)


def harmonized_pool(repo_root) -> pd.DataFrame:
    return _pool(str(repo_root)).copy()


def inference(fit_, contrast: np.ndarray, ddf: str) -> dict:
    return fit_.contrast(contrast, ddf if fit_.reml else "satterthwaite")


def assert_close(ours, expected, rel, scale=0.0, what=""):
    ours, expected = np.asarray(ours, float), np.asarray(expected, float)
    bound = rel * (np.abs(expected) + scale)
    assert np.all(np.abs(ours - expected) <= bound), (what, ours, expected, np.abs(ours - expected) / (bound / rel))


def assert_covariance(ours, expected, floor, what="random covariance"):
    """Variances to 1e-8 of (value + floor_i), covariances to 1e-8 of the product of those SDs
    (floor: what sigma2 puts on each element's scale, so that a variance at 0 has a scale)."""
    scale = np.abs(np.diag(expected)) + floor
    assert_close(ours, expected, 1e-8, np.sqrt(np.outer(scale, scale)) - np.abs(expected), what)


def assert_same_inference(moved: dict, original: dict, estimate_map, se_factor: float):
    """moved is the inference of the changed fit, original that of the matching contrast."""
    expected = estimate_map(original["estimate"])
    assert_close(moved["estimate"], expected, 1e-8, se_factor * original["se"], "estimate")
    assert_close(moved["se"], se_factor * original["se"], 1e-8, what="se")
    for key in ("df", "t", "p_value"):
        assert_close(moved[key], original[key], 1e-5, 1e-12 if key == "p_value" else 0.0, key)


def imputed_alike_when_moved(data: pd.DataFrame, method: str, seed: int, labels, variables) -> pd.DataFrame:
    """Completed data set 1 of outcome "o" from `data`, checked equal per participant to that of the
    same data with rows shuffled and studies renamed to `labels` (a re-export, another consortium's
    labels); returned for further checks."""
    from ipdpool.imputation.chained import impute

    renamed = dict(zip(sorted(data["study"].unique()), labels))
    moved = data.sample(frac=1, random_state=seed).assign(study=lambda d: d["study"].map(renamed))
    before = impute(data, "o", 1, seed=seed, method=method, iterations=2)
    after = impute(moved, "o", 1, seed=seed, method=method, iterations=2).loc[data.index]
    pd.testing.assert_frame_equal(before[variables], after[variables])
    return before
