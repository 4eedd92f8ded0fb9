"""A corpus of raw exports written by independent tools, with the values they must read back as.

Nothing here is written by ipdpool: the known values go to plain CSV, then PSPP (`.sav`, `.por`),
R haven (`.dta` versions 8-15, `.sav`, `.xpt` versions 5 and 8, `.sas7bdat`), R foreign (a pre-Unicode
`.dta`), R openxlsx (`.xlsx`) and LibreOffice headless (`.ods`) write the exports, as a trial's data manager would.
Some files are then damaged the way exporters get them wrong (a `<dimension>` tag of A1).

The sixth trial, FI (synthetic, Finnish), is part of the corpus: its participants from PSPP
with ids "FI-001", its follow-up from foreign::write.dta (pre-Unicode, UTF-8 bytes, ids 1, 2, ...),
its job episodes from openxlsx with a wrong `<dimension>` tag, and an 18-month window that the
protocol defines as 548 days. `fi_truth` holds what harmonization must give.

Without the tools the tests skip with the reason, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

TOOLS = {
    "pspp": "pspp",
    "Rscript": "r-base-core with r-cran-haven, r-cran-foreign, r-cran-openxlsx",
    "soffice": "libreoffice-calc-nogui",
}
N = 40
DIAGNOSES = {1: "skitsofrenia", 2: "kaksisuuntainen mielialahäiriö", 3: "masennus", 4: "muu häiriö"}
HARMONIZED_DIAGNOSIS = {1: "schizophrenia_spectrum", 2: "bipolar", 3: "depression", 4: "other"}


def require_tools() -> None:
    missing = [f"{tool} ({package})" for tool, package in TOOLS.items() if shutil.which(tool) is None]
    r_packages = "haven", "foreign", "openxlsx"
    if shutil.which("Rscript") and not missing:
        check = subprocess.run(
            [
                "Rscript",
                "--vanilla",
                "-e",
                f"quit(status = !all(sapply(c({', '.join(map(repr, r_packages))}), requireNamespace, quietly = TRUE)))",
            ],
            capture_output=True,
        )
        if check.returncode:
            missing.append("R packages haven, foreign, openxlsx (r-cran-haven, r-cran-foreign, r-cran-openxlsx)")
    if missing:
        reason = f"corpus tools not installed: {', '.join(missing)} (see .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


# ------------------------------------------------------------ known values


def known_values(n: int = 12) -> pd.DataFrame:
    """Every cell type the corpus exercises: integers, decimals, text with non-ASCII letters, dates, blanks."""
    rng = np.random.default_rng(11)
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "code": rng.integers(1, 4, n),
            "score": np.round(rng.normal(20, 5, n), 2),
            "town": [["Oulu", "Hämeenlinna", "Jyväskylä", "Pori"][i % 4] for i in range(n)],
            "visit": [dt.date(2015, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 900, n)],
        }
    )


def fi_trial() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The FI trial's people (participants file), follow-up rows and job episodes, as delivered."""
    rng = np.random.default_rng(2015)
    ids = np.arange(1, N + 1)
    randomized = [dt.date(2015, 1, 5) + dt.timedelta(days=int(d)) for d in rng.integers(0, 300, N)]
    people = pd.DataFrame(
        {
            "tunnus": [f"FI-{i:03d}" for i in ids],
            "ryhma": np.where(ids % 2 == 0, 1, 2),
            "sukupuoli": rng.integers(1, 3, N),
            "ika": rng.integers(20, 60, N),
            "satunnaistettu": randomized,
            "rses_0": rng.integers(10, 41, N),
        }
    )
    people.loc[[3, 17], "ika"] = 999  # declared user-missing in the .sav
    people.loc[[5], "rses_0"] = -9
    seen = [i for i in range(N) if i % 5 != 4]  # every fifth participant has no follow-up row
    followup = pd.DataFrame(
        {
            "id": ids[seen],
            "diagnoosi": [DIAGNOSES[1 + i % 4] for i in seen],
            "seurantapvm": [randomized[i] + dt.timedelta(days=int(500 + 3 * i)) for i in seen],
            "rses_18": [10 + (7 * i) % 31 for i in seen],
        }
    )
    # Job episodes as days after randomization (start, end or None if ongoing): day 548 is inside
    # the protocol's window (548 days), day 549 outside, though inside 18 calendar months.
    episodes = {
        0: [(100, 200)],
        1: [(548, None)],
        2: [(549, 700)],
        3: [(-60, 10)],
        6: [(-300, -10)],
        8: [(30, None), (400, 420)],
    }
    episodes.update({i: [(int(rng.integers(0, 540)), None)] for i in range(10, N, 3)})
    jobs = pd.DataFrame(
        [
            {
                "tunnus": f"FI-{i + 1:03d}",
                "alku": randomized[i] + dt.timedelta(days=s),
                "loppu": None if e is None else randomized[i] + dt.timedelta(days=e),
            }
            for i, spans in episodes.items()
            for s, e in spans
        ]
    )
    return people, followup, jobs


def fi_truth() -> pd.DataFrame:
    """What harmonizing FI must give, computed from the delivered values, independently of ipdpool."""
    people, followup, jobs = fi_trial()
    follow = followup.set_index("id")
    truth = pd.DataFrame(
        {
            "site": "Helsinki",
            "arm": np.where(people["ryhma"] == 1, "IPS", "SAU"),
            "arm_original": np.where(people["ryhma"] == 1, "IPS", "Tavanomainen kuntoutus"),
        }
    )
    truth["sex"] = np.where(people["sukupuoli"] == 1, "male", "female")
    truth["age"] = people["ika"].where(people["ika"] != 999).astype(float)
    keys = np.arange(1, N + 1)
    truth["diagnosis"] = [
        HARMONIZED_DIAGNOSIS[{v: k for k, v in DIAGNOSES.items()}[follow.loc[k, "diagnoosi"]]]
        if k in follow.index
        else None
        for k in keys
    ]
    truth["followup_months"] = [
        (follow.loc[k, "seurantapvm"] - people["satunnaistettu"][k - 1]).days / 30.4375 if k in follow.index else np.nan
        for k in keys
    ]
    employed = []
    for i, start in enumerate(people["satunnaistettu"]):
        mine = jobs[jobs["tunnus"] == f"FI-{i + 1:03d}"]
        window_end = start + dt.timedelta(days=548)
        employed.append(
            float(any(s <= window_end and (pd.isna(e) or e >= start) for s, e in zip(mine["alku"], mine["loppu"])))
        )
    truth["employed"] = employed
    truth["self_esteem_bl"] = people["rses_0"].where(people["rses_0"] != -9).astype(float)
    truth["self_esteem_fu"] = [float(follow.loc[k, "rses_18"]) if k in follow.index else np.nan for k in keys]
    return truth


# ------------------------------------------------------------ writing the exports with PSPP, R and LibreOffice

PSPP_SYNTAX = """
GET DATA /TYPE=TXT /FILE='{folder}/people.csv' /ENCODING='UTF-8' /ARRANGEMENT=DELIMITED /DELCASE=LINE \
/FIRSTCASE=2 /DELIMITERS=","
  /VARIABLES= tunnus A6 ryhma F1.0 sukupuoli F1.0 ika F3.0 satunnaistettu EDATE10 rses_0 F3.0.
VALUE LABELS ryhma 1 'IPS' 2 'Tavanomainen kuntoutus' /sukupuoli 1 'mies' 2 'nainen'.
MISSING VALUES ika (999) /rses_0 (-9).
SAVE OUTFILE='{folder}/FI/fi_osallistujat.sav'.
GET DATA /TYPE=TXT /FILE='{folder}/known.csv' /ENCODING='UTF-8' /ARRANGEMENT=DELIMITED /DELCASE=LINE \
/FIRSTCASE=2 /DELIMITERS=","
  /VARIABLES= id F4.0 code F1.0 score F8.2 town A20 visit SDATE10.
VALUE LABELS code 1 'one' 2 'two' 3 'three'.
MISSING VALUES code (9).
SAVE OUTFILE='{folder}/corpus/pspp.sav'.
EXPORT OUTFILE='{folder}/corpus/pspp.por'.
"""

R_SCRIPT = """
suppressPackageStartupMessages({library(haven); library(foreign); library(openxlsx)})
folder <- "{folder}"
fu <- read.csv(file.path(folder, "followup.csv"), stringsAsFactors = FALSE, encoding = "UTF-8")
fu$id <- as.integer(fu$id)
# foreign writes a pre-Unicode .dta (format 114) holding the strings' bytes as they are: UTF-8.
# (It writes R dates as plain numbers without a date format, so the follow-up date stays text.)
foreign::write.dta(fu, file.path(folder, "FI", "fi_seuranta.dta"), version = 10L)
jobs <- read.csv(file.path(folder, "jobs.csv"), stringsAsFactors = FALSE, na.strings = "")
jobs$alku <- as.Date(jobs$alku); jobs$loppu <- as.Date(jobs$loppu)
wb <- createWorkbook(); addWorksheet(wb, "tyojaksot"); writeData(wb, "tyojaksot", jobs)
saveWorkbook(wb, file.path(folder, "FI", "fi_tyojaksot.xlsx"), overwrite = TRUE)
known <- read.csv(file.path(folder, "known.csv"), stringsAsFactors = FALSE, encoding = "UTF-8")
known$visit <- as.Date(known$visit)
known$code <- labelled(as.numeric(known$code), c(one = 1, two = 2, three = 3))
for (v in 8:15) haven::write_dta(known, file.path(folder, "corpus", sprintf("haven_v%d.dta", v)), version = v)
haven::write_sav(known, file.path(folder, "corpus", "haven.sav"))
haven::write_xpt(zap_labels(known), file.path(folder, "corpus", "haven.xpt"), version = 5)
haven::write_xpt(zap_labels(known), file.path(folder, "corpus", "haven_v8.xpt"), version = 8)
suppressWarnings(haven::write_sas(zap_labels(known), file.path(folder, "corpus", "haven.sas7bdat")))
plain <- zap_labels(known)
foreign::write.dta(plain, file.path(folder, "corpus", "foreign_v10.dta"), version = 10L)
wb <- createWorkbook(); addWorksheet(wb, "known"); writeData(wb, "known", plain)
saveWorkbook(wb, file.path(folder, "corpus", "openxlsx.xlsx"), overwrite = TRUE)
"""


def set_dimension(path: Path, ref: str) -> None:
    """Rewrite the first sheet's <dimension> tag, as faulty exporters write it (read it whole anyway)."""
    with zipfile.ZipFile(path) as source:
        items = [(item, source.read(item.filename)) for item in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for item, data in items:
            if item.filename == "xl/worksheets/sheet1.xml":
                data = re.sub(rb"<dimension ref=\"[^\"]*\"\s*/>", f'<dimension ref="{ref}"/>'.encode(), data)
                if b"<dimension" not in data:
                    data = data.replace(b"<sheetData", f'<dimension ref="{ref}"/><sheetData'.encode(), 1)
            target.writestr(item, data)


def run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or "error" in done.stdout.lower():
        raise RuntimeError(f"{command[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def build_corpus(folder: Path) -> Path:
    """Write every corpus file into `folder` (FI/ and corpus/) with the independent tools."""
    (folder / "FI").mkdir(parents=True)
    (folder / "corpus").mkdir()
    people, followup, jobs = fi_trial()
    people.assign(satunnaistettu=[d.strftime("%d.%m.%Y") for d in people["satunnaistettu"]]).to_csv(
        folder / "people.csv", index=False
    )
    followup.assign(seurantapvm=[d.strftime("%d.%m.%Y") for d in followup["seurantapvm"]]).to_csv(
        folder / "followup.csv", index=False
    )
    jobs.to_csv(folder / "jobs.csv", index=False)
    known = known_values()
    known.assign(visit=[d.strftime("%Y/%m/%d") for d in known["visit"]]).to_csv(folder / "known.csv", index=False)
    (folder / "write.sps").write_text(PSPP_SYNTAX.format(folder=folder), encoding="utf-8")
    run(["pspp", "--safer", "write.sps"], folder)
    (folder / "write.R").write_text(R_SCRIPT.replace("{folder}", str(folder)), encoding="utf-8")
    run(["Rscript", "--vanilla", "write.R"], folder)
    run(
        [
            "soffice",
            "--headless",
            "--norestore",
            f"-env:UserInstallation=file://{folder}/lo-profile",
            "--convert-to",
            "ods",
            "--outdir",
            str(folder / "corpus"),
            str(folder / "corpus" / "openxlsx.xlsx"),
        ],
        folder,
    )
    set_dimension(folder / "FI" / "fi_tyojaksot.xlsx", "A1:C3")  # a tag covering 2 of the episodes
    shutil.copy(folder / "corpus" / "openxlsx.xlsx", folder / "corpus" / "dimension_a1.xlsx")
    set_dimension(folder / "corpus" / "dimension_a1.xlsx", "A1")
    return folder
