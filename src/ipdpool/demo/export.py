"""Turn latent trial data into messy raw exports, one function per trial.

Each `export_<study>` returns the trial's raw files (in memory) and a truth
table: one row per randomized participant with the values a correct
harmonization must recover (site, original id, arm, employment as it can be
derived from the records, actual follow-up time, instrument scores before and
after rounding). Every trial-specific quirk is listed in resources/demo/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .design import INSTRUMENTS, OUTCOMES, TRIALS, Instrument, Trial
from .files import RawFile

DAYS_PER_MONTH = 365.25 / 12
WINDOW_WEEKS = 78  # 18 months in the DK weekly hours log


@dataclass
class TrialExport:
    study: str
    files: list[RawFile]
    truth: pd.DataFrame


# ---------------------------------------------------------------- helpers


def pick(rng: np.random.Generator, options, n: int) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.integers(0, len(options), n)]


def fake_names(rng: np.random.Generator, first: list[str], last: list[str], n: int) -> np.ndarray:
    return np.array([f"{a} {b}" for a, b in zip(pick(rng, first, n), pick(rng, last, n))], dtype=object)


def birth_dates(randomized: pd.Series, age: pd.Series, rng: np.random.Generator) -> pd.Series:
    days = (age.to_numpy() * 365.25).astype(int) + rng.integers(0, 300, len(age))
    return randomized - pd.to_timedelta(days, unit="D")


def visit_dates(
    randomized: pd.Series,
    months: float,
    rng: np.random.Generator,
    sd_days: float = 14,
    late_share: float = 0.0,
    late_days=(30, 75),
) -> pd.Series:
    """Scheduled visit plus jitter; a share of visits happen late (within the window)."""
    n = len(randomized)
    offset = months * DAYS_PER_MONTH + rng.normal(0, sd_days, n)
    late = rng.random(n) < late_share
    offset[late] = months * DAYS_PER_MONTH + rng.integers(late_days[0], late_days[1], late.sum())
    return randomized + pd.to_timedelta(np.round(offset).astype(int), unit="D")


def months_between(start: pd.Series, end: pd.Series) -> pd.Series:
    return (end - start).dt.days / DAYS_PER_MONTH


def outcome_scores(
    latent: pd.DataFrame, outcome: str, when: str, instrument: Instrument
) -> tuple[np.ndarray, np.ndarray]:
    """Exact and delivered instrument scores; delivered is NaN where not measured."""
    exact = instrument.exact(latent[f"{outcome}_{when}_latent"].to_numpy())
    score = instrument.score(latent[f"{outcome}_{when}_latent"].to_numpy())
    missing = latent[f"{outcome}_{when}_missing"].to_numpy()
    if when == "fu":
        missing = missing | ~latent["assessed"].to_numpy()
    score = np.where(missing, np.nan, score)
    return exact, score


def split_into_items(total: np.ndarray, instrument: Instrument, rng: np.random.Generator) -> np.ndarray:
    """Integer items within [item_low, item_high] that sum to `total` (NaN rows stay NaN)."""
    k, lo, hi = instrument.n_items, instrument.item_low, instrument.item_high
    n = total.size
    items = np.full((n, k), np.nan)
    ok = ~np.isnan(total)
    rest = total[ok].astype(int) - k * lo
    base = np.repeat((rest // k)[:, None], k, axis=1) + lo
    extra = rest % k
    order = np.argsort(rng.random((ok.sum(), k)), axis=1)
    base += (order < extra[:, None]).astype(int)
    # Move single points between random item pairs so items are not all equal; sums are kept.
    for _ in range(3 * k):
        a, b = rng.integers(0, k, ok.sum()), rng.integers(0, k, ok.sum())
        rows = np.arange(ok.sum())
        can = (a != b) & (base[rows, a] > lo) & (base[rows, b] < hi) & (rng.random(ok.sum()) < 0.5)
        base[rows[can], a[can]] -= 1
        base[rows[can], b[can]] += 1
    items[ok] = base
    return items


def blank_some_items(
    items: np.ndarray, rng: np.random.Generator, one_share: float = 0.06, many_share: float = 0.02, many: int = 3
) -> np.ndarray:
    """Item non-response: a few participants skip one item, fewer skip `many`."""
    items = items.copy()
    n, k = items.shape
    draw = rng.random(n)
    skip = np.where(draw < many_share, many, np.where(draw < many_share + one_share, 1, 0))
    skip[np.isnan(items).all(axis=1)] = 0
    for row in np.flatnonzero(skip):
        items[row, rng.choice(k, skip[row], replace=False)] = np.nan
    return items


def add_outcome_truth(truth: pd.DataFrame, trial: Trial, latent: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """Record instrument truth per outcome; return delivered scores keyed by (outcome, when)."""
    scores = {}
    for outcome in OUTCOMES:
        name = trial.instruments.get(outcome)
        truth[f"{outcome}_instrument"] = name if name else None
        for when in ("bl", "fu"):
            if name is None:
                truth[f"{outcome}_{when}_exact"] = np.nan
                truth[f"{outcome}_{when}_score"] = np.nan
                continue
            exact, score = outcome_scores(latent, outcome, when, INSTRUMENTS[name])
            truth[f"{outcome}_{when}_exact"] = exact
            truth[f"{outcome}_{when}_score"] = score
            scores[(outcome, when)] = score
    return scores


def base_truth(latent: pd.DataFrame, ids: np.ndarray, id_keys: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "study": latent["study"].to_numpy(),
            "site": latent["site"].to_numpy(),
            "original_id": ids,
            "id_key": id_keys,
            "arm_label": latent["arm_label"].to_numpy(),
            "ips": latent["ips"].to_numpy(),
            "employed_true": latent["employed"].to_numpy(),
            "age": latent["age"].to_numpy(),
            "sex": latent["sex"].to_numpy(),
            "diagnosis": latent["diagnosis"].to_numpy(),
        }
    )


def with_missing_code(values: np.ndarray, code) -> np.ndarray:
    return np.where(np.isnan(values), code, values)


def as_date(series: pd.Series) -> list:
    return [None if pd.isna(v) else v.date() for v in series]


def decimal_comma(values: np.ndarray, digits: int, missing: str = "") -> list[str]:
    return [missing if np.isnan(v) else f"{v:.{digits}f}".replace(".", ",") for v in values]


def integer_text(values: np.ndarray, missing: str = "") -> list[str]:
    return [missing if np.isnan(v) else str(int(v)) for v in values]


def wave_employment(
    employed: np.ndarray,
    attended: dict[int, np.ndarray],
    waves: tuple[int, ...],
    rng: np.random.Generator,
    unsure_share: float = 0.02,
):
    """Status per wave ('worked since last visit') and the employment a reader can derive.

    The question is "worked since the last assessment you attended", so answers
    cover the whole window once the last wave is attended. An employed participant
    reports work from a random first wave onwards (each later wave with probability
    0.7). Derived employment is 1 if any attended wave says yes; 0 if the last wave
    was attended and every attended wave says no; otherwise unknown.
    """
    n = employed.size
    first = rng.integers(0, len(waves), n)
    status = {}
    for j, wave in enumerate(waves):
        yes = employed.astype(bool) & ((first == j) | ((first < j) & (rng.random(n) < 0.7)))
        value = np.where(yes, "yes", "no").astype(object)
        value[rng.random(n) < unsure_share] = "unknown"
        value[~attended[wave]] = None
        status[wave] = value
    said_yes = np.zeros(n, dtype=bool)
    all_no = attended[waves[-1]].copy()
    for wave in waves:
        said_yes |= status[wave] == "yes"
        all_no &= (status[wave] == "no") | ~attended[wave]
    derived = np.where(said_yes, 1.0, np.where(all_no, 0.0, np.nan))
    return status, derived


def monotone_attendance(
    assessed: np.ndarray, waves: tuple[int, ...], final: int, rng: np.random.Generator, return_share: float = 0.0
):
    """Which scheduled visits each participant attended.

    Those assessed at `final` attended it (and earlier waves with probability
    0.93); the others dropped out at a random wave up to `final`. A share of
    drop-outs came back for visits after `final` (which must not be used).
    """
    n = assessed.size
    before = [w for w in waves if w < final]
    drop_at = rng.integers(0, len(before) + 1, n)  # index of the first missed wave
    attended = {}
    for j, wave in enumerate(waves):
        if wave < final:
            attended[wave] = np.where(assessed, rng.random(n) < 0.93, j < drop_at)
        elif wave == final:
            attended[wave] = assessed.copy()
        else:
            attended[wave] = np.where(assessed, rng.random(n) < 0.85, rng.random(n) < return_share)
    return attended


# ---------------------------------------------------------------- EU6: SPSS, two files to join


EU6_NAMES = {
    "London": (["Oliver", "Amelia", "Harry", "Isla", "George"], ["Smith", "Jones", "Taylor", "Brown", "Wilson"]),
    "Ulm": (["Lukas", "Anna", "Jonas", "Lena", "Felix"], ["Müller", "Schmidt", "Schneider", "Fischer", "Weber"]),
    "Rimini": (["Giulia", "Marco", "Chiara", "Luca", "Sara"], ["Rossi", "Russo", "Ferrari", "Esposito", "Bianchi"]),
    "Zurich": (["Noah", "Mia", "Leon", "Lea", "Elias"], ["Meier", "Keller", "Huber", "Steiner", "Frei"]),
    "Groningen": (["Sem", "Tess", "Bram", "Fleur", "Thijs"], ["de Boer", "Mulder", "Bos", "Dijkstra", "Postma"]),
    "Sofia": (
        ["Georgi", "Maria", "Ivan", "Elena", "Dimitar"],
        ["Petrov", "Ivanova", "Dimitrov", "Georgieva", "Nikolov"],
    ),
}
EU6_ICD10 = {"schizophrenia_spectrum": ["F20", "F25"], "bipolar": ["F31"], "depression": ["F32"], "other": ["F60"]}
EU6_NOTES = ["moved, new phone number", "prefers afternoon appointments", "interview by phone", "", "", "", ""]


def export_eu6(trial: Trial, latent: pd.DataFrame, rng: np.random.Generator) -> TrialExport:
    n = len(latent)
    site_code = {s: i + 1 for i, s in enumerate(trial.sites)}
    local = latent.groupby("site").cumcount().to_numpy() + 1
    # IDs repeat across centres; the baseline file zero-pads them, the follow-up file pads with spaces.
    baseline_id = np.array([f"{i:03d}" for i in local], dtype=object)
    followup_id = np.array([f"{i}" + " " * int(rng.integers(0, 3)) for i in local], dtype=object)
    followup_id = np.array([(" " + v) if rng.random() < 0.3 else v for v in followup_id], dtype=object)
    truth = base_truth(latent, baseline_id, np.array([str(i) for i in local]))
    scores = add_outcome_truth(truth, trial, latent)
    arm_code = {"IPS": 1, "Vocational service": 2}
    names = np.array([fake_names(rng, *EU6_NAMES[s], 1)[0] for s in latent["site"]], dtype=object)
    age = np.round(latent["age"].to_numpy())
    icd = np.array([pick(rng, EU6_ICD10[d], 1)[0] for d in latent["diagnosis"]], dtype=object)
    randomized = latent["randomized_on"]
    score_missing = -99.0  # not assessed
    refused = 999.0
    baseline = pd.DataFrame(
        {
            "centre": latent["site"].map(site_code).astype(float).to_numpy(),
            "pid": baseline_id,
            "arm": latent["arm_label"].map(arm_code).astype(float).to_numpy(),
            "randdate": as_date(randomized),
            "sex": np.where(latent["sex"] == "female", 2.0, 1.0),
            "age": age,
            "icd10": icd,
            "name": names,
            "hospno": np.array([f"H{int(v):07d}" for v in rng.integers(0, 10**7, n)], dtype=object),
            "dob": as_date(birth_dates(randomized, latent["age"], rng)),
        }
    )
    fu_columns = {
        "quality_of_life": "mansa",
        "negative_symptoms": "panss_n",
        "positive_symptoms": "panss_p",
        "functioning": "gaf",
    }
    for outcome, stem in fu_columns.items():
        baseline[f"{stem}_0"] = with_missing_code(scores[(outcome, "bl")], score_missing)

    # Follow-up file: the assessed, plus some contacted who refused the interview
    # but reported their work (scores coded 999 = refused).
    assessed = latent["assessed"].to_numpy()
    refused_interview = ~assessed & (rng.random(n) < 0.35)
    in_file = assessed | refused_interview
    fu_date = visit_dates(randomized, 18, rng, sd_days=20, late_share=0.08)
    employed = latent["employed"].to_numpy()
    days = np.where(employed == 1, np.clip(np.exp(rng.normal(4.4, 1.0, n)), 1, 540).round(), 0.0)
    days_recorded = np.where(rng.random(n) < 0.03, score_missing, days)  # item missing among the interviewed
    followup = pd.DataFrame(
        {
            "centre": latent["site"].map(site_code).astype(float).to_numpy(),
            "pid": followup_id,
            "fudate": as_date(fu_date.where(assessed)),
            "days_worked": days_recorded,
        }
    )
    for outcome, stem in fu_columns.items():
        value = with_missing_code(scores[(outcome, "fu")], score_missing)
        followup[f"{stem}_18"] = np.where(refused_interview, refused, value)
    followup["notes"] = pick(rng, EU6_NOTES, n)
    followup = followup[in_file].sample(frac=1.0, random_state=int(rng.integers(0, 2**31))).reset_index(drop=True)

    truth["employed_recorded"] = np.where(in_file & (days_recorded != score_missing), (days > 0).astype(float), np.nan)
    truth["followup_months"] = np.where(assessed, months_between(randomized, fu_date), np.nan)
    truth["age"] = age

    labels = {"centre": {v: k for k, v in site_code.items()}, "arm": {v: k for k, v in arm_code.items()}}
    user_missing = {-99: "not assessed", 999: "refused"}
    score_labels = {c: user_missing for c in baseline.columns if c.endswith("_0")}
    files = [
        RawFile(
            "eu6_baseline.sav",
            "sav",
            {"": baseline},
            {
                "file_label": "EU6 baseline assessment (synthetic)",
                "value_labels": {**labels, "sex": {1: "male", 2: "female"}, **score_labels},
                "missing_ranges": {c: [-99, 999] for c in score_labels},
                "variable_format": {"randdate": "DATE11", "dob": "DATE11"},
                "column_labels": {
                    "centre": "Study centre",
                    "pid": "Participant number within centre",
                    "arm": "Randomized arm",
                    "randdate": "Date of randomization",
                    "icd10": "Main diagnosis, ICD-10",
                    "mansa_0": "MANSA mean score (1-7) at baseline",
                    "panss_n_0": "PANSS negative subscale at baseline",
                    "panss_p_0": "PANSS positive subscale at baseline",
                    "gaf_0": "GAF at baseline",
                },
            },
        ),
        RawFile(
            "eu6_followup18.sav",
            "sav",
            {"": followup},
            {
                "file_label": "EU6 18-month follow-up (synthetic)",
                "value_labels": {
                    "centre": labels["centre"],
                    "days_worked": {-99: "not assessed"},
                    **{c: user_missing for c in followup.columns if c.endswith("_18")},
                },
                "missing_ranges": {
                    **{c: [-99, 999] for c in followup.columns if c.endswith("_18")},
                    "days_worked": [-99],
                },
                "variable_format": {"fudate": "DATE11"},
                "column_labels": {"days_worked": "Days in competitive employment during the 18-month follow-up"},
            },
        ),
    ]
    return TrialExport("EU6", files, truth)


# ---------------------------------------------------------------- DK: semicolon CSV, latin-1, long visits, hours log

DK_FIRST = ["Søren", "Mette", "Jørgen", "Anne", "Lars", "Birgitte", "Mads", "Sofie", "Rasmus", "Louise", "Åse", "Ida"]
DK_LAST = [
    "Jensen",
    "Nielsen",
    "Hansen",
    "Pedersen",
    "Andersen",
    "Christensen",
    "Sørensen",
    "Jørgensen",
    "Møller",
    "Kjær",
]
DK_DIAGNOSIS = {
    "schizophrenia_spectrum": ["skizofreni", "skizotypisk sindslidelse"],
    "bipolar": ["bipolar affektiv sindslidelse"],
    "depression": ["depression", "periodisk depression"],
    "other": ["andet"],
}
DK_NOTES = ["ønsker kontakt om eftermiddagen", "flyttet, nyt telefonnummer", "tolk ved samtaler", "", "", ""]
DK_UNKNOWN = "ukendt"


def dk_hours_log(latent: pd.DataFrame, ids: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """One row per participant-week with registered work, weeks counted from randomization.

    Employed participants have a spell starting in weeks 1-70; some weeks inside
    a spell carry 0 hours (holidays, sick leave). Some who never worked in the
    window have a spell starting after week 78 or rows with 0 hours only.
    """
    rows = []
    for pid, employed in zip(ids, latent["employed"].to_numpy()):
        if employed:
            start = int(rng.integers(1, 71))
            weeks = np.arange(start, min(104, start + int(rng.geometric(0.04))) + 1)
            hours = np.round(rng.uniform(4, 37, weeks.size) * 2) / 2
            hours[1:][rng.random(weeks.size - 1) < 0.08] = 0.0
        else:
            draw = rng.random()
            if draw < 0.15:
                start = int(rng.integers(WINDOW_WEEKS + 1, 101))
                weeks = np.arange(start, min(104, start + int(rng.geometric(0.05))) + 1)
                hours = np.round(rng.uniform(4, 37, weeks.size) * 2) / 2
            elif draw < 0.20:
                weeks = np.sort(rng.choice(np.arange(1, WINDOW_WEEKS + 1), int(rng.integers(1, 4)), replace=False))
                hours = np.zeros(weeks.size)
            else:
                continue
        rows.extend((pid, w, h) for w, h in zip(weeks, hours))
    log = pd.DataFrame(rows, columns=["løbenr", "uge", "timer"])
    return log.sample(frac=1.0, random_state=int(rng.integers(0, 2**31))).sort_values(["løbenr", "uge"], kind="stable")


def export_dk(trial: Trial, latent: pd.DataFrame, rng: np.random.Generator) -> TrialExport:
    n = len(latent)
    number = np.arange(1, n + 1)
    ids = np.array([f"{i:04d}" for i in number], dtype=object)
    truth = base_truth(latent, ids, np.array([str(i) for i in number]))
    scores = add_outcome_truth(truth, trial, latent)
    randomized = latent["randomized_on"]
    birth = birth_dates(randomized, latent["age"], rng)
    cpr = [f"{d:%d%m%y}-{int(x):04d}" for d, x in zip(birth, rng.integers(0, 10**4, n))]
    age_text = decimal_comma(latent["age"].to_numpy(), 1)
    unknown_age = rng.random(n) < 0.01
    age_text = [DK_UNKNOWN if u else a for a, u in zip(age_text, unknown_age)]
    participants = pd.DataFrame(
        {
            "løbenr": ids,
            "by": latent["site"].to_numpy(),
            "gruppe": latent["arm_label"].to_numpy(),
            "randomiseringsdato": [f"{d:%d-%m-%Y}" for d in randomized],
            "køn": np.where(latent["sex"] == "female", "K", "M"),
            "alder": age_text,
            "diagnose": [pick(rng, DK_DIAGNOSIS[d], 1)[0] for d in latent["diagnosis"]],
            "cpr": cpr,
            "navn": fake_names(rng, DK_FIRST, DK_LAST, n),
            "bemærkning": pick(rng, DK_NOTES, n),
        }
    )
    truth["age"] = np.where(unknown_age, np.nan, latent["age"].to_numpy())

    columns = {
        "self_esteem": ("rses", 0),
        "quality_of_life": ("whoqol_psyk", 2),
        "negative_symptoms": ("sans_global", 0),
        "positive_symptoms": ("saps_global", 0),
        "functioning": ("gaf_f", 0),
    }
    assessed = latent["assessed"].to_numpy()
    fu_date = visit_dates(randomized, 18, rng, sd_days=18, late_share=0.05)
    bl_date = randomized - pd.to_timedelta(rng.integers(0, 15, n), unit="D")
    visits = []
    for label, when, dates, present in (
        ("baseline", "bl", bl_date, np.ones(n, bool)),
        ("18 mdr", "fu", fu_date, assessed),
    ):
        frame = pd.DataFrame({"løbenr": ids, "besøg": label, "dato": [f"{d:%d-%m-%Y}" for d in dates]})
        for outcome, (column, digits) in columns.items():
            text = decimal_comma(scores[(outcome, when)], digits)
            # Missing scores are blank or the word "ukendt", as entered by different staff.
            frame[column] = [(DK_UNKNOWN if rng.random() < 0.5 else "") if v == "" else v for v in text]
        visits.append(frame[present])
    visits = (
        pd.concat(visits)
        .sample(frac=1.0, random_state=int(rng.integers(0, 2**31)))
        .sort_values("løbenr", kind="stable")
    )

    log = dk_hours_log(latent, number, rng)
    log_text = pd.DataFrame(
        {
            "løbenr": log["løbenr"].astype(str),
            "uge": log["uge"].astype(str),
            "timer": decimal_comma(log["timer"].to_numpy(), 1),
        }
    )

    truth["employed_recorded"] = latent["employed"].astype(float).to_numpy()
    truth["followup_months"] = np.where(assessed, months_between(randomized, fu_date), np.nan)
    csv_options = {"delimiter": ";", "encoding": "latin-1", "newline": "\r\n"}
    files = [
        RawFile("dk_deltagere.csv", "csv", {"": participants}, csv_options),
        RawFile("dk_besoeg.csv", "csv", {"": visits}, csv_options),
        RawFile("dk_timer_uge.csv", "csv", {"": log_text}, csv_options),
    ]
    return TrialExport("DK", files, truth)


# ---------------------------------------------------------------- SE: Excel, one sheet per wave, RSES items

SE_FIRST = ["Åsa", "Björn", "Märta", "Göran", "Linnéa", "Erik", "Karin", "Anders", "Maja", "Pär"]
SE_LAST = ["Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Öberg", "Åström", "Lindqvist", "Bäckström"]
SE_DIAGNOSIS = {
    "schizophrenia_spectrum": ["schizofreni", "schizoaffektivt syndrom"],
    "bipolar": ["bipolär sjukdom"],
    "depression": ["depression"],
    "other": ["annan"],
}
SE_UNKNOWN = "vet ej"
SE_WAVES = (6, 12, 18)
SE_STATUS = {"yes": "ja", "no": "nej", "unknown": SE_UNKNOWN}


def se_cells(values: np.ndarray, rng: np.random.Generator, digits: int = 0) -> list:
    """Numbers as numbers; missing as an empty cell or 'vet ej'."""
    out = []
    for v in values:
        if np.isnan(v):
            out.append(SE_UNKNOWN if rng.random() < 0.4 else None)
        else:
            out.append(int(v) if digits == 0 else round(float(v), digits))
    return out


def export_se(trial: Trial, latent: pd.DataFrame, rng: np.random.Generator) -> TrialExport:
    n = len(latent)
    number = 100 + np.arange(1, n + 1)
    truth = base_truth(latent, number.astype(object), np.array([str(i) for i in number]))
    scores = add_outcome_truth(truth, trial, latent)
    randomized = latent["randomized_on"]
    birth = birth_dates(randomized, latent["age"], rng)
    rses = INSTRUMENTS["RSES_SE_items"]
    items = {}
    for when in ("bl", "fu"):
        complete = split_into_items(scores[("self_esteem", when)], rses, rng)
        items[when] = blank_some_items(complete, rng)
        truth[f"self_esteem_{when}_items_missing"] = np.isnan(items[when]).sum(axis=1) * ~np.isnan(
            scores[("self_esteem", when)]
        )
    columns = {
        "empowerment": ("MDES", 0),
        "quality_of_life": ("MANSA", 2),
        "depression": ("MADRS", 0),
        "anxiety": ("HADS_A", 0),
        "functioning": ("GAF", 0),
    }

    def outcome_block(when: str) -> dict:
        block = {f"RSES_{j + 1}": se_cells(items[when][:, j], rng) for j in range(rses.n_items)}
        block.update(
            {column: se_cells(scores[(outcome, when)], rng, digits) for outcome, (column, digits) in columns.items()}
        )
        return block

    age = np.round(latent["age"].to_numpy())
    sheets = {
        "Baslinje": pd.DataFrame(
            {
                "Id": number,
                "Personnummer": [f"{d:%Y%m%d}-{int(x):04d}" for d, x in zip(birth, rng.integers(0, 10**4, n))],
                "Namn": fake_names(rng, SE_FIRST, SE_LAST, n),
                "Grupp": latent["arm_label"].to_numpy(),
                "Randomiseringsdatum": [d.to_pydatetime() for d in randomized],
                "Kön": np.where(latent["sex"] == "female", "kvinna", "man"),
                "Ålder": age.astype(int),
                "Diagnos": [pick(rng, SE_DIAGNOSIS[d], 1)[0] for d in latent["diagnosis"]],
                **outcome_block("bl"),
            }
        )
    }
    assessed = latent["assessed"].to_numpy()
    attended = monotone_attendance(assessed, SE_WAVES, 18, rng)
    status, derived = wave_employment(latent["employed"].to_numpy(), attended, SE_WAVES, rng)
    fu_date = visit_dates(randomized, 18, rng, sd_days=15)
    for wave in SE_WAVES:
        dates = fu_date if wave == 18 else visit_dates(randomized, wave, rng, sd_days=15)
        sheet = pd.DataFrame(
            {
                "Id": number,
                "Datum": [d.to_pydatetime() for d in dates],
                "Arbetat sedan förra mätningen": [SE_STATUS.get(s) for s in status[wave]],
            }
        )
        if wave == 18:
            sheet = pd.concat([sheet, pd.DataFrame(outcome_block("fu"))], axis=1)
        sheets[f"{wave} mån"] = sheet[attended[wave]].reset_index(drop=True)

    truth["age"] = age
    truth["employed_recorded"] = derived
    truth["followup_months"] = np.where(assessed, months_between(randomized, fu_date), np.nan)
    return TrialExport("SE", [RawFile("se_ips_malmo.xlsx", "xlsx", sheets)], truth)


# ---------------------------------------------------------------- NL: Stata, long visits with dates, job episodes

NL_FIRST = ["Jan", "Sanne", "Pieter", "Anouk", "Joris", "Femke", "Daan", "Eva"]
NL_LAST = ["de Vries", "Jansen", "van Dijk", "Bakker", "Visser", "Smit", "van den Berg", "de Jong"]
NL_DIAGNOSIS = {"schizophrenia_spectrum": [1, 2], "bipolar": [3], "depression": [4], "other": [5]}
NL_DIAGNOSIS_LABELS = {
    1: "schizofrenie",
    2: "schizoaffectieve stoornis",
    3: "bipolaire stoornis",
    4: "depressie",
    5: "overig",
}
NL_UNKNOWN = -99.0
NL_WAVES = (6, 12, 18, 24, 30)
COMPETITIVE, SHELTERED = 1, 2


def nl_job_episodes(latent: pd.DataFrame, ids: np.ndarray, rng: np.random.Generator) -> tuple[pd.DataFrame, list[int]]:
    """Dated job episodes. Competitive episodes overlap [randomization, randomization + 18 months]
    exactly for the employed. Others may have sheltered work in the window or
    competitive jobs outside it (ended 1-299 days before randomization, or started
    after the window closed)."""
    rows, edge_cases = [], []
    randomized = latent["randomized_on"].to_numpy()
    window_end = (latent["randomized_on"] + pd.DateOffset(months=18)).to_numpy()
    for i, (pid, employed) in enumerate(zip(ids, latent["employed"].to_numpy())):
        start0, end0 = pd.Timestamp(randomized[i]), pd.Timestamp(window_end[i])
        span = (end0 - start0).days
        if employed:
            # Two employed participants start a job on the last day of the window (inclusive).
            first = end0 if len(edge_cases) < 2 else start0 + pd.Timedelta(days=int(rng.integers(0, span)))
            if first == end0:
                edge_cases.append(int(pid))
            stop = first + pd.Timedelta(days=int(rng.integers(20, 400)))
            rows.append((pid, first, None if rng.random() < 0.25 else stop, COMPETITIVE))
            if rng.random() < 0.3:
                later = stop + pd.Timedelta(days=int(rng.integers(30, 300)))
                rows.append((pid, later, later + pd.Timedelta(days=int(rng.integers(30, 300))), COMPETITIVE))
        else:
            draw = rng.random()
            if draw < 0.3:
                stop = start0 - pd.Timedelta(days=int(rng.integers(1, 300)))
                rows.append((pid, stop - pd.Timedelta(days=int(rng.integers(60, 900))), stop, COMPETITIVE))
            elif draw < 0.45:
                first = end0 + pd.Timedelta(days=int(rng.integers(1, 200)))
                rows.append((pid, first, None, COMPETITIVE))
            elif draw < 0.55:
                first = start0 + pd.Timedelta(days=int(rng.integers(0, span)))
                rows.append((pid, first, first + pd.Timedelta(days=int(rng.integers(30, 300))), SHELTERED))
    episodes = pd.DataFrame(rows, columns=["respnr", "start", "eind", "soort"])
    episodes["start"] = as_date(episodes["start"])
    episodes["eind"] = [None if v is None or pd.isna(v) else pd.Timestamp(v).date() for v in episodes["eind"]]
    episodes["respnr"] = episodes["respnr"].astype(float)
    episodes["soort"] = episodes["soort"].astype(float)
    return episodes.sort_values(["respnr", "start"], kind="stable").reset_index(drop=True), edge_cases


def export_nl(trial: Trial, latent: pd.DataFrame, rng: np.random.Generator) -> TrialExport:
    n = len(latent)
    number = 2000 + np.arange(1, n + 1) * 7  # not consecutive, as issued by the trial office
    truth = base_truth(latent, number.astype(object), np.array([str(i) for i in number]))
    scores = add_outcome_truth(truth, trial, latent)
    randomized = latent["randomized_on"]
    site_code = {s: i + 1 for i, s in enumerate(trial.sites)}
    arm_code = {"IPS": 1, "Traditionele arbeidsrehabilitatie": 2}
    participants = pd.DataFrame(
        {
            "respnr": number.astype(float),
            "locatie": latent["site"].map(site_code).astype(float).to_numpy(),
            "groep": latent["arm_label"].map(arm_code).astype(float).to_numpy(),
            "randdatum": as_date(randomized),
            "geslacht": np.where(latent["sex"] == "female", 1.0, 0.0),
            "leeftijd": np.round(latent["age"].to_numpy()),
            "diagnose": np.array([pick(rng, NL_DIAGNOSIS[d], 1)[0] for d in latent["diagnosis"]], dtype=float),
            "naam": fake_names(rng, NL_FIRST, NL_LAST, n),
            "bsn": np.array([f"{int(v):09d}" for v in rng.integers(10**8, 10**9, n)], dtype=object),
            "geboortedatum": as_date(birth_dates(randomized, latent["age"], rng)),
        }
    )
    columns = {
        "self_esteem": "rses",
        "empowerment": "mdes",
        "depression": "bdi",
        "negative_symptoms": "panss_n",
        "positive_symptoms": "panss_p",
        "functioning": "whodas",
    }
    assessed = latent["assessed"].to_numpy()
    attended = monotone_attendance(assessed, NL_WAVES, 18, rng, return_share=0.25)
    # The 18-month visit is often late (up to 2.5 months); some drop-outs were seen at
    # 22-23 months instead, outside the window, and that visit must not be used.
    fu_date = visit_dates(randomized, 18, rng, sd_days=20, late_share=0.25, late_days=(20, 75))
    visits = [
        pd.DataFrame(
            {"respnr": number, "meting": 0, "datum": randomized - pd.to_timedelta(rng.integers(0, 10, n), unit="D")}
        )
    ]
    for outcome, column in columns.items():
        visits[0][column] = with_missing_code(scores[(outcome, "bl")], NL_UNKNOWN)
    lost_but_seen_late = ~assessed & (rng.random(n) < 0.2)
    for j, wave in enumerate(NL_WAVES, start=1):
        if wave == 18:
            dates = fu_date.where(assessed, randomized + pd.to_timedelta(rng.integers(665, 700, n), unit="D"))
            present = assessed | lost_but_seen_late
        else:
            dates = visit_dates(randomized, wave, rng, sd_days=20)
            present = attended[wave]
        frame = pd.DataFrame({"respnr": number, "meting": j, "datum": dates})
        for outcome, column in columns.items():
            instrument = INSTRUMENTS[trial.instruments[outcome]]
            if wave == 18:
                value = np.where(
                    assessed,
                    scores[(outcome, "fu")],
                    instrument.score(latent[f"{outcome}_fu_latent"].to_numpy() + rng.normal(0, 0.4, n)),
                )
            else:
                # Other visits: drift from baseline towards the 18-month level, plus noise.
                share = min(wave / 18, 1.0)
                mixed = (
                    (1 - share) * latent[f"{outcome}_bl_latent"]
                    + share * latent[f"{outcome}_fu_latent"]
                    + rng.normal(0, 0.4, n)
                )
                value = instrument.score(mixed.to_numpy())
                value[rng.random(n) < 0.03] = np.nan
            frame[column] = with_missing_code(value, NL_UNKNOWN)
        visits.append(frame[present])
    visits = pd.concat(visits).sort_values(["respnr", "meting"], kind="stable").reset_index(drop=True)
    visits["respnr"] = visits["respnr"].astype(float)
    visits["meting"] = visits["meting"].astype(float)
    visits["datum"] = as_date(visits["datum"])

    episodes, edge_cases = nl_job_episodes(latent, number, rng)
    truth["employed_recorded"] = latent["employed"].astype(float).to_numpy()
    truth["followup_months"] = np.where(assessed, months_between(randomized, fu_date), np.nan)
    truth["age"] = participants["leeftijd"].to_numpy()
    truth.attrs["nl_episode_on_window_end"] = edge_cases

    unknown = {NL_UNKNOWN: "onbekend"}
    files = [
        RawFile(
            "nl_deelnemers.dta",
            "dta",
            {"": participants},
            {
                "file_label": "NL deelnemers (synthetisch)",
                "value_labels": {
                    "locatie": {v: k for k, v in site_code.items()},
                    "groep": {v: k for k, v in arm_code.items()},
                    "geslacht": {0: "man", 1: "vrouw"},
                    "diagnose": NL_DIAGNOSIS_LABELS,
                },
                "variable_format": {"randdatum": "%td", "geboortedatum": "%td"},
                "column_labels": {
                    "respnr": "respondentnummer",
                    "randdatum": "datum randomisatie",
                    "groep": "onderzoeksgroep",
                },
            },
        ),
        RawFile(
            "nl_metingen.dta",
            "dta",
            {"": visits},
            {
                "file_label": "NL metingen, een rij per deelnemer en meting (synthetisch)",
                "value_labels": {
                    "meting": {
                        0: "T0 baseline",
                        1: "T1 6 mnd",
                        2: "T2 12 mnd",
                        3: "T3 18 mnd",
                        4: "T4 24 mnd",
                        5: "T5 30 mnd",
                    },
                    **{c: unknown for c in columns.values()},
                },
                "variable_format": {"datum": "%td"},
                "column_labels": {
                    "whodas": "WHODAS 2.0 12-item totaal (12-60, hoger = meer beperking)",
                    "bdi": "BDI-II totaal",
                },
            },
        ),
        RawFile(
            "nl_banen.dta",
            "dta",
            {"": episodes},
            {
                "file_label": "NL baanepisodes (synthetisch)",
                "value_labels": {"soort": {COMPETITIVE: "regulier betaald werk", SHELTERED: "beschut werk"}},
                "variable_format": {"start": "%td", "eind": "%td"},
                "column_labels": {"eind": "einddatum (leeg = lopend)"},
            },
        ),
    ]
    return TrialExport("NL", files, truth)


# ---------------------------------------------------------------- US: wide CSV, visits every 6 months, BPRS items

US_FIRST = ["James", "Mary", "Robert", "Linda", "Michael", "Patricia", "David", "Jennifer"]
US_LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Garcia"]
US_DIAGNOSIS = {
    "schizophrenia_spectrum": ["schizophrenia", "schizoaffective disorder"],
    "bipolar": ["bipolar disorder"],
    "depression": ["major depression"],
    "other": ["other"],
}
US_WAVES = (0, 6, 12, 18, 24)
US_MISSING = "999"
US_BPRS_ITEMS = {
    "negative_symptoms": ("bprs_blunt", "bprs_withdr", "bprs_motor"),
    "positive_symptoms": ("bprs_grand", "bprs_susp", "bprs_halluc", "bprs_unusual"),
}
US_NOTES = ["lives with mother", "no phone; reach via case manager", "", "", "", ""]


def us_text(values: np.ndarray, rng: np.random.Generator, digits: int = 0) -> list[str]:
    """Numbers as typed; missing as blank or 999."""
    out = []
    for v in values:
        if np.isnan(v):
            out.append(US_MISSING if rng.random() < 0.5 else "")
        else:
            out.append(str(int(v)) if digits == 0 else f"{v:.{digits}f}")
    return out


def export_us(trial: Trial, latent: pd.DataFrame, rng: np.random.Generator) -> TrialExport:
    n = len(latent)
    number = 1000 + np.arange(1, n + 1)
    ids = np.array([f"H{i}" for i in number], dtype=object)
    truth = base_truth(latent, ids, ids.copy())
    scores = add_outcome_truth(truth, trial, latent)
    randomized = latent["randomized_on"]
    assessed = latent["assessed"].to_numpy()
    attended = monotone_attendance(assessed, US_WAVES[1:], 18, rng, return_share=0.3)
    attended[0] = np.ones(n, bool)
    status, derived = wave_employment(latent["employed"].to_numpy(), attended, (6, 12, 18), rng)
    worked_24 = np.where(latent["employed"].to_numpy() == 1, rng.random(n) < 0.6, rng.random(n) < 0.12)
    status[24] = np.where(attended[24], np.where(worked_24, "yes", "no"), None)

    age = np.round(latent["age"].to_numpy())
    age[rng.random(n) < 0.015] = np.nan
    table = {
        "study_id": ids,
        "name": fake_names(rng, US_FIRST, US_LAST, n),
        "ssn": [
            f"9{int(a):02d}-{int(b):02d}-{int(c):04d}"
            for a, b, c in zip(rng.integers(0, 100, n), rng.integers(1, 100, n), rng.integers(1, 10**4, n))
        ],
        "dob": [f"{d:%m/%d/%Y}" for d in birth_dates(randomized, latent["age"], rng)],
        "randomized": [f"{d:%m/%d/%Y}" for d in randomized],
        "condition": latent["arm_label"].to_numpy(),
        "sex": np.where(latent["sex"] == "female", "F", "M"),
        "age": us_text(age, rng),
        "dx": [pick(rng, US_DIAGNOSIS[d], 1)[0] for d in latent["diagnosis"]],
    }
    simple = {
        "self_esteem": "rses",
        "quality_of_life": "qoli",
        "depression": "hamd",
        "anxiety": "bai",
        "functioning": "gaf",
    }
    fu_date = None
    for wave in US_WAVES:
        if wave == 0:
            dates = randomized - pd.to_timedelta(rng.integers(0, 14, n), unit="D")
        else:
            dates = visit_dates(
                randomized, wave, rng, sd_days=18, late_share=0.05 if wave == 18 else 0.0, late_days=(20, 60)
            )
        if wave == 18:
            fu_date = dates
        seen = attended[wave]
        table[f"date_m{wave}"] = [f"{d:%m/%d/%Y}" if s else "" for d, s in zip(dates, seen)]
        for outcome in list(simple) + list(US_BPRS_ITEMS):
            instrument = INSTRUMENTS[trial.instruments[outcome]]
            if wave in (0, 18):
                value = scores[(outcome, "bl" if wave == 0 else "fu")]
            else:
                share = min(wave / 18, 1.0)
                mixed = (
                    (1 - share) * latent[f"{outcome}_bl_latent"]
                    + share * latent[f"{outcome}_fu_latent"]
                    + rng.normal(0, 0.4, n)
                )
                value = instrument.score(mixed.to_numpy())
            value = np.where(seen, value, np.nan)
            if outcome in US_BPRS_ITEMS:
                items = blank_some_items(
                    split_into_items(value, instrument, rng), rng, one_share=0.04, many_share=0.02, many=2
                )
                if wave in (0, 18):
                    when = "bl" if wave == 0 else "fu"
                    truth[f"{outcome}_{when}_items_missing"] = np.isnan(items).sum(axis=1) * ~np.isnan(value)
                for j, column in enumerate(US_BPRS_ITEMS[outcome]):
                    table[f"{column}_m{wave}"] = us_text(items[:, j], rng)
            else:
                table[f"{simple[outcome]}_m{wave}"] = us_text(value, rng, 1 if outcome == "quality_of_life" else 0)
        if wave > 0:
            table[f"worked_m{wave}"] = [{"yes": "Y", "no": "N", "unknown": "?"}.get(s, "") for s in status[wave]]
    table["staff_notes"] = pick(rng, US_NOTES, n)
    wide = pd.DataFrame(table)

    truth["age"] = age
    truth["employed_recorded"] = derived
    truth["followup_months"] = np.where(assessed, months_between(randomized, fu_date), np.nan)
    return TrialExport(
        "US", [RawFile("us_hartford_wide.csv", "csv", {"": wide}, {"delimiter": ",", "encoding": "utf-8"})], truth
    )


EXPORTERS = {"EU6": export_eu6, "DK": export_dk, "SE": export_se, "NL": export_nl, "US": export_us}


def export_trial(study: str, latent: pd.DataFrame, rng: np.random.Generator) -> TrialExport:
    return EXPORTERS[study](TRIALS[study], latent, rng)
