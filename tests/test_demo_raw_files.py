"""Each demo trial's files open with their native readers and carry the promised mess."""

import numpy as np
import openpyxl
import pandas as pd
import pyreadstat
import pytest


@pytest.fixture(scope="module")
def raw(demo_dir):
    return demo_dir / "raw"


def read_latin1_csv(path):
    return pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, encoding="latin-1")


# ------------------------------------------------------------------ EU6


def test_eu6_spss_files_have_value_labels_user_missing_and_ids_unique_only_within_centre(raw):
    baseline, meta = pyreadstat.read_sav(raw / "EU6" / "eu6_baseline.sav", user_missing=True)
    assert len(baseline) == 312
    assert meta.variable_value_labels["arm"] == {1.0: "IPS", 2.0: "Vocational service"}
    assert len(meta.variable_value_labels["centre"]) == 6
    assert {r["lo"] for r in meta.missing_ranges["gaf_0"]} == {-99.0, 999.0}
    assert (baseline["gaf_0"] == -99).any()
    assert baseline["pid"].str.fullmatch(r"\d{3}").all()  # zero-padded
    assert baseline["pid"].duplicated().any() and not baseline.duplicated(["centre", "pid"]).any()
    assert {"name", "hospno", "dob"} <= set(baseline.columns)

    followup, meta = pyreadstat.read_sav(raw / "EU6" / "eu6_followup18.sav", user_missing=True)
    assert 0 < len(followup) < 312
    assert (followup["pid"] != followup["pid"].str.strip()).any()  # stray whitespace
    assert (followup["gaf_18"] == 999).any() and (followup["days_worked"] == -99).any()
    keys_fu = set(zip(followup["centre"], followup["pid"].str.strip().astype(int)))
    keys_bl = set(zip(baseline["centre"], baseline["pid"].astype(int)))
    assert keys_fu <= keys_bl  # joinable once ids are normalized


def test_eu6_user_missing_codes_become_missing_with_default_reader(raw):
    followup, _ = pyreadstat.read_sav(raw / "EU6" / "eu6_followup18.sav")
    assert not followup["gaf_18"].isin([-99, 999]).any()
    assert followup["gaf_18"].isna().any()


# ------------------------------------------------------------------ DK


def test_dk_files_are_semicolon_latin1_with_decimal_commas_and_danish_text(raw):
    data = (raw / "DK" / "dk_deltagere.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    participants = read_latin1_csv(raw / "DK" / "dk_deltagere.csv")
    assert {"løbenr", "køn", "bemærkning", "cpr", "navn"} <= set(participants.columns)
    assert set(participants["gruppe"]) == {"IPS", "IPSE", "Sædvanlig indsats"}
    assert participants["alder"].str.fullmatch(r"\d+,\d").mean() > 0.95
    assert (participants["alder"] == "ukendt").any()
    assert participants["cpr"].str.fullmatch(r"\d{6}-\d{4}").all()
    assert participants["løbenr"].str.fullmatch(r"\d{4}").all()


def test_dk_visits_are_long_with_missing_words(raw):
    visits = read_latin1_csv(raw / "DK" / "dk_besoeg.csv")
    assert set(visits["besøg"]) == {"baseline", "18 mdr"}
    assert visits["løbenr"].value_counts().max() == 2
    assert not visits.duplicated(["løbenr", "besøg"]).any()
    assert (visits["whoqol_psyk"].str.contains(",")).any()
    assert ((visits == "ukendt").any()).any() and ((visits == "").any()).any()


def test_dk_hours_log_has_one_row_per_participant_week(raw, demo):
    log = read_latin1_csv(raw / "DK" / "dk_timer_uge.csv")
    assert not log.duplicated(["løbenr", "uge"]).any()
    assert not log["løbenr"].str.startswith("0").any()  # ids lost their leading zeros here
    weeks, hours = log["uge"].astype(int), log["timer"].str.replace(",", ".").astype(float)
    assert (weeks > 78).any() and (hours == 0).any()
    in_window = log[(weeks <= 78) & (hours > 0)]["løbenr"].astype(int).unique()
    derived = np.isin(np.arange(1, 721), in_window).astype(float)
    np.testing.assert_array_equal(derived, demo.exports["DK"].truth["employed_recorded"].to_numpy())


# ------------------------------------------------------------------ SE


def test_se_workbook_has_one_sheet_per_wave_items_and_swedish_missing_word(raw):
    workbook = openpyxl.load_workbook(raw / "SE" / "se_ips_malmo.xlsx", read_only=True)
    assert workbook.sheetnames == ["Baslinje", "6 mån", "12 mån", "18 mån"]
    sheets = {name: list(workbook[name].iter_rows(values_only=True)) for name in workbook.sheetnames}
    header = sheets["Baslinje"][0]
    assert [f"RSES_{i}" for i in range(1, 11)] == [h for h in header if str(h).startswith("RSES_")]
    assert {"Personnummer", "Namn", "Grupp", "Kön", "Ålder"} <= set(header)
    assert len(sheets["Baslinje"]) - 1 == 120 and len(sheets["18 mån"]) - 1 == 88  # 73% assessed
    cells = [c for rows in sheets.values() for row in rows[1:] for c in row]
    assert "vet ej" in cells and None in cells
    status_column = sheets["6 mån"][0].index("Arbetat sedan förra mätningen")
    assert {row[status_column] for row in sheets["6 mån"][1:]} <= {"ja", "nej", "vet ej"}
    groups = {row[header.index("Grupp")] for row in sheets["Baslinje"][1:]}
    assert groups == {"IPS", "Traditionell arbetsrehabilitering"}
    workbook.close()


def test_se_status_per_wave_gives_recorded_employment(raw, demo):
    workbook = openpyxl.load_workbook(raw / "SE" / "se_ips_malmo.xlsx", read_only=True)
    ids = [row[0] for row in workbook["Baslinje"].iter_rows(min_row=2, values_only=True)]
    status = pd.DataFrame(index=ids)
    for sheet in ("6 mån", "12 mån", "18 mån"):
        rows = list(workbook[sheet].iter_rows(values_only=True))
        column = rows[0].index("Arbetat sedan förra mätningen")
        status[sheet] = pd.Series({row[0]: row[column] for row in rows[1:]})
    workbook.close()
    attended = status.notna()
    any_yes = (status == "ja").any(axis=1)
    all_no = ((status == "nej") | ~attended).all(axis=1) & attended["18 mån"]
    derived = np.where(any_yes, 1.0, np.where(all_no, 0.0, np.nan))
    np.testing.assert_array_equal(derived, demo.exports["SE"].truth["employed_recorded"].to_numpy())


def test_eu6_days_worked_give_recorded_employment(raw, demo):
    baseline, _ = pyreadstat.read_sav(raw / "EU6" / "eu6_baseline.sav")
    followup, _ = pyreadstat.read_sav(raw / "EU6" / "eu6_followup18.sav")
    days = followup.assign(pid=followup["pid"].str.strip().astype(int)).set_index(["centre", "pid"])["days_worked"]
    keys = pd.MultiIndex.from_arrays([baseline["centre"], baseline["pid"].astype(int)])
    derived = (days.reindex(keys) > 0).astype(float).where(days.reindex(keys).notna()).to_numpy()
    np.testing.assert_array_equal(derived, demo.exports["EU6"].truth["employed_recorded"].to_numpy())


# ------------------------------------------------------------------ NL


def test_nl_stata_visits_are_long_and_the_18_month_visit_needs_a_date_window(raw):
    participants, _ = pyreadstat.read_dta(raw / "NL" / "nl_deelnemers.dta")
    visits, meta = pyreadstat.read_dta(raw / "NL" / "nl_metingen.dta")
    assert len(participants) == 151 and {"naam", "bsn", "geboortedatum"} <= set(participants.columns)
    assert meta.variable_value_labels["bdi"] == {-99.0: "onbekend"} and (visits["bdi"] == -99).any()
    assert visits["respnr"].value_counts().max() >= 5  # visits to 30 months
    randomized = pd.to_datetime(visits["respnr"].map(participants.set_index("respnr")["randdatum"]))
    months = (pd.to_datetime(visits["datum"]) - randomized).dt.days / (365.25 / 12)
    t3 = months[visits["meting"] == 3]
    assert ((t3 > 19) & (t3 <= 21)).any()  # late but within the window
    assert (t3 > 21).any()  # outside: must not be used
    assert ((months > 15) & (months < 21)).groupby(visits["respnr"]).sum().max() == 1


def test_nl_job_episodes_overlapped_with_the_window_give_employment(raw, demo):
    participants, _ = pyreadstat.read_dta(raw / "NL" / "nl_deelnemers.dta")
    jobs, meta = pyreadstat.read_dta(raw / "NL" / "nl_banen.dta")
    assert meta.variable_value_labels["soort"] == {1.0: "regulier betaald werk", 2.0: "beschut werk"}
    assert jobs["eind"].isna().any()
    start = pd.to_datetime(jobs["respnr"].map(participants.set_index("respnr")["randdatum"]))
    end = start + pd.DateOffset(months=18)
    competitive = jobs["soort"] == 1
    overlaps = (
        competitive
        & (pd.to_datetime(jobs["start"]) <= end)
        & (jobs["eind"].isna() | (pd.to_datetime(jobs["eind"]) >= start))
    )
    employed_ids = set(jobs.loc[overlaps, "respnr"])
    derived = participants["respnr"].isin(employed_ids).astype(float).to_numpy()
    np.testing.assert_array_equal(derived, demo.exports["NL"].truth["employed_recorded"].to_numpy())
    assert (pd.to_datetime(jobs["start"]) == end).sum() >= 2  # jobs starting on the window's last day


# ------------------------------------------------------------------ US


def test_us_wide_csv_has_three_arms_visits_to_24_months_and_codes(raw):
    wide = pd.read_csv(raw / "US" / "us_hartford_wide.csv", dtype=str, keep_default_na=False)
    assert set(wide["condition"]) == {"IPS", "PSR", "BVR"} and 190 <= len(wide) <= 210
    for wave in (0, 6, 12, 18, 24):
        assert f"date_m{wave}" in wide.columns and f"gaf_m{wave}" in wide.columns
    assert ((wide == "999").any()).any() and ((wide == "").any()).any()
    assert {"bprs_blunt_m18", "bprs_withdr_m18", "bprs_motor_m18"} <= set(wide.columns)
    assert wide["ssn"].str.fullmatch(r"9\d{2}-\d{2}-\d{4}").all()
    assert set(wide["worked_m24"]) >= {"Y", "N", ""}


@pytest.mark.parametrize("study,waves", [("US", (6, 12, 18))])
def test_us_status_per_wave_gives_recorded_employment(raw, demo, study, waves):
    wide = pd.read_csv(raw / "US" / "us_hartford_wide.csv", dtype=str, keep_default_na=False)
    status = wide[[f"worked_m{w}" for w in waves]]
    attended = wide[[f"date_m{w}" for w in waves]] != ""
    any_yes = (status == "Y").any(axis=1)
    all_no = ((status == "N") | ~attended.to_numpy()).all(axis=1) & attended.iloc[:, -1]
    derived = np.where(any_yes, 1.0, np.where(all_no, 0.0, np.nan))
    np.testing.assert_array_equal(derived, demo.exports["US"].truth["employed_recorded"].to_numpy())


# ------------------------------------------------------------------ all trials


def test_every_trial_carries_fake_direct_identifiers(demo):
    identifier_columns = {
        "EU6": {"name", "hospno", "dob"},
        "DK": {"navn", "cpr"},
        "SE": {"Namn", "Personnummer"},
        "NL": {"naam", "bsn", "geboortedatum"},
        "US": {"name", "ssn", "dob"},
    }
    for study, export in demo.exports.items():
        columns = {c for raw_file in export.files for frame in raw_file.sheets.values() for c in frame.columns}
        assert identifier_columns[study] <= columns, study


def test_followup_is_not_exactly_at_18_months(demo):
    months = pd.concat([e.truth["followup_months"] for e in demo.exports.values()]).dropna()
    assert months.min() < 17 and months.max() > 19.5
