"""One-stage pooled models and their sensitivity analyses, from per-study statistics.

Models are built from a closed vocabulary of terms (no formula text from the config is
evaluated): each configured model lists its terms, its adjustments and the contrasts
(linear combinations of terms) to report. Every model is fitted from the studies'
sufficient statistics (models.statistics), whether those were computed here from pooled
participant data or arrived in federated site bundles.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..probabilities import t_quantile, t_sf
from . import NotEstimable
from .lmm import SINGULAR_TOLERANCE, LmmFit, fit_lmm
from .statistics import (
    CENTRE_VARIANT,
    ModelSpec,
    combine,
    data_sources,
    has_within_between,
    present,
    statistics_by_study,
    varies_within,
)

log = logging.getLogger(__name__)

RESULT_COLUMNS = [
    "outcome", "contrast", "term", "model", "estimate", "se", "ci_low", "ci_high", "df", "p_value", "inference",
    "n_participants", "n_studies", "studies", "tau2", "sigma2", "icc", "slope_variance", "slope_correlation",
    "centre_variance", "loglik", "method", "singular", "data_source", "status", "warnings",
]  # fmt: skip


def contrast_vector(names: list[str], weights: dict[str, float]) -> np.ndarray:
    vector = np.zeros(len(names))
    for term, weight in weights.items():
        vector[names.index(term)] = weight
    return vector


def base_row(outcome: str, model: ModelSpec, term: str, variant: str, parts: list[tuple[str, dict]]) -> dict:
    return {
        "outcome": outcome, "contrast": model.name, "term": term, "model": variant,
        "n_participants": int(sum(entry["n"] for _, entry in parts)), "n_studies": len(parts),
        "studies": ",".join(study for study, _ in parts),
        "data_source": data_sources({study: entry["source"] for study, entry in parts}),
    }  # fmt: skip


def not_estimated(
    outcome: str, model: ModelSpec, variant: str, parts: list[tuple[str, dict]], reason: str
) -> list[dict]:
    return [
        {**base_row(outcome, model, term, variant, parts), "status": "not estimated", "warnings": reason}
        for term in model.report
    ]


def mixed_rows(
    outcome: str, model: ModelSpec, variant: str, parts: list[tuple[str, dict]], fit: LmmFit, ddf: str, report: dict
) -> list[dict]:
    covariance = fit.random_covariance
    components = {
        "tau2": covariance[0, 0],
        "sigma2": fit.sigma2,
        "icc": covariance[0, 0] / (covariance[0, 0] + fit.sigma2),
    }
    if fit.cp.q > 1:
        scale = np.sqrt(covariance[0, 0] * covariance[1, 1])
        components.update(
            slope_variance=covariance[1, 1], slope_correlation=covariance[0, 1] / scale if scale > 0 else np.nan
        )
    rows = []
    for term, weights in report.items():
        result = fit.contrast(contrast_vector(fit.names, weights), ddf)
        rows.append(
            {
                **base_row(outcome, model, term, variant, parts), **{k: v for k, v in result.items() if k != "t"},
                **components,
                "loglik": fit.loglik, "method": fit.method, "singular": fit.is_singular, "status": "estimated",
                "warnings": "; ".join(fit.warnings),
            }
        )  # fmt: skip
    return rows


def mixed_model(
    statistics: dict,
    outcome: str,
    model: ModelSpec,
    design: str = "primary",
    variant: str = "random_intercept",
    reml: bool = True,
    min_studies: int = 2,
    singular_tolerance: float = SINGULAR_TOLERANCE,
    exclude_study: str | None = None,
    ddf: str = "satterthwaite",
    random_slope: str | None = None,
    report: dict | None = None,
) -> list[dict]:
    """One mixed model from the studies' statistics: rows for each reported contrast."""
    report = model.report if report is None else report
    shown = ModelSpec(model.name, model.terms, model.adjust, report)
    parts = present(statistics, outcome, f"{model.name}/{design}", exclude_study)
    if len(parts) < min_studies:
        return not_estimated(
            outcome,
            shown,
            variant,
            parts,
            f"outcome available in {len(parts)} studies with complete data; the model needs at least {min_studies}",
        )
    try:
        fit = fit_lmm(combine(parts, random_slope), reml=reml, singular_tolerance=singular_tolerance)
    except (NotEstimable, np.linalg.LinAlgError) as error:
        return not_estimated(outcome, shown, variant, parts, str(error))
    return mixed_rows(outcome, shown, variant, parts, fit, ddf, report)


def primary(
    data: pd.DataFrame,
    outcome: str,
    model: ModelSpec,
    min_studies: int = 2,
    singular_tolerance: float = SINGULAR_TOLERANCE,
    ddf: str = "satterthwaite",
) -> list[dict]:
    """The primary model of one outcome on pooled participant data (a convenience for scripts)."""
    analysis = {
        "outcomes": [outcome],
        "models": {model.name: {"terms": list(model.terms), "adjust": list(model.adjust), "report": model.report}},
    }
    return mixed_model(
        statistics_by_study(data, analysis),
        outcome,
        model,
        min_studies=min_studies,
        singular_tolerance=singular_tolerance,
        ddf=ddf,
    )


# ------------------------------------------------------------ sensitivity variants


def study_fixed_effect(statistics: dict, outcome: str, model: ModelSpec, min_studies: int = 2) -> list[dict]:
    """Study as a fixed effect: OLS on the within-study deviations, with cluster-robust (by study)
    SEs computed as linearmodels' PanelOLS(entity_effects=True).fit(cov_type="clustered") does
    (checked against it in the tests): every piece is a per-study cross-product."""
    variant = "study_fixed_effect"
    parts = present(statistics, outcome, f"{model.name}/primary")
    k = len(parts)
    if k < min_studies:
        return not_estimated(
            outcome,
            model,
            variant,
            parts,
            f"outcome available in {k} studies with complete data; the model needs at least {min_studies}",
        )
    try:
        cp = combine(parts)
    except NotEstimable as error:
        return not_estimated(outcome, model, variant, parts, str(error))
    # Within-study deviations: W~'W~ = W'W - (W'1)(1'W) / n per study; the intercept drops out.
    within = cp.products - np.einsum("ka,kb->kab", cp.products[:, 0, :], cp.products[:, 0, :]) / cp.n[:, None, None]
    columns = list(range(1, cp.p))
    xx = within[:, columns][:, :, columns]
    xy = within[:, columns, cp.y_index]
    names = list(cp.x_names[1:])
    try:
        if np.linalg.matrix_rank(xx.sum(axis=0)) < len(columns):
            raise NotEstimable("design not of full rank within studies")
        xtx_inv = np.linalg.inv(xx.sum(axis=0))
    except NotEstimable as error:
        return not_estimated(outcome, model, variant, parts, str(error))
    beta = xtx_inv @ xy.sum(axis=0)
    scores = xy - xx @ beta  # per study: sum of x~ e
    n = cp.n_total
    rss = float(within[:, cp.y_index, cp.y_index].sum() - beta @ xy.sum(axis=0))
    # linearmodels' defaults: debiased, n / (n - regressors); the study effects are nested in
    # the clusters and so not counted (its auto_df)
    scale = n / (n - len(columns))
    cov = scale * xtx_inv @ (scores.T @ scores) @ xtx_inv
    df = float(k - 1)  # cluster-robust inference: t with (clusters - 1) df
    note = f"cluster-robust SEs from only {k} clusters (studies) are unreliable; shown for completeness"
    rows = []
    for term, weights in model.report.items():
        vector = contrast_vector(names, weights)
        estimate, se = float(vector @ beta), float(np.sqrt(vector @ cov @ vector))
        t_crit = t_quantile(0.975, df)
        rows.append(
            {
                **base_row(outcome, model, term, variant, parts),
                "estimate": estimate, "se": se, "ci_low": estimate - t_crit * se, "ci_high": estimate + t_crit * se,
                "df": df, "p_value": float(2 * t_sf(abs(estimate / se), df)),
                "inference": "t (cluster-robust, studies - 1 df)", "method": "OLS with study fixed effects",
                "status": "estimated", "sigma2": scale * rss / n, "warnings": note,
            }
        )  # fmt: skip
    return rows


WITHIN_BETWEEN_REPORT = {
    "employed_within": {"employed_within": 1},
    "employed_between": {"employed_between": 1},
    "between_minus_within": {"employed_between": 1, "employed_within": -1},
}


def within_between(
    statistics: dict,
    outcome: str,
    model: ModelSpec,
    min_studies: int = 2,
    singular_tolerance: float = SINGULAR_TOLERANCE,
    ddf: str = "satterthwaite",
) -> list[dict]:
    """Employment split into its within-study deviation and its study mean (ecological bias)."""
    if not has_within_between(model):
        return []
    return mixed_model(
        statistics,
        outcome,
        model,
        "within_between",
        "within_between",
        min_studies=max(min_studies, 3),
        singular_tolerance=singular_tolerance,
        ddf=ddf,
        report=WITHIN_BETWEEN_REPORT,
    )


def random_slope(
    statistics: dict,
    outcome: str,
    model: ModelSpec,
    min_studies: int = 3,
    singular_tolerance: float = SINGULAR_TOLERANCE,
    ddf: str = "satterthwaite",
) -> list[dict]:
    """Correlated random intercept and random slope for employed, by study (REML)."""
    variant = "random_slope_employed"
    if "employed" not in model.terms:
        return []
    parts = present(statistics, outcome, f"{model.name}/primary")
    varying = sum(varies_within(entry, "employed") for _, entry in parts)
    if varying < min_studies:
        return not_estimated(
            outcome,
            model,
            variant,
            parts,
            f"employment varies within {varying} studies; a random slope needs at least {min_studies}",
        )
    return mixed_model(
        statistics,
        outcome,
        model,
        variant=variant,
        min_studies=0,
        singular_tolerance=singular_tolerance,
        ddf=ddf,
        random_slope="employed",
    )


def centre_parts(statistics: dict, outcome: str, key: str, parts: list[tuple[str, dict]]):
    """(study, centre, entry) blocks of the studies in `parts`, and the studies without centre
    statistics (a bundle whose site withheld them), which enter as one centre (their study entry)."""
    blocks, whole = [], []
    for study, entry in parts:
        centres = entry.get("centres")
        if centres:
            blocks += [(study, site, block) for site, block in sorted(centres.items()) if block["n"] > 0]
        else:
            blocks.append((study, study, entry))
            whole.append(study)
    return blocks, whole


def centre_within_study(
    statistics: dict,
    outcome: str,
    model: ModelSpec,
    min_studies: int = 2,
    singular_tolerance: float = SINGULAR_TOLERANCE,
    ddf: str = "satterthwaite",
) -> list[dict]:
    """The primary model with centre nested in study, lme4's `(1 | study/site)` (REML), fitted
    from per-centre statistics (models/nested.py); `centre_variance` is the between-centre
    variance within studies, `tau2` the between-study one, `icc` tau2 over the total."""
    from .nested import fit_nested_entries

    variant, key = CENTRE_VARIANT, f"{model.name}/primary"
    parts = present(statistics, outcome, key)
    if len(parts) < min_studies:
        reason = f"outcome available in {len(parts)} studies with complete data; the model needs at least {min_studies}"
        return not_estimated(outcome, model, variant, parts, reason)
    blocks, whole = centre_parts(statistics, outcome, key, parts)
    try:
        fit = fit_nested_entries(blocks, reml=True, singular_tolerance=singular_tolerance)
    except (NotEstimable, np.linalg.LinAlgError) as error:
        return not_estimated(outcome, model, variant, parts, str(error))
    counts = pd.Series([study for study, _, _ in blocks]).value_counts().sort_index()
    notes = ["centres per study: " + ", ".join(f"{study} {count}" for study, count in counts.items())]
    if whole:
        notes.append(f"no centre statistics (entered as one centre): {', '.join(whole)}")
    tau2, centre = float(fit.study_covariance[0, 0]), fit.centre_variance
    components = {
        "tau2": tau2,
        "centre_variance": centre,
        "sigma2": fit.sigma2,
        "icc": tau2 / (tau2 + centre + fit.sigma2),
    }
    rows = []
    for term, weights in model.report.items():
        result = fit.contrast(contrast_vector(fit.names, weights), ddf)
        rows.append(
            {
                **base_row(outcome, model, term, variant, parts), **{k: v for k, v in result.items() if k != "t"},
                **components, "loglik": fit.loglik, "method": fit.method, "singular": fit.is_singular,
                "status": "estimated", "warnings": "; ".join(fit.warnings + notes),
            }
        )  # fmt: skip
    return rows


def sensitivity(statistics: dict, outcome: str, model: ModelSpec, settings: dict) -> list[dict]:
    variants = settings.get("variants", [])
    options = {
        "min_studies": settings.get("min_studies", 2),
        "singular_tolerance": settings.get("singular_tolerance", SINGULAR_TOLERANCE),
        "ddf": settings.get("ddf", "satterthwaite"),
    }
    rows = []
    if "study_fixed_effect" in variants:
        rows += study_fixed_effect(statistics, outcome, model, options["min_studies"])
    if "within_between" in variants:
        rows += within_between(statistics, outcome, model, **options)
    if "random_slope" in variants:
        rows += random_slope(
            statistics, outcome, model, singular_tolerance=options["singular_tolerance"], ddf=options["ddf"]
        )
    if "ml" in variants:
        rows += mixed_model(statistics, outcome, model, variant="ml", reml=False, **options)
    if "unadjusted" in variants:
        rows += mixed_model(statistics, outcome, model, "unadjusted", "unadjusted", **options)
    if "covariates" in variants:
        rows += mixed_model(statistics, outcome, model, "covariates", "covariates", **options)
    if CENTRE_VARIANT in variants:
        rows += centre_within_study(statistics, outcome, model, **options)
    if "leave_one_out" in variants:
        for study in sorted(s for s, entry in statistics.items() if entry["outcomes"][outcome]["n_followup"] > 0):
            rows += mixed_model(
                statistics, outcome, model, variant=f"leave_out_{study}", exclude_study=study, **options
            )
    return rows


def as_table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    for column in RESULT_COLUMNS:
        if column not in table:
            table[column] = np.nan
    return table[RESULT_COLUMNS]


def fit_outcome_from_statistics(statistics: dict, outcome: str, analysis: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All configured models for one outcome: (primary rows, sensitivity rows)."""
    min_studies = analysis.get("min_studies", 2)
    tolerance, ddf = analysis.get("singular_tolerance", SINGULAR_TOLERANCE), analysis.get("ddf", "satterthwaite")
    settings = {
        **analysis.get("sensitivity", {}),
        "min_studies": min_studies,
        "singular_tolerance": tolerance,
        "ddf": ddf,
    }
    primary_rows, sensitivity_rows = [], []
    for name, spec in analysis["models"].items():
        model = ModelSpec.from_config(name, spec)
        primary_rows += mixed_model(
            statistics, outcome, model, min_studies=min_studies, singular_tolerance=tolerance, ddf=ddf
        )
        log.info("%s: model %s fitted; sensitivity analyses next", outcome, name)
        sensitivity_rows += sensitivity(statistics, outcome, model, settings)
        log.info("%s: model %s sensitivity analyses done", outcome, name)
    sensitivity_table = as_table(sensitivity_rows)
    sensitivity_table.insert(0, "variant", sensitivity_table["model"])
    return as_table(primary_rows), sensitivity_table


def fit_outcome(data: pd.DataFrame, outcome: str, analysis: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """fit_outcome_from_statistics on pooled participant data."""
    return fit_outcome_from_statistics(
        statistics_by_study(data, {**analysis, "outcomes": [outcome]}), outcome, analysis
    )
