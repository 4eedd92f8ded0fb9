"""A small version of the confounding simulation (the full one, 1,000 replicates per scenario,
is in docs/validation.md): under an unmeasured confounder the observational estimate is biased
and 2SLS is not; under a weak instrument the Anderson-Rubin set keeps its coverage where the
Wald interval loses it. Fixed seeds: the same replicates every run."""

import pandas as pd
import yaml

from ipdpool.confounding_simulation import run_chunk, summarize


def scenarios() -> list[dict]:
    """The configured scenarios (config/simulation.yaml), so that this test checks those."""
    with open("config/simulation.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)["confounding"]["scenarios"]


def summary_of(name: str, replicates: int) -> pd.DataFrame:
    configured = scenarios()
    index = [s["name"] for s in configured].index(name)
    results = run_chunk(index, configured[index], range(replicates))
    return summarize(results, configured).set_index("method")


def test_confounding_biases_the_observational_estimate_and_not_iv(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    table = summary_of("confounded", 150)
    ols, iv = table.loc["observational (OLS)"], table.loc["IV Wald"]
    assert ols["bias"] > 20 * ols["bias_mcse"]
    assert ols["coverage"] < 0.05
    assert abs(iv["bias"]) <= 3 * iv["bias_mcse"]
    assert iv["mean_first_stage_f"] > 30
    assert abs(iv["coverage"] - 0.95) <= 3 * max(iv["coverage_mcse"], 0.018)


def test_under_a_weak_instrument_anderson_rubin_keeps_coverage_and_wald_does_not(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    table = summary_of("confounded_weak_instrument", 300)
    wald, ar = table.loc["IV Wald"], table.loc["IV Anderson-Rubin"]
    assert wald["mean_first_stage_f"] < 5
    assert abs(ar["coverage"] - 0.95) <= 3 * 0.0126  # MCSE of a 95% coverage over 300 replicates
    assert wald["coverage"] < 0.95 - 3 * 0.0126
    assert wald["coverage"] < ar["coverage"] - 0.04
