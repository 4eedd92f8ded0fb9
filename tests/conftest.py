from pathlib import Path

import pytest

from ipdpool.demo.generate import build_demo

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return DEMO


@pytest.fixture(scope="session")
def demo():
    """The demo rebuilt in memory (latent data, raw tables and per-participant truth)."""
    return build_demo()
