"""Three trial folders for measuring the rule-file draft (bench/bench_draft.py), written by independent
tools with layouts the demo lacks. Nothing here is written by ipdpool: values go to plain CSV, then R
openxlsx, R foreign, PSPP and LibreOffice headless write the exports, as a data manager would.

- NO (R openxlsx .xlsx): an instructions sheet first, ids "NO-0001" / 1 / "no0001" in three sheets, a
  non-ASCII sheet name (Oppfølging), seven numbered PANSS negative items per wave, ICD-10 diagnoses,
  job episodes.
- EE (PSPP .sav + R foreign .dta): ids unique only within a centre, ten numbered RSES items per wave,
  ICD-10 codes without decimals, days worked, a text follow-up date.
- PT (R openxlsx, converted to .ods by LibreOffice): an instructions sheet, ids "PT/001" / 1 / "pt001",
  a long visit table with visit dates (baseline by label, follow-up by a window), job episodes.

Each folder's completed rule file is bench/draft_trials/<ID>.yaml (raw_dir: RAW_DIR, replaced by the
folder written here). Needs Rscript (openxlsx, foreign), pspp and soffice (tests/corpus.py, .ci/run).
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
TRIALS = ("NO", "EE", "PT")
ICD10 = ["F20.0", "F20.9", "F25.1", "F31.2", "F32.1", "F60.3"]


def _dates(rng, n, start=dt.date(2016, 2, 1), span=400):
    return [start + dt.timedelta(days=int(d)) for d in rng.integers(0, span, n)]


def _items(rng, n, k, low, high, prefix, blank=0.03):
    items = pd.DataFrame({f"{prefix}{i}": rng.integers(low, high + 1, n).astype(float) for i in range(1, k + 1)})
    return items.mask(rng.random(items.shape) < blank)


def _episodes(rng, ids, randomized, idfmt):
    rows = []
    for i, start in zip(ids, randomized):
        for _ in range(int(rng.integers(0, 3))):
            begin = start + dt.timedelta(days=int(rng.integers(-200, 700)))
            end = None if rng.random() < 0.3 else begin + dt.timedelta(days=int(rng.integers(10, 300)))
            rows.append({"id": idfmt(i), "begin": begin, "end": end})
    return pd.DataFrame(rows)


def norway(rng, folder: Path) -> None:
    n = 70
    ids = np.arange(1, n + 1)
    randomized = _dates(rng, n)
    people = pd.DataFrame(
        {
            "deltaker": [f"NO-{i:04d}" for i in ids],
            "gruppe": np.where(ids % 2 == 0, "IPS", "Vanlig oppfølging"),
            "kjonn": rng.choice(["K", "M"], n),
            "alder": rng.integers(19, 62, n),
            "randomisert": randomized,
            "diagnose": rng.choice(ICD10, n),
        }
    ).join(_items(rng, n, 7, 1, 7, "panss_n"))
    seen = [i for i in range(n) if i % 6 != 5]
    followup = pd.DataFrame(
        {
            "deltaker": ids[seen],
            "besoksdato": [randomized[i] + dt.timedelta(days=int(rng.integers(520, 580))) for i in seen],
        }
    ).join(_items(rng, len(seen), 7, 1, 7, "panss_n"))
    jobs = _episodes(rng, ids, randomized, lambda i: f"no{i:04d}").rename(
        columns={"id": "deltaker", "begin": "start", "end": "slutt"}
    )
    for name, frame in (("people", people), ("followup", followup), ("jobs", jobs)):
        frame.to_csv(folder / f"NO_{name}.csv", index=False)


def estonia(rng, folder: Path) -> None:
    centres = {1: 26, 2: 22, 3: 18}
    keskus = np.concatenate([[c] * k for c, k in centres.items()])
    nr = np.concatenate([np.arange(1, k + 1) for k in centres.values()])
    n = len(nr)
    randomized = _dates(rng, n, dt.date(2015, 9, 1))
    people = pd.DataFrame(
        {
            "keskus": keskus,
            "nr": nr,
            "ruhm": rng.integers(1, 3, n),
            "sugu": rng.integers(1, 3, n),
            "vanus": rng.integers(20, 60, n),
            "randkp": [d.strftime("%d.%m.%Y") for d in randomized],
            "dx": rng.choice(["F20", "F25", "F31", "F32", "F41"], n),
        }
    ).join(_items(rng, n, 10, 1, 4, "rses"))
    people.loc[[4, 30], "vanus"] = 999
    seen = [i for i in range(n) if i % 7 != 3]
    late = rng.integers(530, 570, len(seen))
    followup = pd.DataFrame(
        {
            "keskus": keskus[seen],
            "nr": nr[seen],
            "jkp": [(randomized[i] + dt.timedelta(days=int(d))).strftime("%d.%m.%Y") for i, d in zip(seen, late)],
            "tootoo_paevad": rng.integers(0, 200, len(seen)) * (rng.random(len(seen)) < 0.5),
        }
    ).join(_items(rng, len(seen), 10, 1, 4, "rses"))
    people.to_csv(folder / "EE_people.csv", index=False)
    followup.to_csv(folder / "EE_followup.csv", index=False)


def portugal(rng, folder: Path) -> None:
    n = 60
    ids = np.arange(1, n + 1)
    randomized = _dates(rng, n, dt.date(2017, 1, 10))
    people = pd.DataFrame(
        {
            "codigo": [f"PT/{i:03d}" for i in ids],
            "braco": np.where(ids % 2 == 1, "IPS", "Tratamento habitual"),
            "sexo": rng.choice(["F", "M"], n),
            "idade": rng.integers(18, 64, n),
            "data_aleatorizacao": randomized,
            "diagnostico": rng.choice(ICD10, n),
        }
    )
    visits = []
    for i, start in zip(ids, randomized):
        for label, days in (("inicial", 0), ("6 meses", 183), ("12 meses", 365), ("18 meses", 548)):
            if label != "inicial" and rng.random() < 0.15:
                continue
            visits.append(
                {
                    "codigo": int(i),
                    "visita": label,
                    "data_visita": start + dt.timedelta(days=days + int(rng.integers(-20, 21)) * (days > 0)),
                    "mansa": round(float(rng.uniform(2, 6.5)), 2),
                }
            )
    jobs = _episodes(rng, ids, randomized, lambda i: f"pt{i:03d}").rename(
        columns={"id": "codigo", "begin": "inicio", "end": "fim"}
    )
    pd.DataFrame(visits).to_csv(folder / "PT_visits.csv", index=False)
    people.to_csv(folder / "PT_people.csv", index=False)
    jobs.to_csv(folder / "PT_jobs.csv", index=False)


PSPP = """
GET DATA /TYPE=TXT /FILE='{csv}/EE_people.csv' /ENCODING='UTF-8' /ARRANGEMENT=DELIMITED /DELCASE=LINE
  /FIRSTCASE=2 /DELIMITERS=","
  /VARIABLES= keskus F1.0 nr F3.0 ruhm F1.0 sugu F1.0 vanus F3.0 randkp EDATE10 dx A3
  rses1 F1.0 rses2 F1.0 rses3 F1.0 rses4 F1.0 rses5 F1.0 rses6 F1.0 rses7 F1.0 rses8 F1.0 rses9 F1.0 rses10 F1.0.
VALUE LABELS keskus 1 'Tallinn' 2 'Tartu' 3 'Pärnu' /ruhm 1 'IPS' 2 'Tavaline ravi' /sugu 1 'mees' 2 'naine'.
MISSING VALUES vanus (999).
SAVE OUTFILE='{out}/EE/ee_baseline.sav'.
"""

R = r"""
suppressPackageStartupMessages({library(foreign); library(openxlsx)})
csv <- "{csv}"; out <- "{out}"
rd <- function(name) read.csv(file.path(csv, name), stringsAsFactors = FALSE, encoding = "UTF-8", na.strings = "")
fu <- rd("EE_followup.csv")
foreign::write.dta(fu, file.path(out, "EE", "ee_jalgimine.dta"), version = 10L)
dated <- function(frame, columns) { for (c in columns) frame[[c]] <- as.Date(frame[[c]]); frame }
guide <- function(wb, sheet, lines) {
  addWorksheet(wb, sheet); writeData(wb, sheet, data.frame(x = lines), colNames = FALSE)
}
wb <- createWorkbook()
guide(wb, "Veiledning", c("Dette regnearket inneholder data fra IPS-studien i Oslo.",
  "Arket Deltakere har en rad per randomisert deltaker; Oppfølging har 18-måneders besøket.",
  "Arbeidsforhold lister jobbperioder (slutt tom = pågår). Kontakt datamanager ved spørsmål."))
addWorksheet(wb, "Deltakere"); writeData(wb, "Deltakere", dated(rd("NO_people.csv"), "randomisert"))
addWorksheet(wb, "Oppfølging"); writeData(wb, "Oppfølging", dated(rd("NO_followup.csv"), "besoksdato"))
addWorksheet(wb, "Arbeidsforhold"); writeData(wb, "Arbeidsforhold", dated(rd("NO_jobs.csv"), c("start", "slutt")))
saveWorkbook(wb, file.path(out, "NO", "no_ips_studie.xlsx"), overwrite = TRUE)
wb <- createWorkbook()
guide(wb, "Leia-me", c("Folha de dados do ensaio IPS (Lisboa).",
  "Participantes: uma linha por participante aleatorizado.",
  "Visitas: inicial, 6, 12 e 18 meses. Emprego: episódios de trabalho."))
addWorksheet(wb, "Participantes"); writeData(wb, "Participantes", dated(rd("PT_people.csv"), "data_aleatorizacao"))
addWorksheet(wb, "Visitas"); writeData(wb, "Visitas", dated(rd("PT_visits.csv"), "data_visita"))
addWorksheet(wb, "Emprego"); writeData(wb, "Emprego", dated(rd("PT_jobs.csv"), c("inicio", "fim")))
saveWorkbook(wb, file.path(csv, "pt_ensaio.xlsx"), overwrite = TRUE)
"""


def _run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or "error" in done.stdout.lower():
        raise RuntimeError(f"{command[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def build_trials(folder: Path) -> dict[str, Path]:
    """Write the three trial folders under `folder`; returns each trial's raw folder."""
    folder = Path(folder)
    csv = folder / "csv"
    csv.mkdir(parents=True)
    rng = np.random.default_rng(24)
    norway(rng, csv)
    estonia(rng, csv)
    portugal(rng, csv)
    for trial in TRIALS:
        (folder / trial).mkdir()
    (csv / "write.sps").write_text(PSPP.format(csv=csv, out=folder), encoding="utf-8")
    _run(["pspp", "--safer", "write.sps"], csv)
    (csv / "write.R").write_text(R.replace("{csv}", str(csv)).replace("{out}", str(folder)), encoding="utf-8")
    _run(["Rscript", "--vanilla", "write.R"], csv)
    profile = f"-env:UserInstallation=file://{csv}/lo-profile"
    _run(["soffice", "--headless", "--norestore", profile, "--convert-to", "ods", "--outdir", str(folder / "PT"),
          str(csv / "pt_ensaio.xlsx")], csv)  # fmt: skip
    return {trial: folder / trial for trial in TRIALS}


def rule_file(trial: str, raw_dir: Path) -> str:
    """The completed rule file of `trial`, pointing at `raw_dir`."""
    return (HERE / f"{trial}.yaml").read_text(encoding="utf-8").replace("RAW_DIR", str(raw_dir))
