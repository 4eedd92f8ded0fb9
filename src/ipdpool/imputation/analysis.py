"""The analysis of multiply imputed data: each completed data set goes through the same per-study
statistics and the same one-stage and two-stage fits as the complete-case analysis, and the m
results are pooled by Rubin's rules.

A completed data set's statistics have the layout of models.statistics (primary design of each
configured model), so a site can release them in its bundle and the coordinating centre fits
and pools them exactly as it would the pooled participant data's.
"""

from __future__ import annotations

import pandas as pd

from ..models.onestage import mixed_model
from ..models.statistics import ModelSpec, complete_cases, design_statistics, design_terms
from ..models.twostage import per_study_table_from_statistics, two_stage_tables
from .chained import NO_DELTA, Delta, impute
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


def completed_statistics(completed: pd.DataFrame, outcome: str, analysis: dict) -> dict[str, dict]:
    """study -> statistics of one completed data set (models.statistics layout, primary designs)."""
    out = {}
    for study, part in completed.groupby("study", sort=True):
        designs = {}
        for name, spec in analysis["models"].items():
            terms = design_terms(ModelSpec.from_config(name, spec), "primary")
            designs[f"{name}/primary"] = design_statistics(complete_cases(part, outcome, terms), outcome, terms, [])
        n_followup = int(part[f"{outcome}_fu_z"].notna().sum())
        out[str(study)] = {
            "study": str(study),
            "n": len(part),
            "outcomes": {outcome: {"n_followup": n_followup, "designs": designs}},
        }
    return out


def imputed_statistics(
    data: pd.DataFrame, outcome: str, analysis: dict, mi: dict, imputations, delta: Delta = NO_DELTA
) -> list[dict[str, dict]]:
    """The completed data sets' statistics for these imputation numbers (one dict per imputation)."""
    mi = settings_of(mi)
    return [
        completed_statistics(
            impute(data, outcome, j, mi["seed"], mi["method"], mi["iterations"], delta), outcome, analysis
        )
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
    estimates = per_study_table_from_statistics(statistics, outcome, analysis)
    pooled, _ = two_stage_tables(estimates, prediction=analysis.get("prediction_interval", "higgins"))
    rows = []
    for row in pooled.to_dict("records"):
        studies = row["studies"].split(",")
        n = estimates[(estimates["term"] == row["term"]) & estimates["study"].isin(studies)]
        n = n[n["contrast"] == row["contrast"]]["n"].sum()
        rows.append({**row, "analysis": TWO_STAGE, "n_participants": int(n), "n_studies": int(row["k"]),
                     "status": "estimated"})  # fmt: skip
    return rows


def fit_imputation(statistics: dict, outcome: str, analysis: dict, imputation: int) -> pd.DataFrame:
    """One completed data set's one-stage and two-stage estimates (ESTIMATE_COLUMNS)."""
    rows = one_stage_rows(statistics, outcome, analysis) + two_stage_rows(statistics, outcome, analysis)
    table = pd.DataFrame(rows)
    table["imputation"] = imputation
    table["outcome"] = outcome
    return table.reindex(columns=ESTIMATE_COLUMNS)


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
    pooled = rubin(group["estimate"], group["se"].astype(float) ** 2, complete_data_df(group))
    notes = [w for w in group["warnings"].fillna("").astype(str) if w]
    warning = f"{len(notes)} of {len(group)} fits warned: " + "; ".join(sorted(set(notes))) if notes else ""
    return {**base, **pooled.row(), "status": "estimated", "warnings": warning}


def pool_estimates(estimates: pd.DataFrame) -> pd.DataFrame:
    """Rubin's rules for every (outcome, analysis, contrast, term, method) over the imputations."""
    estimates = estimates.sort_values(["imputation"], kind="stable")
    rows = [pool_group(group) for _, group in estimates.groupby(KEY, sort=False, dropna=False)]
    return pd.DataFrame(rows).reindex(columns=POOLED_COLUMNS)
