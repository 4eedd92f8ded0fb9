"""One-stage pooled models on the harmonized data and their sensitivity analyses.

Models are built from a closed vocabulary of terms (no formula text from the
config is evaluated): each configured model lists its terms, its adjustments and
the contrasts (linear combinations of terms) to report.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .crossprod import CrossProducts, cross_products
from .lmm import SINGULAR_TOLERANCE, LmmFit, NotEstimable, fit_lmm

log = logging.getLogger(__name__)
DIAGNOSIS_REFERENCE = "schizophrenia_spectrum"
TERMS = ("employed", "ips", "ips:employed", "baseline", "age", "sex", "diagnosis", "employed_within", "employed_between")

RESULT_COLUMNS = [
    "outcome", "contrast", "term", "model", "estimate", "se", "ci_low", "ci_high", "df", "p_value", "inference",
    "n_participants", "n_studies", "studies", "tau2", "sigma2", "icc", "slope_variance", "slope_correlation",
    "loglik", "method", "singular", "status", "warnings",
]  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    name: str
    terms: tuple[str, ...]
    adjust: tuple[str, ...]
    report: dict[str, dict[str, float]]  # contrast name -> {term: weight}

    @staticmethod
    def from_config(name: str, spec: dict) -> "ModelSpec":
        return ModelSpec(name, tuple(spec["terms"]), tuple(spec.get("adjust", [])), {k: dict(v) for k, v in spec["report"].items()})


def required_columns(outcome: str, terms: tuple[str, ...]) -> list[str]:
    columns = [f"{outcome}_fu_z", "study"]
    for term in terms:
        columns += {
            "employed": ["employed"], "ips": ["arm"], "ips:employed": ["arm", "employed"], "baseline": [f"{outcome}_bl_z"],
            "age": ["age"], "sex": ["sex"], "diagnosis": ["diagnosis"], "employed_within": ["employed"], "employed_between": ["employed"],
        }[term]  # fmt: skip
    return list(dict.fromkeys(columns))


def complete_cases(data: pd.DataFrame, outcome: str, terms: tuple[str, ...]) -> pd.DataFrame:
    columns = required_columns(outcome, terms)
    frame = data[columns].dropna()
    return frame.sort_values("study", kind="stable").reset_index(drop=True)


def design(frame: pd.DataFrame, outcome: str, terms: tuple[str, ...], intercept: bool = True) -> tuple[np.ndarray, list[str]]:
    """Design matrix for the terms; diagnosis expands to indicators against schizophrenia spectrum."""
    columns, names = [], []
    if intercept:
        columns.append(np.ones(len(frame)))
        names.append("Intercept")
    employed = frame["employed"].to_numpy(float) if "employed" in frame else None
    ips = (frame["arm"] == "IPS").to_numpy(float) if "arm" in frame else None
    for term in terms:
        if term == "employed":
            columns.append(employed)
        elif term == "ips":
            columns.append(ips)
        elif term == "ips:employed":
            columns.append(ips * employed)
        elif term == "baseline":
            columns.append(frame[f"{outcome}_bl_z"].to_numpy(float))
        elif term == "age":
            columns.append(frame["age"].to_numpy(float))
        elif term == "sex":
            columns.append((frame["sex"] == "female").to_numpy(float))
            term = "sex:female"
        elif term == "diagnosis":
            for level in sorted(set(frame["diagnosis"]) - {DIAGNOSIS_REFERENCE}):
                columns.append((frame["diagnosis"] == level).to_numpy(float))
                names.append(f"diagnosis:{level}")
            continue
        elif term in ("employed_within", "employed_between"):
            study_mean = frame.groupby("study")["employed"].transform("mean").to_numpy(float)
            columns.append(employed - study_mean if term == "employed_within" else study_mean)
        else:
            raise ValueError(f"unknown model term {term!r}; terms are {TERMS}")
        names.append(term)
    x = np.column_stack(columns)
    rank = np.linalg.matrix_rank(x)
    if rank < x.shape[1]:
        constant = [n for n, c in zip(names, x.T) if n != "Intercept" and np.ptp(c) == 0]
        raise NotEstimable(f"design not of full rank ({rank} < {x.shape[1]} columns)" + (f"; no variation in {', '.join(constant)}" if constant else ""))
    return x, names


def contrast_vector(names: list[str], weights: dict[str, float]) -> np.ndarray:
    vector = np.zeros(len(names))
    for term, weight in weights.items():
        vector[names.index(term)] = weight
    return vector


def base_row(outcome: str, model: ModelSpec, term: str, variant: str, frame: pd.DataFrame | None) -> dict:
    studies = sorted(frame["study"].unique()) if frame is not None else []
    return {
        "outcome": outcome, "contrast": model.name, "term": term, "model": variant,
        "n_participants": len(frame) if frame is not None else 0, "n_studies": len(studies), "studies": ",".join(studies),
    }  # fmt: skip


def not_estimated(outcome: str, model: ModelSpec, variant: str, frame: pd.DataFrame | None, reason: str) -> list[dict]:
    return [{**base_row(outcome, model, term, variant, frame), "status": "not estimated", "warnings": reason} for term in model.report]


def mixed_rows(outcome: str, model: ModelSpec, variant: str, frame: pd.DataFrame, fit: LmmFit, ddf: str) -> list[dict]:
    covariance = fit.random_covariance
    components = {"tau2": covariance[0, 0], "sigma2": fit.sigma2, "icc": covariance[0, 0] / (covariance[0, 0] + fit.sigma2)}
    if fit.cp.q > 1:
        scale = np.sqrt(covariance[0, 0] * covariance[1, 1])
        components.update(slope_variance=covariance[1, 1], slope_correlation=covariance[0, 1] / scale if scale > 0 else np.nan)
    rows = []
    for term, weights in model.report.items():
        result = fit.contrast(contrast_vector(fit.names, weights), ddf)
        rows.append(
            {
                **base_row(outcome, model, term, variant, frame), **{k: v for k, v in result.items() if k != "t"}, **components,
                "loglik": fit.loglik, "method": fit.method, "singular": fit.is_singular, "status": "estimated",
                "warnings": "; ".join(fit.warnings),
            }
        )  # fmt: skip
    return rows


def model_cross_products(frame: pd.DataFrame, outcome: str, terms: tuple[str, ...], random_slope: str | None = None) -> CrossProducts:
    """Per-study cross-products of the model's design: all a fit needs (and all a site shares)."""
    x, names = design(frame, outcome, terms)
    z_names = ["Intercept"] + ([random_slope] if random_slope else [])
    z = x[:, [names.index(name) for name in z_names]]
    return cross_products(x, z, frame[f"{outcome}_fu_z"].to_numpy(float), frame["study"].to_numpy(), names, z_names)


def random_intercept(data: pd.DataFrame, outcome: str, model: ModelSpec, variant: str = "random_intercept", reml: bool = True, extra_adjust=(), drop_adjust=(), min_studies: int = 2, singular_tolerance: float = SINGULAR_TOLERANCE, exclude_study: str | None = None, ddf: str = "satterthwaite") -> list[dict]:
    adjust = tuple(a for a in model.adjust if a not in drop_adjust) + tuple(extra_adjust)
    terms = model.terms + adjust
    frame = complete_cases(data if exclude_study is None else data[data["study"] != exclude_study], outcome, terms)
    studies = frame["study"].nunique()
    if studies < min_studies:
        return not_estimated(outcome, model, variant, frame, f"outcome available in {studies} studies with complete data; the model needs at least {min_studies}")
    try:
        fit = fit_lmm(model_cross_products(frame, outcome, terms), reml=reml, singular_tolerance=singular_tolerance)
    except (NotEstimable, np.linalg.LinAlgError) as error:
        return not_estimated(outcome, model, variant, frame, str(error))
    return mixed_rows(outcome, model, variant, frame, fit, ddf)


def primary(data: pd.DataFrame, outcome: str, model: ModelSpec, min_studies: int = 2, singular_tolerance: float = SINGULAR_TOLERANCE, ddf: str = "satterthwaite") -> list[dict]:
    return random_intercept(data, outcome, model, min_studies=min_studies, singular_tolerance=singular_tolerance, ddf=ddf)


# ------------------------------------------------------------ sensitivity variants


def study_fixed_effect(data: pd.DataFrame, outcome: str, model: ModelSpec, min_studies: int = 2) -> list[dict]:
    """Study as a fixed effect (linearmodels PanelOLS, entity effects), cluster-robust SEs by study."""
    from linearmodels.panel import PanelOLS  # heavy, and needed by this variant only

    variant = "study_fixed_effect"
    terms = model.terms + model.adjust
    frame = complete_cases(data, outcome, terms)
    k = frame["study"].nunique()
    if k < min_studies:
        return not_estimated(outcome, model, variant, frame, f"outcome available in {k} studies with complete data; the model needs at least {min_studies}")
    try:
        x, names = design(frame, outcome, terms, intercept=False)
    except NotEstimable as error:
        return not_estimated(outcome, model, variant, frame, str(error))
    # linearmodels needs a two-level index whose second level is numeric: a within-study row number.
    index = pd.MultiIndex.from_arrays([frame["study"], frame.groupby("study").cumcount()], names=["study", "row"])
    exog = pd.DataFrame(x, index=index, columns=names)
    endog = pd.Series(frame[f"{outcome}_fu_z"].to_numpy(float), index=index, name="y")
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        result = PanelOLS(endog, exog, entity_effects=True).fit(cov_type="clustered", cluster_entity=True)
    notes = [f"cluster-robust SEs from only {k} clusters (studies) are unreliable; shown for completeness"] + [f"{w.category.__name__}: {w.message}" for w in records]
    beta, cov = result.params.to_numpy(), result.cov.to_numpy()
    df = float(k - 1)  # cluster-robust inference: t with (clusters - 1) df
    rows = []
    for term, weights in model.report.items():
        vector = contrast_vector(names, weights)
        estimate, se = float(vector @ beta), float(np.sqrt(vector @ cov @ vector))
        t_crit = stats.t.ppf(0.975, df)
        rows.append(
            {
                **base_row(outcome, model, term, variant, frame),
                "estimate": estimate, "se": se, "ci_low": estimate - t_crit * se, "ci_high": estimate + t_crit * se, "df": df,
                "p_value": float(2 * stats.t.sf(abs(estimate / se), df)), "inference": "t (cluster-robust, studies - 1 df)",
                "method": "OLS with study fixed effects", "status": "estimated",
                "sigma2": float(result.s2), "warnings": "; ".join(notes),
            }
        )  # fmt: skip
    return rows


def within_between(data: pd.DataFrame, outcome: str, model: ModelSpec, min_studies: int = 2, singular_tolerance: float = SINGULAR_TOLERANCE, ddf: str = "satterthwaite") -> list[dict]:
    """Employment split into its within-study deviation and its study mean (ecological bias)."""
    if "employed" not in model.terms or "ips:employed" in model.terms:
        return []
    terms = tuple(t for t in model.terms if t != "employed") + ("employed_within", "employed_between")
    split = ModelSpec(model.name, terms, model.adjust, {"employed_within": {"employed_within": 1}, "employed_between": {"employed_between": 1}, "between_minus_within": {"employed_between": 1, "employed_within": -1}})
    return random_intercept(data, outcome, split, variant="within_between", min_studies=max(min_studies, 3), singular_tolerance=singular_tolerance, ddf=ddf)


def random_slope(data: pd.DataFrame, outcome: str, model: ModelSpec, min_studies: int = 3, singular_tolerance: float = SINGULAR_TOLERANCE, ddf: str = "satterthwaite") -> list[dict]:
    """Correlated random intercept and random slope for employed, by study (REML)."""
    variant = "random_slope_employed"
    if "employed" not in model.terms:
        return []
    terms = model.terms + model.adjust
    frame = complete_cases(data, outcome, terms)
    varying = frame.groupby("study")["employed"].agg(lambda s: s.nunique() > 1).sum()
    if varying < min_studies:
        return not_estimated(outcome, model, variant, frame, f"employment varies within {varying} studies; a random slope needs at least {min_studies}")
    try:
        fit = fit_lmm(model_cross_products(frame, outcome, terms, random_slope="employed"), reml=True, singular_tolerance=singular_tolerance)
    except (NotEstimable, np.linalg.LinAlgError) as error:
        return not_estimated(outcome, model, variant, frame, str(error))
    return mixed_rows(outcome, model, variant, frame, fit, ddf)


def sensitivity(data: pd.DataFrame, outcome: str, model: ModelSpec, settings: dict) -> list[dict]:
    variants = settings.get("variants", [])
    options = {"min_studies": settings.get("min_studies", 2), "singular_tolerance": settings.get("singular_tolerance", SINGULAR_TOLERANCE), "ddf": settings.get("ddf", "satterthwaite")}
    rows = []
    if "study_fixed_effect" in variants:
        rows += study_fixed_effect(data, outcome, model, options["min_studies"])
    if "within_between" in variants:
        rows += within_between(data, outcome, model, **options)
    if "random_slope" in variants:
        rows += random_slope(data, outcome, model, singular_tolerance=options["singular_tolerance"], ddf=options["ddf"])
    if "ml" in variants:
        rows += random_intercept(data, outcome, model, variant="ml", reml=False, **options)
    if "unadjusted" in variants:
        rows += random_intercept(data, outcome, model, variant="unadjusted", drop_adjust=("baseline",), **options)
    if "covariates" in variants:
        rows += random_intercept(data, outcome, model, variant="covariates", extra_adjust=tuple(settings.get("covariates", [])), **options)
    if "leave_one_out" in variants:
        for study in sorted(data.loc[data[f"{outcome}_fu_z"].notna(), "study"].unique()):
            rows += random_intercept(data, outcome, model, variant=f"leave_out_{study}", exclude_study=study, **options)
    return rows


def as_table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    for column in RESULT_COLUMNS:
        if column not in table:
            table[column] = np.nan
    return table[RESULT_COLUMNS]


def fit_outcome(data: pd.DataFrame, outcome: str, analysis: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All configured models for one outcome: (primary rows, sensitivity rows)."""
    min_studies = analysis.get("min_studies", 2)
    tolerance, ddf = analysis.get("singular_tolerance", SINGULAR_TOLERANCE), analysis.get("ddf", "satterthwaite")
    settings = {**analysis.get("sensitivity", {}), "min_studies": min_studies, "singular_tolerance": tolerance, "ddf": ddf}
    primary_rows, sensitivity_rows = [], []
    for name, spec in analysis["models"].items():
        model = ModelSpec.from_config(name, spec)
        primary_rows += primary(data, outcome, model, min_studies, tolerance, ddf)
        log.info("%s: model %s fitted; sensitivity analyses next", outcome, name)
        sensitivity_rows += sensitivity(data, outcome, model, settings)
        log.info("%s: model %s sensitivity analyses done", outcome, name)
    sensitivity_table = as_table(sensitivity_rows)
    sensitivity_table.insert(0, "variant", sensitivity_table["model"])
    return as_table(primary_rows), sensitivity_table
