"""Two-stage analysis: the same model within each study (OLS), then meta-analysis.

The per-study OLS comes from the study's cross-products (models.statistics), like the
one-stage models, so it needs no participant rows either.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..meta import METHODS, leave_one_out, meta_analysis
from ..probabilities import t_quantile
from . import NotEstimable
from .onestage import contrast_vector
from .statistics import (
    ModelSpec,
    check_full_rank,
    data_sources,
    entry_reference,
    present,
    raw_squares,
    statistics_by_study,
)

PER_STUDY_COLUMNS = [
    "study",
    "outcome",
    "contrast",
    "term",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "n",
    "df",
    "data_source",
    "status",
    "warnings",
]


def ols_from_products(entry: dict) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """(beta, covariance, residual df, names) from a study's [X y]'[X y] about its references;
    diagnosis levels absent from the study are dropped first, as a design built from the
    study's own rows would not have them. The fit is on the centred columns; the intercept
    is then moved back (beta_0 = b_0 + r_y - r_x'b), so large offsets lose no digits."""
    products, n, names = np.asarray(entry["products"], float), entry["n"], entry["names"]
    reference = entry_reference(entry)
    squares = raw_squares(entry)
    keep = [j for j, name in enumerate(names) if not name.startswith("diagnosis:") or squares[j] > 0]
    products, names, reference = products[np.ix_(keep, keep)], [names[j] for j in keep], reference[keep]
    check_full_rank(products, n, names)
    p = len(names) - 1
    df = n - p
    if df < 1:
        raise NotEstimable(f"{n} participants for {p} coefficients")
    xtx, xty, yty = products[:p, :p], products[:p, p], products[p, p]
    beta = np.linalg.solve(xtx, xty)
    rss = yty - beta @ xty
    cov = rss / df * np.linalg.inv(xtx)
    # beta for the raw columns: X_centred = X T with T = I - e_0 r_x'
    move = np.eye(p)
    move[0] -= reference[:p]
    move[0, 0] = 1.0
    beta = move @ beta
    beta[0] += reference[p]
    return beta, move @ cov @ move.T, df, names[:-1]


def per_study(statistics: dict, outcome: str, model: ModelSpec) -> list[dict]:
    """OLS of the model's terms and adjustments within each study (t intervals on n - p df)."""
    rows = []
    for study, entry in present(statistics, outcome, f"{model.name}/primary"):
        base = {
            "study": study,
            "outcome": outcome,
            "contrast": model.name,
            "n": entry["n"],
            "data_source": entry["source"],
        }
        try:
            beta, cov, df, names = ols_from_products(entry)
        except NotEstimable as error:
            rows += [{**base, "term": term, "status": "not estimated", "warnings": str(error)} for term in model.report]
            continue
        crit = t_quantile(0.975, df)
        for term, weights in model.report.items():
            vector = contrast_vector(names, weights)
            estimate, se = float(vector @ beta), float(np.sqrt(vector @ cov @ vector))
            rows.append(
                {
                    **base,
                    "term": term,
                    "estimate": estimate,
                    "se": se,
                    "ci_low": estimate - crit * se,
                    "ci_high": estimate + crit * se,
                    "df": float(df),
                    "status": "estimated",
                    "warnings": "",
                }
            )
    return rows


def per_study_table_from_statistics(statistics: dict, outcome: str, analysis: dict) -> pd.DataFrame:
    rows = []
    for name, spec in analysis["models"].items():
        rows += per_study(statistics, outcome, ModelSpec.from_config(name, spec))
    return pd.DataFrame(rows).reindex(columns=PER_STUDY_COLUMNS)


def per_study_table(data: pd.DataFrame, outcome: str, analysis: dict) -> pd.DataFrame:
    """per_study_table_from_statistics on pooled participant data."""
    return per_study_table_from_statistics(
        statistics_by_study(data, {**analysis, "outcomes": [outcome]}), outcome, analysis
    )


def two_stage_tables(
    estimates: pd.DataFrame, methods=METHODS, prediction: str = "higgins"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pooled rows (outcome x contrast x term x method x HKSJ) and leave-one-out rows; prediction
    is the prediction-interval convention of meta_analysis."""
    pooled, omitted = [], []
    usable = estimates[estimates["status"] == "estimated"]
    for (outcome, contrast, term), group in usable.groupby(["outcome", "contrast", "term"], sort=False):
        y, v, labels = group["estimate"].to_numpy(), group["se"].to_numpy() ** 2, list(group["study"])
        key = {
            "outcome": outcome,
            "contrast": contrast,
            "term": term,
            "studies": ",".join(labels),
            "data_source": data_sources(dict(zip(labels, group["data_source"]))),
        }
        for method in methods:
            for hksj in (False,) if method == "FE" else (False, True):
                result = meta_analysis(y, v, method, hksj, prediction=prediction)
                pooled.append({**key, **result.row()})
                if method == "REML" and len(labels) > 1:
                    for left_out, loo in leave_one_out(y, v, labels, method, hksj, prediction):
                        omitted.append({**key, "left_out": left_out, **loo.row()})
    return pd.DataFrame(pooled), pd.DataFrame(omitted)
