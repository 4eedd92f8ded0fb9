"""The SLURM profiles as Snakemake reads them: no site settings in the repository, account
and partition from the environment, resources that grow per attempt, production polling."""

import pytest
from conftest import REPO
from snakemake.profiles import ProfileConfigFileParser

USER_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
CI_PROFILE = REPO / ".ci" / "slurm" / "profile" / "config.yaml"


def read_profile(path) -> dict:
    with path.open() as stream:
        return ProfileConfigFileParser().parse(stream)


def test_the_user_profile_names_no_account_or_partition_unless_the_environment_does(monkeypatch):
    monkeypatch.delenv("SBATCH_ACCOUNT", raising=False)
    monkeypatch.delenv("SBATCH_PARTITION", raising=False)
    profile = read_profile(USER_PROFILE)
    assert not any(
        "slurm_account" in entry or "slurm_partition" in entry
        for entry in profile["default-resources"] + profile["set-resources"]
    )
    monkeypatch.setenv("SBATCH_ACCOUNT", "proj42")
    monkeypatch.setenv("SBATCH_PARTITION", "short")
    defaults = read_profile(USER_PROFILE)["default-resources"]
    assert "slurm_account=proj42" in defaults and "slurm_partition=short" in defaults
    assert {entry.split("=")[0] for entry in defaults} >= {"runtime", "mem_mb", "cpus_per_task"}  # the rest stays


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_memory_and_runtime_grow_with_each_attempt(attempt):
    profile = read_profile(USER_PROFILE)
    assert int(profile["retries"]) >= 1
    entries = profile["default-resources"] + [entry.split(":", 1)[1] for entry in profile["set-resources"]]
    scaled = [entry for entry in entries if entry.split("=")[0] in ("mem_mb", "runtime")]
    assert scaled
    for entry in scaled:
        expression = entry.split("=", 1)[1]
        assert eval(expression, {"attempt": attempt}) == attempt * eval(expression, {"attempt": 1}), entry


def test_polling_is_the_plugins_default_for_users_and_quick_only_on_the_test_cluster():
    profile = read_profile(USER_PROFILE)
    assert not any("status-checks" in key for key in profile)
    assert profile["slurm-status-command"] == "squeue"  # sacct's "CANCELLED by <uid>" is not recognised by plugin 2.8.0
    assert profile["slurm-logdir"].startswith("logs/")
    assert set(read_profile(CI_PROFILE)) == {"slurm-init-seconds-before-status-checks", "seconds-between-status-checks"}
