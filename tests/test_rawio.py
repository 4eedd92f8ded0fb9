"""Raw tables are read with their native readers; bad files fail naming study and file."""

import shutil
from pathlib import Path

import pytest
import yaml

from ipdpool.inventory import inventory_study
from ipdpool.rawio import RawDataError, read_table


def study_rules(repo_root, study):
    rules = yaml.safe_load((repo_root / "config" / "studies" / f"{study}.yaml").read_text(encoding="utf-8"))
    rules["raw_dir"] = str(repo_root / rules["raw_dir"])
    return rules


@pytest.mark.parametrize("study", ["EU6", "DK", "SE", "NL", "US"])
def test_every_declared_table_of_the_demo_reads(repo_root, study):
    rules = study_rules(repo_root, study)
    inventory = inventory_study(rules)
    assert list(inventory["table"]) == list(rules["tables"])
    assert (inventory["rows"] > 0).all() and (inventory["columns"] >= 3).all()
    assert inventory["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()


def test_spss_keeps_codes_labels_and_user_missing(repo_root):
    rules = study_rules(repo_root, "EU6")
    table = read_table("EU6", "followup", rules["tables"]["followup"], rules["raw_dir"])
    assert table.value_labels["centre"][1.0] == "London"
    assert table.user_missing["gaf_18"] == [-99.0, 999.0]
    assert (table.frame["gaf_18"] == 999).any()


def test_csv_is_read_as_text_so_leading_zeros_and_words_survive(repo_root):
    rules = study_rules(repo_root, "DK")
    table = read_table("DK", "participants", rules["tables"]["participants"], rules["raw_dir"])
    assert table.frame["løbenr"].iloc[0] == "0001"
    assert (table.frame["alder"] == "ukendt").any()


@pytest.fixture
def copy_of(tmp_path, repo_root):
    def make(study):
        rules = study_rules(repo_root, study)
        target = tmp_path / study
        shutil.copytree(rules["raw_dir"], target)
        rules["raw_dir"] = str(target)
        return rules

    return make


def expect_error(rules, table, pattern):
    with pytest.raises(RawDataError, match=pattern) as caught:
        read_table(rules["study"], table, rules["tables"][table], rules["raw_dir"])
    message = str(caught.value)
    assert message.startswith(f"study {rules['study']}, file {rules['tables'][table]['file']}")
    return message


def test_missing_file(copy_of):
    rules = copy_of("NL")
    Path(rules["raw_dir"], "nl_banen.dta").unlink()
    expect_error(rules, "jobs", "not found")


def test_empty_file(copy_of):
    rules = copy_of("US")
    open(f"{rules['raw_dir']}/us_hartford_wide.csv", "w").close()
    expect_error(rules, "wide", "is empty")


@pytest.mark.parametrize(
    "study,table,name",
    [
        ("EU6", "baseline", "eu6_baseline.sav"),
        ("NL", "visits", "nl_metingen.dta"),
        ("SE", "baseline", "se_ips_malmo.xlsx"),
    ],
)
def test_truncated_binary_files(copy_of, study, table, name):
    rules = copy_of(study)
    path = f"{rules['raw_dir']}/{name}"
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])
    expect_error(rules, table, "is damaged")


def test_wrong_encoding(copy_of):
    rules = copy_of("DK")
    rules["tables"]["participants"]["encoding"] = "utf-8"
    expect_error(rules, "participants", "is not valid utf-8 text")


def test_wrong_delimiter(copy_of):
    rules = copy_of("DK")
    rules["tables"]["visits"]["delimiter"] = ","
    expect_error(rules, "visits", "delimiter")


def test_missing_sheet_lists_the_sheets(copy_of):
    rules = copy_of("SE")
    rules["tables"]["wave18"]["sheet"] = "18 manader"
    message = expect_error(rules, "wave18", "has no sheet")
    assert "18 mån" in message
