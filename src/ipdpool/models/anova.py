"""Type III F tests per model term, as lmerTest's `anova(model, type = 3)`.

Followed from lmerTest's source (runehaubo/lmerTestR, R/anova_contrasts.R, R/contrast_utils.R,
R/contest.R) and pbkrtest's (hojsgaard/pbkrtest, R/KR_modcomp.R):
- contrasts: for treatment coding, L = ginv(X) rdX with rdX the full dummy coding of every term,
  then each term's columns orthogonalized against the columns of the terms that contain it,
  highest order first (extract_contrasts_type3); a model with one term gets the Type I
  (Doolittle) contrasts instead (get_contrasts_type1);
- Satterthwaite (contestMD): F = (Lb)'(L V L')^-1 (Lb) / q from the eigen-decomposition of
  L V L', one Satterthwaite df per eigen-direction combined by get_Fstat_ddf;
- Kenward-Roger (KRmodcomp): the Wald statistic with the adjusted covariance, scaled by
  pbkrtest's F.scaling, with its df2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from .formula import CONTEXT, FixedDesign
from .lmm import LmmFit

COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]


def zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's zapsmall: round to `digits` significant digits of the largest absolute value."""
    largest = float(np.max(np.abs(x))) if x.size else 0.0
    places = max(0, digits - int(np.ceil(np.log10(largest)))) if largest > 0 else digits
    return np.round(x, places)


def doolittle_lower(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """The unit lower-triangular factor of lmerTest's doolittle() (same zeroing tolerance)."""
    n = x.shape[0]
    lower, upper = np.eye(n), np.zeros((n, n))
    for i in range(n):
        upper[i, :] = x[i, :] - lower[i, :i] @ upper[:i, :]
        for j in range(i + 1, n):
            value = x[j, i] - lower[j, :i] @ upper[:i, i]
            lower[j, i] = 0.0 if abs(upper[i, i]) < eps else value / upper[i, i]
    lower[np.abs(lower) < eps] = 0.0
    return lower


def contains(inner: str, outer: str, design: FixedDesign) -> bool:
    """lmerTest's term_contain (SAS's containment): `outer` has all of `inner`'s variables and more,
    and the same numeric covariates."""
    a, b = design.term_variables[inner], design.term_variables[outer]
    numeric = design.numeric_variables
    return a <= b and bool(b - a) and (a & numeric) == (b & numeric)


def full_dummy_blocks(design: FixedDesign, frame: pd.DataFrame) -> tuple[np.ndarray, list[slice]]:
    """lmerTest's get_rdX: intercept, then each term coded with every level (`~ 0 + term`)."""
    import formulaic

    blocks = [np.ones((len(frame), 1))] if design.has_intercept else []
    slices, start = [], len(blocks)
    for term in design.terms:
        block = np.asarray(formulaic.model_matrix(f"0 + {term}", frame, ensure_full_rank=False, context=CONTEXT), float)
        blocks.append(block)
        slices.append(slice(start, start + block.shape[1]))
        start += block.shape[1]
    return np.column_stack(blocks), slices


def type3_contrasts(design: FixedDesign, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """term -> contrast matrix (rows x fixed effects) of lmerTest's Type III test."""
    x = design.x.to_numpy(float)
    names = list(design.x.columns)
    columns = {term: [names.index(c) for c in design.term_columns[term]] for term in design.terms}
    if x.shape[1] <= 1 or len(design.terms) <= 1:
        lower = doolittle_lower(x.T @ x) if x.shape[1] > 1 else np.ones((1, 1))
        return {term: lower.T[columns[term]] for term in design.terms}
    rd_x, slices = full_dummy_blocks(design, frame)
    contrast = zapsmall(np.linalg.lstsq(x, rd_x, rcond=None)[0].T)  # rows: rdX columns; columns: X columns
    order = sorted(design.terms, key=lambda t: -len(design.term_variables[t]))  # stable, as R's order()
    for term in order:
        outer = [c for t in design.terms if contains(term, t, design) for c in columns[t]]
        if outer and columns[term]:
            basis, target = contrast[:, outer], contrast[:, columns[term]]
            fitted = basis @ np.linalg.lstsq(basis, target, rcond=None)[0]
            contrast[:, columns[term]] = zapsmall(target - fitted)
    rows = [matching_column(x[:, j], rd_x, block_of(j, columns, slices, design)) for j in range(x.shape[1])]
    contrast = contrast[rows]
    out = {}
    for term in design.terms:
        block = contrast[:, columns[term]].T
        out[term] = block[np.abs(block).sum(axis=1) > 1e-8]
    return out


def block_of(j: int, columns: dict, slices: list[slice], design: FixedDesign) -> slice:
    for term, s in zip(design.terms, slices):
        if j in columns[term]:
            return s
    return slice(0, 1)  # the intercept


def matching_column(column: np.ndarray, rd_x: np.ndarray, where: slice) -> int:
    """The column of rdX equal to this X column (lmerTest matches them by name; equal columns)."""
    for i in range(where.start, where.stop):
        if np.array_equal(rd_x[:, i], column):
            return i
    raise ValueError("Type III contrasts need treatment coding of the fixed effects")


# ------------------------------------------------------------------ F tests


def fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """lmerTest's get_Fstat_ddf: the df of a mean of q squared t statistics with df nu."""
    if len(nu) == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    e = float(np.sum(nu / (nu - 2)))
    return 2 * e / (e - len(nu))


def f_table_row(f_unscaled: float, ndf: int, ddf: float, sigma2: float, scale: float = 1.0) -> dict:
    """lmerTest's mk_Ftable: sums of squares from the unscaled F, the p-value from the scaled one."""
    mean_sq = f_unscaled * sigma2
    value = f_unscaled * scale
    return dict(zip(COLUMNS, [mean_sq * ndf, mean_sq, ndf, ddf, value, float(special.fdtrc(ndf, ddf, value))]))


def satterthwaite_f(fit: LmmFit, contrast: np.ndarray, eps: float = np.sqrt(np.finfo(float).eps)) -> dict:
    """lmerTest's contestMD with ddf = "Satterthwaite"."""
    estimates = contrast @ fit.beta
    if contrast.shape[0] == 1:
        variance = float(contrast[0] @ fit.vcov @ contrast[0])
        return f_table_row(estimates[0] ** 2 / variance, 1, fit.satterthwaite_df(contrast[0]), fit.sigma2)
    values, vectors = np.linalg.eigh(contrast @ fit.vcov @ contrast.T)
    values, vectors = values[::-1], vectors[:, ::-1]  # decreasing, as R's eigen()
    q = int(np.sum(values > max(eps * values[0], 0.0)))
    rotated = (vectors.T @ contrast)[:q]
    if q == 1:
        return satterthwaite_f(fit, rotated)
    f_value = float(np.sum((rotated @ fit.beta) ** 2 / values[:q])) / q
    nu = np.array([fit.satterthwaite_df(row) for row in rotated])
    return f_table_row(f_value, q, fstat_ddf(nu), fit.sigma2)


def kenward_roger_coordinates(fit: LmmFit, contrast: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(L, cov(beta), variance factor) in the coordinates of the fit's Kenward-Roger parts: an engine
    that fits in rescaled coordinates (`fit.scaled`) keeps its parts there, and the A1, A2 of
    .KR_adjust do not depend on the coordinates."""
    scaled = getattr(fit, "scaled", None)
    if scaled is None:
        return contrast, fit.vcov, 1.0
    return np.array([scaled.contrast(row) for row in contrast]), fit._internal[1], scaled.y_scale**2


def kenward_roger_f(fit: LmmFit, original: np.ndarray) -> dict:
    """pbkrtest's KRmodcomp (.KR_adjust) as lmerTest's contestMD reports it."""
    adjusted, p_list, w = fit._kenward_roger_parts
    contrast, phi, factor = kenward_roger_coordinates(fit, original)
    theta = contrast.T @ np.linalg.solve(contrast @ phi @ contrast.T, contrast)
    a1 = a2 = 0.0
    for i in range(len(p_list)):
        ui = theta @ phi @ p_list[i] @ phi
        for j in range(i, len(p_list)):
            uj = theta @ phi @ p_list[j] @ phi
            weight = 1.0 if i == j else 2.0
            a1 += weight * w[i, j] * np.trace(ui) * np.trace(uj)
            a2 += weight * w[i, j] * np.sum(ui * uj.T)
    q = int(np.linalg.matrix_rank(contrast))
    b = (a1 + 6 * a2) / (2 * q)
    g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
    denominator = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / denominator, (q - g) / denominator, (q + 2 - g) / denominator
    v0, v1, v2 = 1 + c1 * b, 1 - c2 * b, 1 - c3 * b
    v0 = 0.0 if abs(v0) < 1e-10 else v0
    ratio = 1.0 if abs(1 - a2 / q) < 1e-14 and abs(v1) < 1e-14 else (1 - a2 / q) / v1  # pbkrtest's .divZero
    rho = ratio**2 * v0 / (q * v2)
    df2 = 4 + (q + 2) / (q * rho - 1)
    scaling = 1.0 if abs(df2 - 2) < 1e-2 else df2 * (1 - a2 / q) / (df2 - 2)
    estimates = original @ fit.beta
    wald = float(estimates @ np.linalg.solve(factor * contrast @ adjusted @ contrast.T, estimates))
    return f_table_row(wald / q, q, df2, fit.sigma2, scaling)


def anova_table(fit: LmmFit, contrasts: dict[str, np.ndarray], ddf: str) -> pd.DataFrame:
    if ddf == "kenward_roger" and not fit.reml:
        raise ValueError("Kenward-Roger's method is only available for REML model fits (as lmerTest)")
    test = kenward_roger_f if ddf == "kenward_roger" else satterthwaite_f
    rows = {term: test(fit, contrast) for term, contrast in contrasts.items() if contrast.shape[0] > 0}
    return pd.DataFrame.from_dict(rows, orient="index", columns=COLUMNS)
