"""Shared helpers for tests that need the harmonized demo in memory."""

from functools import lru_cache

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
