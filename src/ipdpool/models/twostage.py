"""Two-stage analysis: the same model within each study (OLS), then meta-analysis."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..meta import METHODS, leave_one_out, meta_analysis
from .onestage import ModelSpec, NotEstimable, complete_cases, contrast_vector, design

PER_STUDY_COLUMNS = ["study", "outcome", "contrast", "term", "estimate", "se", "ci_low", "ci_high", "n", "df", "status", "warnings"]


def per_study(data: pd.DataFrame, outcome: str, model: ModelSpec) -> list[dict]:
    """OLS of the model's terms and adjustments within each study (t intervals on n - p df)."""
    rows = []
    terms = model.terms + model.adjust
    frame = complete_cases(data, outcome, terms)
    for study, part in frame.groupby("study", sort=True):
        base = {"study": study, "outcome": outcome, "contrast": model.name, "n": len(part)}
        try:
            x, names = design(part, outcome, terms)
            df = len(part) - x.shape[1]
            if df < 1:
                raise NotEstimable(f"{len(part)} participants for {x.shape[1]} coefficients")
        except NotEstimable as error:
            rows += [{**base, "term": term, "status": "not estimated", "warnings": str(error)} for term in model.report]
            continue
        y = part[f"{outcome}_fu_z"].to_numpy(float)
        beta, *_ = np.linalg.lstsq(x, y, rcond=None)
        residual = y - x @ beta
        cov = residual @ residual / df * np.linalg.inv(x.T @ x)
        crit = stats.t.ppf(0.975, df)
        for term, weights in model.report.items():
            vector = contrast_vector(names, weights)
            estimate, se = float(vector @ beta), float(np.sqrt(vector @ cov @ vector))
            rows.append({**base, "term": term, "estimate": estimate, "se": se, "ci_low": estimate - crit * se, "ci_high": estimate + crit * se, "df": float(df), "status": "estimated", "warnings": ""})
    return rows


def per_study_table(data: pd.DataFrame, outcome: str, analysis: dict) -> pd.DataFrame:
    rows = []
    for name, spec in analysis["models"].items():
        rows += per_study(data, outcome, ModelSpec.from_config(name, spec))
    return pd.DataFrame(rows).reindex(columns=PER_STUDY_COLUMNS)


def two_stage_tables(
    estimates: pd.DataFrame, methods=METHODS, prediction: str = "higgins"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pooled rows (outcome x contrast x term x method x HKSJ) and leave-one-out rows; prediction
    is the prediction-interval convention of meta_analysis."""
    pooled, omitted = [], []
    usable = estimates[estimates["status"] == "estimated"]
    for (outcome, contrast, term), group in usable.groupby(["outcome", "contrast", "term"], sort=False):
        y, v, labels = group["estimate"].to_numpy(), group["se"].to_numpy() ** 2, list(group["study"])
        key = {"outcome": outcome, "contrast": contrast, "term": term, "studies": ",".join(labels)}
        for method in methods:
            for hksj in ((False,) if method == "FE" else (False, True)):
                result = meta_analysis(y, v, method, hksj, prediction=prediction)
                pooled.append({**key, **result.row()})
                if method == "REML" and len(labels) > 1:
                    for left_out, loo in leave_one_out(y, v, labels, method, hksj, prediction):
                        omitted.append({**key, "left_out": left_out, **loo.row()})
    return pd.DataFrame(pooled), pd.DataFrame(omitted)
