"""Hand-off files: labelled Stata and SPSS files, categorical Parquet, 0/1 CSV, a Maelstrom-style
dictionary and a frictionless data package that validates against the data."""

import json
import time

import pandas as pd
import pyreadstat
import pytest
from frictionless import validate
from tests_support import harmonized_pool

from ipdpool.disclosure import ShareRefused, collect_shareable
from ipdpool.handoff import write_handoff
from ipdpool.harmonize.schema import load_schema


@pytest.fixture(scope="module")
def handoff(repo_root, tmp_path_factory):
    pooled = harmonized_pool(repo_root)
    out = tmp_path_factory.mktemp("handoff") / "handoff"
    write_handoff(pooled, load_schema(repo_root / "config" / "schema.yaml"), out)
    return pooled, out


def test_stata_and_spss_files_carry_variable_and_value_labels(handoff):
    pooled, out = handoff
    for reader, name in ((pyreadstat.read_dta, "pooled.dta"), (pyreadstat.read_sav, "pooled.sav")):
        data, meta = reader(out / name)
        assert len(data) == len(pooled) and list(data.columns) == list(pooled.columns)
        assert {int(k): v for k, v in meta.variable_value_labels["arm"].items()} == {1: "IPS", 2: "SAU"}
        assert {int(k): v for k, v in meta.variable_value_labels["employed"].items()} == {
            0: "did not work during follow-up",
            1: "worked during follow-up",
        }
        assert meta.column_names_to_labels["functioning_fu_z"] == "Functioning at follow-up, standardized"
        arms = data["arm"].map({1: "IPS", 2: "SAU"})
        assert arms.tolist() == pooled["arm"].tolist()
        assert data["employed"].isna().sum() == pooled["employed"].isna().sum()


def test_parquet_has_categoricals_and_csv_has_0_1_integers(handoff):
    pooled, out = handoff
    parquet = pd.read_parquet(out / "pooled.parquet")
    assert isinstance(parquet["diagnosis"].dtype, pd.CategoricalDtype)
    assert list(parquet["diagnosis"].cat.categories) == ["schizophrenia_spectrum", "bipolar", "depression", "other"]
    csv = pd.read_csv(out / "pooled.csv")
    assert str(csv["employed"].dtype) in ("float64", "int64") and set(csv["employed"].dropna()) == {0, 1}
    assert "True" not in (out / "pooled.csv").read_text() and "False" not in (out / "pooled.csv").read_text()


def test_dictionary_tables_and_the_data_package_validate_against_the_data(handoff, tmp_path):
    pooled, out = handoff
    variables = pd.read_csv(out / "variables.tsv", sep="\t")
    assert list(variables["name"]) == list(pooled.columns)
    assert {"name", "label:en", "valueType", "unit"} <= set(variables.columns)
    categories = pd.read_csv(out / "categories.tsv", sep="\t")
    assert set(categories["variable"]) == {"arm", "sex", "diagnosis", "employed"}
    sheets = pd.read_excel(out / "dictionary.xlsx", sheet_name=None, engine="calamine")
    assert set(sheets) == {"Variables", "Categories"} and len(sheets["Variables"]) == len(variables)
    report = validate(out / "datapackage.json")
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type"])[:5]
    # and the validation has teeth: a code outside the categories fails it
    package = json.loads((out / "datapackage.json").read_text())
    broken = tmp_path / "pooled.csv"
    lines = (out / "pooled.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("arm")] = "7"
    broken.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    (tmp_path / "datapackage.json").write_text(json.dumps(package))
    assert not validate(tmp_path / "datapackage.json").valid


def test_handoff_files_are_owner_only_and_never_shared(handoff, tmp_path):
    _, out = handoff
    files = sorted(out.iterdir())
    assert len(files) == 8 and all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    with pytest.raises(ShareRefused):
        collect_shareable([out / "pooled.dta"], tmp_path / "share", 5)


def test_the_data_dictionary_workbook_has_the_same_bytes_every_time(tmp_path):
    from ipdpool.evaluation import write_workbook

    sheets = {
        "Variables": pd.DataFrame({"name": ["age"], "label": ["Age"]}),
        "Categories": pd.DataFrame({"variable": ["sex"], "code": [1]}),
    }
    write_workbook(sheets, tmp_path / "one.xlsx")
    time.sleep(1.1)  # openpyxl stamps the save time to the second
    write_workbook(sheets, tmp_path / "two.xlsx")
    assert (tmp_path / "one.xlsx").read_bytes() == (tmp_path / "two.xlsx").read_bytes()
    sheets_read = pd.read_excel(tmp_path / "one.xlsx", sheet_name=None, engine="openpyxl")
    assert sheets_read.keys() == {"Variables", "Categories"}


def test_two_runs_give_byte_identical_handoff_files_stamped_from_source_date_epoch(
    handoff, repo_root, tmp_path, monkeypatch
):
    pooled, first = handoff
    schema = load_schema(repo_root / "config" / "schema.yaml")
    # Without SOURCE_DATE_EPOCH the stamp is the fixed 2000-01-01, not the clock: both runs agree even a minute apart.
    for reader, name in ((pyreadstat.read_dta, "pooled.dta"), (pyreadstat.read_sav, "pooled.sav")):
        _, meta = reader(first / name, metadataonly=True)
        assert meta.creation_time.date() == pd.Timestamp("2000-01-01").date()
    write_handoff(pooled, schema, tmp_path / "again")
    for path in sorted(first.iterdir()):
        assert (tmp_path / "again" / path.name).read_bytes() == path.read_bytes(), path.name
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01 00:00:00 UTC
    for run in ("one", "two"):
        write_handoff(pooled, schema, tmp_path / run)
    for name in ("pooled.dta", "pooled.sav"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    _, meta = pyreadstat.read_sav(tmp_path / "one" / "pooled.sav", metadataonly=True)
    assert meta.creation_time == pd.Timestamp("2026-01-01 00:00:00").to_pydatetime()
    _, meta = pyreadstat.read_dta(tmp_path / "one" / "pooled.dta", metadataonly=True)
    assert meta.creation_time == pd.Timestamp("2026-01-01 00:00:00").to_pydatetime()
