"""The analysis of multiply imputed data: each completed data set goes through the same per-study
statistics and the same one-stage and two-stage fits as the complete-case analysis, and the m
results are pooled by Rubin's rules.

A completed data set's statistics have the layout of models.statistics (primary design of each
configured model), so a site can release them in its bundle and the coordinating centre fits
and pools them exactly as it would the pooled participant data's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..meta import METHODS as META_METHODS
from ..meta import meta_analysis
from ..models.onestage import mixed_model
from ..models.statistics import ModelSpec, complete_cases, design_statistics, design_terms
from ..models.twostage import per_study_table_from_statistics
from .chained import Delta, delta_adjusted, imputation_covariates, impute, thin_meta_analyses, wholesale_imputed
from .pooling import rubin

KEY = ["outcome", "analysis", "contrast", "term", "method", "hksj"]
ESTIMATE_COLUMNS = [*KEY, "imputation", "estimate", "se", "df", "n_participants", "n_studies", "studies",
                    "status", "warnings"]  # fmt: skip
POOLED_COLUMNS = [
    *KEY, "estimate", "se", "ci_low", "ci_high", "df", "p_value", "fmi", "riv", "lambda", "within_variance",
    "between_variance", "m", "df_complete", "n_participants", "n_studies", "studies", "status", "warnings",
]  # fmt: skip
ONE_STAGE, TWO_STAGE = "one-stage", "two-stage"


def settings_of(mi: dict) -> dict:
    """The imputation settings with their defaults."""
    return {"method": "stratified", "iterations": 10, "seed": 20261205, **mi}


def completed_statistics(
    completed: pd.DataFrame, outcome: str, analysis: dict, diagnosis_levels=None
) -> dict[str, dict]:
    """study -> statistics of one completed data set (models.statistics layout, primary designs;
    `diagnosis_levels`: the schema's, as for the complete-case statistics, so that studies' columns
    line up; None: the levels in `completed`)."""
    if diagnosis_levels is None:
        diagnosis_levels = sorted(set(completed["diagnosis"].dropna())) if "diagnosis" in completed else []
    out = {}
    for study, part in completed.groupby("study", sort=True):
        designs = {}
        for name, spec in analysis["models"].items():
            terms = design_terms(ModelSpec.from_config(name, spec), "primary")
            designs[f"{name}/primary"] = design_statistics(
                complete_cases(part, outcome, terms), outcome, terms, diagnosis_levels
            )
        n_followup = int(part[f"{outcome}_fu_z"].notna().sum())
        out[str(study)] = {
            "study": str(study),
            "n": len(part),
            "outcomes": {outcome: {"n_followup": n_followup, "designs": designs}},
        }
    return out


def completed_data_set(data: pd.DataFrame, outcome: str, analysis: dict, mi: dict, imputation: int) -> pd.DataFrame:
    """Completed data set number `imputation` of `outcome`, imputed with the run's settings and with
    the covariates the analysis models adjust for."""
    mi = settings_of(mi)
    covariates = imputation_covariates(analysis)
    return impute(data, outcome, imputation, mi["seed"], mi["method"], mi["iterations"], covariates)


def imputed_statistics(
    data: pd.DataFrame, outcome: str, analysis: dict, mi: dict, imputations, diagnosis_levels=None
) -> list[dict[str, dict]]:
    """The completed data sets' statistics for these imputation numbers (one dict per imputation)."""
    return [
        completed_statistics(completed_data_set(data, outcome, analysis, mi, j), outcome, analysis, diagnosis_levels)
        for j in imputations
    ]


def one_stage_rows(statistics: dict, outcome: str, analysis: dict) -> list[dict]:
    rows = []
    for name, spec in analysis["models"].items():
        for row in mixed_model(
            statistics,
            outcome,
            ModelSpec.from_config(name, spec),
            min_studies=analysis.get("min_studies", 2),
            singular_tolerance=analysis.get("singular_tolerance", 1e-4),
            ddf=analysis.get("ddf", "satterthwaite"),
        ):
            rows.append({**row, "analysis": ONE_STAGE, "method": row.get("inference", "REML"), "hksj": False})
    return rows


def two_stage_rows(statistics: dict, outcome: str, analysis: dict) -> list[dict]:
    """The two-stage meta-analyses of two_stage_tables (every method, with and without Knapp-Hartung),
    without its leave-one-out analyses, which MI does not pool."""
    estimates = per_study_table_from_statistics(statistics, outcome, analysis)
    usable = estimates[estimates["status"] == "estimated"]
    rows = []
    for (contrast, term), group in usable.groupby(["contrast", "term"], sort=False):
        y, v = group["estimate"].to_numpy(float), group["se"].to_numpy(float) ** 2
        key = {"contrast": contrast, "term": term, "studies": ",".join(group["study"]),
               "n_participants": int(group["n"].sum()), "n_studies": len(group), "analysis": TWO_STAGE}  # fmt: skip
        for method in META_METHODS:
            for hksj in (False,) if method == "FE" else (False, True):
                result = meta_analysis(y, v, method, hksj, prediction=analysis.get("prediction_interval", "higgins"))
                rows.append({**key, **result.row(), "status": "estimated"})
    return rows


def fit_imputation(statistics: dict, outcome: str, analysis: dict, imputation: int) -> pd.DataFrame:
    """One completed data set's one-stage and two-stage estimates (ESTIMATE_COLUMNS)."""
    rows = one_stage_rows(statistics, outcome, analysis) + two_stage_rows(statistics, outcome, analysis)
    table = pd.DataFrame(rows)
    table["imputation"] = imputation
    table["outcome"] = outcome
    return table.reindex(columns=ESTIMATE_COLUMNS)


LABELS = {"employed": "employment", "_bl_z": "baseline", "_fu_z": "follow-up", "age": "age", "sex": "sex"}


def annotated_studies(studies, wholesale: dict[str, list[str]]):
    """The `studies` column's list with each study whose variables were imputed wholesale marked
    "NL (imputed: baseline and follow-up)"."""
    if not isinstance(studies, str) or not wholesale:
        return studies
    marked = []
    for study in studies.split(","):
        if study in wholesale:
            names = [label for v in wholesale[study] for end, label in LABELS.items() if v.endswith(end)]
            study = f"{study} (imputed: {' and '.join(names)})"
        marked.append(study)
    return ",".join(marked)


def fit_imputations(statistics: list[dict], outcome: str, analysis: dict, imputations) -> pd.DataFrame:
    return pd.concat(
        [fit_imputation(s, outcome, analysis, j) for s, j in zip(statistics, imputations)], ignore_index=True
    )


def complete_data_df(group: pd.DataFrame) -> float:
    """The complete-data df of Barnard-Rubin: the model's own df (Satterthwaite or Kenward-Roger
    for one-stage, k - 1 for Knapp-Hartung, inf for z), averaged over the completed data sets
    (it varies a little between them for the one-stage model)."""
    return float(group["df"].astype(float).mean())


def pool_group(group: pd.DataFrame) -> dict:
    first = group.iloc[0]
    base = {k: first[k] for k in KEY}
    base.update(m=len(group), n_studies=first["n_studies"], studies=first["studies"])
    base["n_participants"] = first["n_participants"]
    failed = group[group["status"] != "estimated"]
    if len(failed):
        reasons = sorted(set(failed["warnings"].fillna("").astype(str)))
        where = f"not estimated in {len(failed)} of {len(group)} completed data sets: "
        return {**base, "status": "not estimated", "warnings": where + "; ".join(reasons)}
    if group["studies"].nunique(dropna=False) > 1 or group["n_participants"].nunique(dropna=False) > 1:
        # an imputed value changed which studies (or participants) a fit could use
        sets = group["studies"].fillna("").astype(str).value_counts().sort_index()
        found = "; ".join(f"{studies or 'none'} in {count}" for studies, count in sets.items())
        reason = f"the studies or participants differ between the completed data sets ({found}): no one estimand"
        return {**base, "status": "not estimated", "warnings": reason}
    try:
        pooled = rubin(group["estimate"], group["se"].astype(float) ** 2, complete_data_df(group))
    except ValueError as refusal:  # the row names outcome, contrast and term
        return {**base, "status": "not estimated", "warnings": str(refusal)}
    notes = [w for w in group["warnings"].fillna("").astype(str) if w]
    warning = f"{len(notes)} of {len(group)} fits warned: " + "; ".join(sorted(set(notes))) if notes else ""
    return {**base, **pooled.row(), "status": "estimated", "warnings": warning}


def pool_estimates(estimates: pd.DataFrame) -> pd.DataFrame:
    """Rubin's rules for every (outcome, analysis, contrast, term, method) over the imputations."""
    estimates = estimates.sort_values(["imputation"], kind="stable")
    rows = [pool_group(group) for _, group in estimates.groupby(KEY, sort=False, dropna=False)]
    return pd.DataFrame(rows).reindex(columns=POOLED_COLUMNS)


# ------------------------------------------------------------------ workflow pieces


def chunk_estimates(
    held: pd.DataFrame | None,
    bundled: dict[str, list[dict]],
    outcome: str,
    analysis: dict,
    mi: dict,
    imputations,
    diagnosis_levels=None,
) -> pd.DataFrame:
    """Per-imputation estimates of one outcome for these imputation numbers: the held participant
    data are imputed here, a bundled study contributes its site's completed data sets' statistics
    (study -> one statistics entry per imputation number, as site_imputations writes them)."""
    imputations = list(imputations)
    # two_stage imputes what a held study never measured; the studies column says so
    wholesale = (
        wholesale_imputed(held, outcome, imputation_covariates(analysis))
        if held is not None and settings_of(mi)["method"] == "two_stage"
        else {}
    )
    held_statistics = (
        imputed_statistics(held, outcome, analysis, mi, imputations, diagnosis_levels)
        if held is not None and len(held)
        else [{} for _ in imputations]
    )
    tables = []
    for j, statistics in zip(imputations, held_statistics):
        combined = {**statistics, **{study: entries[j] for study, entries in bundled.items()}}
        tables.append(fit_imputation(dict(sorted(combined.items())), outcome, analysis, j))
    table = pd.concat(tables, ignore_index=True)
    table["studies"] = table["studies"].map(lambda studies: annotated_studies(studies, wholesale))
    thin = thin_meta_analyses(held, outcome, imputation_covariates(analysis)) if wholesale else ""
    if thin:
        uses = table["studies"].astype(str).str.contains(" (imputed: ", regex=False)
        earlier = table.loc[uses, "warnings"].fillna("").astype(str)
        table.loc[uses, "warnings"] = earlier.where(earlier == "", earlier + "; ") + thin
    return table


def site_imputations(part: pd.DataFrame, analysis: dict, mi: dict, diagnosis_levels=None) -> dict:
    """What a site releases for federated MI: per outcome, its study's statistics of each completed
    data set (imputed from its own rows alone, so method must be stratified), with the settings."""
    mi = settings_of(mi)
    if mi["method"] != "stratified":
        raise ValueError("federated multiple imputation needs multiple_imputation.method: stratified")
    study = str(part["study"].iloc[0])
    outcomes = {
        outcome: [
            entry[study]
            for entry in imputed_statistics(part, outcome, analysis, mi, range(mi["imputations"]), diagnosis_levels)
        ]
        for outcome in analysis["outcomes"]
    }
    return {"settings": imputation_settings(mi), "outcomes": outcomes}


def imputation_settings(mi: dict) -> dict:
    """The settings two runs must share for their completed data sets to be the same."""
    mi = settings_of(mi)
    return {key: mi[key] for key in ("method", "iterations", "seed", "imputations")}


def bundle_refusal(mi: dict, study: str, released: dict | None) -> str | None:
    """Why the coordinator cannot use a site bundle's completed data sets (None: it can). two_stage
    imputes all studies in one chain over their rows, which a site cannot do alone."""
    if settings_of(mi)["method"] == "two_stage":
        return (
            f"study {study} is held as a site bundle: multiple_imputation.method two_stage imputes all studies in "
            "one chain over their rows, which is not possible with bundled studies; use method: stratified "
            "(each site then writes its bundle with multiple_imputation.in_bundles: true)"
        )
    if released is None or released["settings"] != imputation_settings(mi):
        return (
            f"study {study}: its bundle carries no completed data sets made with this run's multiple_imputation "
            f"settings ({imputation_settings(mi)}); the site must write its bundle with "
            "multiple_imputation.in_bundles: true and the same settings"
        )
    return None


# ------------------------------------------------------------------ tipping point (delta adjustment)

TIPPING_GROUPS = ("IPS", "SAU", "employed", "not_employed")
TIPPING_COLUMNS = ["outcome", "contrast", "term", "group", "delta", "estimate", "se", "ci_low", "ci_high", "df",
                   "p_value", "fmi", "m", "includes_zero", "status", "warnings"]  # fmt: skip


def group_delta(group: str, delta: float) -> Delta:
    """The shift of one group's imputed follow-ups (the other groups' stay as imputed)."""
    if group in ("IPS", "SAU"):
        return Delta(arm={group: delta})
    if group in ("employed", "not_employed"):
        return Delta(employed={int(group == "employed"): delta})
    raise ValueError(f"unknown tipping-point group {group!r}; groups are {TIPPING_GROUPS}")


def tipping_estimates(
    data: pd.DataFrame,
    outcome: str,
    analysis: dict,
    mi: dict,
    groups,
    deltas,
    terms,
    imputations,
    diagnosis_levels=None,
) -> pd.DataFrame:
    """One-stage estimates of the reported `terms` on each completed data set with each group's imputed
    follow-ups shifted by each delta (rbmi's delta adjustment; delta 0 is the MI analysis itself)."""
    rows = []
    for j in imputations:
        completed = completed_data_set(data, outcome, analysis, mi, j)
        unshifted = None
        for group in groups:
            for delta in deltas:
                if delta == 0 and unshifted is not None:
                    found = unshifted
                else:
                    adjusted = delta_adjusted(completed, data, outcome, group_delta(group, delta))
                    statistics = completed_statistics(adjusted, outcome, analysis, diagnosis_levels)
                    found = one_stage_rows(statistics, outcome, analysis)
                    found = [row for row in found if row["term"] in terms]
                    unshifted = found if delta == 0 else unshifted
                rows += [{**row, "group": group, "delta": float(delta), "imputation": j} for row in found]
    return pd.DataFrame(rows)


def pool_tipping(estimates: pd.DataFrame) -> pd.DataFrame:
    """Rubin's rules per outcome, contrast, term, group and delta."""
    rows = []
    for key, group in estimates.groupby(["outcome", "contrast", "term", "group", "delta"], sort=False):
        pooled = pool_group(group.assign(analysis=ONE_STAGE))
        row = dict(zip(["outcome", "contrast", "term", "group", "delta"], key))
        row.update({k: pooled.get(k) for k in TIPPING_COLUMNS if k in pooled and k not in row})
        if pooled["status"] == "estimated":
            row["includes_zero"] = bool(pooled["ci_low"] <= 0 <= pooled["ci_high"])
        rows.append(row)
    return (
        pd.DataFrame(rows)
        .reindex(columns=TIPPING_COLUMNS)
        .sort_values(["outcome", "contrast", "term", "group", "delta"], kind="stable", ignore_index=True)
    )


def crossing(part: pd.DataFrame, direction: int) -> tuple[float, str]:
    """The delta, going from 0 in `direction`, where the CI first includes 0: linearly interpolated
    between the last grid point that excludes 0 and the first that includes it."""
    line = part[part["delta"] * direction >= 0].sort_values("delta", key=lambda d: d.abs())
    if line.empty or line.iloc[0]["delta"] != 0:
        return np.nan, "no delta 0 in the grid"
    start = line.iloc[0]
    if start["includes_zero"]:
        return 0.0, "CI includes 0 without adjustment"
    bound = "ci_low" if start["estimate"] > 0 else "ci_high"
    previous = start
    for _, point in line.iloc[1:].iterrows():
        if point["includes_zero"]:
            a, b = previous[bound], point[bound]
            where = previous["delta"] + (point["delta"] - previous["delta"]) * a / (a - b) if a != b else point["delta"]
            return float(where), f"CI first includes 0 at delta {point['delta']:g} on the grid"
        previous = point
    return np.nan, f"CI excludes 0 over the whole grid (to delta {line.iloc[-1]['delta']:g})"


def tipping_points(pooled: pd.DataFrame) -> pd.DataFrame:
    """Per outcome, contrast, term and group: the estimate without adjustment and the tipping point
    (the delta where the 95% CI first includes 0) in each direction, with how it was found."""
    rows = []
    for key, part in pooled[pooled["status"] == "estimated"].groupby(
        ["outcome", "contrast", "term", "group"], sort=False
    ):
        at_zero = part[part["delta"] == 0]
        row = dict(zip(["outcome", "contrast", "term", "group"], key))
        if len(at_zero):
            row.update(estimate=at_zero.iloc[0]["estimate"], ci_low=at_zero.iloc[0]["ci_low"],
                       ci_high=at_zero.iloc[0]["ci_high"])  # fmt: skip
        for direction, name in ((-1, "lower"), (1, "upper")):
            row[f"tipping_delta_{name}"], row[f"note_{name}"] = crossing(part, direction)
        rows.append(row)
    return pd.DataFrame(rows)
