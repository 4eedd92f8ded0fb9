"""Linear mixed models with one grouping factor, fitted exactly from per-group cross-products.

Model: y = X beta + Z b + e, b_g ~ N(0, sigma2 Lambda Lambda') per group, e ~ N(0, sigma2 I).
As in lme4 (Bates, Maechler, Bolker & Walker 2015, J Stat Softw 67(1), section 3), Lambda is
lower triangular with parameter theta (its free elements, column by column; diagonal >= 0),
beta and sigma2 are profiled out, and the profiled deviance is minimized over theta:
    ML:   log|L|^2 + n (1 + log(2 pi r2 / n))
    REML: log|L|^2 + log|R_X|^2 + (n - p) (1 + log(2 pi r2 / (n - p)))
with L_g L_g' = Lambda' Z_g'Z_g Lambda + I per group, R_X'R_X = X'X - sum_g R_ZX,g' R_ZX,g,
R_ZX,g = L_g^-1 Lambda' Z_g'X_g and r2 the penalized residual sum of squares. Every term is a
sum over groups of q x q, q x p and p x p blocks (crossprod.CrossProducts), so a fit costs
O(k (p + q)^3) after the cross-products, and never touches rows. Lambda is block diagonal
over the random terms: the lower triangle of a correlated term `(1 + x | g)`, the diagonal
of an uncorrelated one `(1 + x || g)`.

The fit runs in centred, power-of-two-scaled coordinates (`Scaled`): a column with a large
offset or in tiny units then costs no digits, and data that differ by a shift or a change
of units give the same internal problem. theta, beta, their covariance, the variance
components and the criterion are mapped back exactly (linear maps and the Jacobian of the
scaling); Satterthwaite and Kenward-Roger df are invariant to the map. The optimizer uses
the analytic gradient of the profiled deviance (`_objective`, which shares one pass over
the groups between the deviance and its gradient), tries other starts only when the optimum
is on or near the boundary, and ends with Newton steps.

Inference follows lmerTest (Kuznetsova, Brockhoff & Christensen 2017): Satterthwaite df
from the observed Hessian of the deviance in (theta, sigma) and the Jacobian of cov(beta),
numerical as lmerTest takes them (numDeriv's Richardson scheme), the Hessian from the
analytic gradient; and pbkrtest (Halekoh & Hojsgaard 2014) for the Kenward-Roger (1997)
adjusted covariance and df, with the expected information.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import NotEstimable, numderiv
from .crossprod import CrossProducts

SINGULAR_TOLERANCE = 1e-4  # lme4's isSingular default, on theta
DDF_METHODS = ("satterthwaite", "kenward_roger")


def free_pattern(q: int, random_terms) -> np.ndarray:
    """Which elements of Lambda are parameters: the lower triangle within each correlated
    term, the diagonal of each uncorrelated one (Lambda is block diagonal over terms)."""
    pattern = np.zeros((q, q), bool)
    for positions, correlated in random_terms:
        for i in positions:
            for j in positions:
                pattern[i, j] = (i >= j) if correlated else (i == j)
    return pattern


def theta_positions(pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of theta's elements in Lambda: column by column, as lme4 orders them."""
    columns, rows = np.nonzero(pattern.T)
    return rows, columns


def diagonal_positions(pattern: np.ndarray) -> list[int]:
    rows, columns = theta_positions(pattern)
    return [i for i in range(len(rows)) if rows[i] == columns[i]]


def relative_factor(theta: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    lam = np.zeros(pattern.shape)
    lam[theta_positions(pattern)] = theta
    return lam


# ------------------------------------------------------------------ centred and scaled coordinates


@dataclass(frozen=True)
class Scaled:
    """The model in the coordinates it is fitted in: every column divided by a power of two
    near its SD, and X's columns and y centred on their references when X has an intercept
    (Z's columns only within a correlated term with an intercept, where centring is a
    reparametrization of the same model). Powers of two and references on the data's grid
    keep the map exact, so shifted or rescaled data give the same internal problem.
    X = X_int x_map, Z = Z_int z_map, y = y_scale y_int + y_shift."""

    cp: CrossProducts  # columns [1, X_int, Z_int, y_int]
    pattern: np.ndarray
    x_map: np.ndarray
    z_map: np.ndarray
    y_scale: float
    y_shift: float
    intercept: int | None  # position of the intercept among the fixed effects

    def beta(self, beta_internal: np.ndarray) -> np.ndarray:
        beta = np.linalg.solve(self.x_map, self.y_scale * beta_internal)
        if self.intercept is not None:
            beta[self.intercept] += self.y_shift
        return beta

    def fixed_covariance(self, covariance_internal: np.ndarray) -> np.ndarray:
        inverse = np.linalg.inv(self.x_map)
        return self.y_scale**2 * inverse @ covariance_internal @ inverse.T

    def contrast(self, contrast: np.ndarray) -> np.ndarray:
        """L_int with L beta = y_scale L_int beta_int (+ y_shift L[intercept])."""
        return np.linalg.solve(self.x_map.T, contrast)

    def relative_factor(self, lam_internal: np.ndarray) -> np.ndarray:
        """A factor F with F F' = D / sigma2 in the original coordinates."""
        return np.linalg.solve(self.z_map, lam_internal)

    def deviance(self, deviance_internal: float, reml: bool) -> float:
        """The criterion in the original units: the Jacobian of y's scaling, and (REML) of X's map."""
        n, p = self.cp.n_total, self.cp.p
        if reml:
            log_det_x = float(np.log(np.abs(np.diag(self.x_map))).sum())
            return deviance_internal + 2 * (n - p) * np.log(self.y_scale) + 2 * log_det_x
        return deviance_internal + 2 * n * np.log(self.y_scale)


def _power_of_two(spread: float) -> float:
    return 2.0 ** round(math.log2(spread)) if spread > 0 and math.isfinite(spread) else 1.0


def scaled_problem(cp: CrossProducts) -> Scaled:
    total = cp.products.sum(axis=0)
    n = total[0, 0]
    sums, squares, reference = total[0], np.diag(total), cp.reference
    sd = np.sqrt(np.maximum(squares / n - (sums / n) ** 2, 0.0))
    root_mean_square = np.sqrt(np.maximum(squares + 2 * reference * sums + n * reference**2, 0.0) / n)
    m = total.shape[0]
    x_intercept = cp.x_index.index(0) if 0 in cp.x_index else None
    z_intercept = cp.z_index.index(0) if 0 in cp.z_index else None
    centred_z = set()
    for positions, correlated in cp.random_terms:
        if correlated and z_intercept in positions:
            centred_z.update(positions)

    def column(j: int, centre: bool) -> tuple[np.ndarray, float, float]:
        """(weights on the stored columns, scale, shift): raw column = scale * internal + shift."""
        weights = np.zeros(m)
        if j == 0:
            weights[0] = 1.0
            return weights, 1.0, 0.0
        if centre:
            scale = _power_of_two(sd[j])
            weights[j] = 1.0 / scale
            return weights, scale, reference[j]
        scale = _power_of_two(root_mean_square[j])
        weights[j], weights[0] = 1.0 / scale, reference[j] / scale
        return weights, scale, 0.0

    def mapping(indices, centre, intercept) -> tuple[list[np.ndarray], np.ndarray]:
        parts = [column(j, centre(i)) for i, j in enumerate(indices)]
        out = np.diag([scale for _, scale, _ in parts])
        if intercept is not None:
            out[intercept] += [shift for _, _, shift in parts]
            out[intercept, intercept] = 1.0
        return [w for w, _, _ in parts], out

    x_weights, x_map = mapping(cp.x_index, lambda i: x_intercept is not None, x_intercept)
    z_weights, z_map = mapping(cp.z_index, lambda i: i in centred_z, z_intercept)
    y_weights, y_scale, y_shift = column(cp.y_index, x_intercept is not None)
    ones = np.zeros(m)
    ones[0] = 1.0
    a = np.column_stack([ones, *x_weights, *z_weights, y_weights])
    products = a.T @ cp.products @ a
    p, q = cp.p, cp.q
    internal = CrossProducts(
        cp.groups, products, np.zeros(len(a.T)), tuple(range(1, p + 1)), tuple(range(p + 1, p + q + 1)),
        p + q + 1, cp.x_names, cp.z_names, cp.random_terms,
    )  # fmt: skip
    return Scaled(internal, free_pattern(q, cp.random_terms), x_map, z_map, y_scale, y_shift, x_intercept)


def lme4_theta(factor: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """lme4's theta for D / sigma2 = F F': the lower-triangular factor of each term's block
    (by QR, which also serves rank-deficient blocks), diagonal made non-negative."""
    if factor.shape == (1, 1):  # the QR of one number is itself, up to its sign
        return np.abs(factor[0])
    lam = np.zeros_like(factor)
    for block in _blocks(pattern):
        rows = factor[block, :]
        r = np.linalg.qr(rows.T, mode="r")
        lower = (
            r.T[:, : len(block)] if r.shape[0] >= len(block) else np.pad(r.T, ((0, 0), (0, len(block) - r.shape[0])))
        )
        lower = lower * np.where(np.diag(lower) < 0, -1.0, 1.0)
        lam[np.ix_(block, block)] = np.where(pattern[np.ix_(block, block)], lower, 0.0)
    return lam[theta_positions(pattern)]


def _blocks(pattern: np.ndarray) -> list[list[int]]:
    """The diagonal blocks of Lambda: a column with its rows of free elements."""
    q = len(pattern)
    seen, out = set(), []
    for j in range(q):
        if j not in seen:
            block = sorted(int(i) for i in np.nonzero(pattern[:, j])[0])
            out.append(block)
            seen.update(block)
    return out


# ------------------------------------------------------------------ the profiled deviance


@dataclass(frozen=True)
class Pieces:
    """Everything at one Lambda: the profiled quantities and the per-group blocks reused by inference."""

    log_det_l2: float
    xvx: np.ndarray  # X' H^-1 X, with V = sigma2 H
    xvy: np.ndarray
    yvy: float
    beta: np.ndarray
    r2: float  # penalized residual sum of squares
    log_det_rx2: float
    a: np.ndarray  # (k, q, q): Lambda M^-1 Lambda', H_g^-1 = I - Z_g A_g Z_g'


def evaluate(cp: CrossProducts, lam: np.ndarray) -> Pieces:
    ztz, ztx, zty = cp.ztz, cp.ztx, cp.zty
    if cp.q == 1:  # scalar per group: the same algebra without batched linear algebra (10x faster)
        zz, zx, zy = ztz[:, 0, 0], ztx[:, 0, :], zty[:, 0]
        m = 1.0 + lam[0, 0] ** 2 * zz
        a = lam[0, 0] ** 2 / m
        xtx, xty, yty = cp.totals
        xvx = xtx - (zx * a[:, None]).T @ zx
        xvy = xty - zx.T @ (a * zy)
        yvy = yty - float(a @ (zy * zy))
        return _profiled(float(np.log(m).sum()), xvx, xvy, yvy, a[:, None, None])
    else:
        m = lam.T @ ztz @ lam + np.eye(cp.q)
        chol = np.linalg.cholesky(m)
        solved = np.linalg.solve(chol, np.broadcast_to(lam.T, m.shape))  # L_g^-1 Lambda'
        a = np.swapaxes(solved, 1, 2) @ solved
        log_det_l2 = 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
    xtx, xty, yty = cp.totals
    a_ztx = a @ ztx
    xvx = xtx - np.einsum("kqp,kqr->pr", ztx, a_ztx)
    xvy = xty - np.einsum("kqp,kq->p", a_ztx, zty)
    yvy = yty - float(np.einsum("kq,kqr,kr->", zty, a, zty))
    return _profiled(log_det_l2, xvx, xvy, yvy, a)


def _profiled(log_det_l2: float, xvx: np.ndarray, xvy: np.ndarray, yvy: float, a: np.ndarray) -> Pieces:
    """beta, r2 and log|R_X|^2 from X'H^-1X, X'H^-1y and y'H^-1y."""
    rx = np.linalg.cholesky(xvx)
    beta = np.linalg.solve(xvx, xvy)
    r2 = yvy - float(beta @ xvy)
    log_det_rx2 = 2.0 * float(np.log(np.diag(rx)).sum())
    return Pieces(log_det_l2, xvx, xvy, yvy, beta, r2, log_det_rx2, a)


def _criterion(cp: CrossProducts, pieces: Pieces, reml: bool) -> float:
    dof = cp.n_total - cp.p if reml else cp.n_total
    value = pieces.log_det_l2 + dof * (1 + np.log(2 * np.pi * pieces.r2 / dof))
    return float(value + pieces.log_det_rx2) if reml else float(value)


def internal_deviance(cp: CrossProducts, lam: np.ndarray, reml: bool) -> float:
    try:
        pieces = evaluate(cp, lam)
    except np.linalg.LinAlgError:
        return np.inf
    return _criterion(cp, pieces, reml) if pieces.r2 > 0 else np.inf


def profiled_deviance(cp: CrossProducts, theta: np.ndarray, reml: bool) -> float:
    """The (RE)ML criterion at lme4's theta (original coordinates), as lme4's deviance/REMLcrit."""
    scaled = scaled_problem(cp)
    lam = scaled.z_map @ relative_factor(np.asarray(theta, float), scaled.pattern)
    return scaled.deviance(internal_deviance(scaled.cp, lam, reml), reml)


def deviance_at(cp: CrossProducts, lam: np.ndarray, sigma: float, reml: bool) -> float:
    """Deviance at (Lambda, sigma), beta profiled (lmerTest's devfun_vp): the function whose
    Hessian gives the Satterthwaite covariance of the variance parameters."""
    pieces = evaluate(cp, lam)
    s2 = sigma**2
    value = pieces.log_det_l2 + pieces.r2 / s2 + cp.n_total * np.log(2 * np.pi * s2)
    if reml:
        value += pieces.log_det_rx2 - cp.p * np.log(2 * np.pi * s2)
    return float(value)


def deviance_at_gradient(cp: CrossProducts, pattern: np.ndarray, point: np.ndarray, reml: bool) -> np.ndarray:
    """Gradient of deviance_at in (theta, sigma): as deviance_gradient with r2 / sigma2 in
    place of the profiled dof log r2, and d/d sigma = 2 (n - [REML] p) / sigma - 2 r2 / sigma^3."""
    lam, sigma = relative_factor(point[:-1], pattern), point[-1]
    pieces = evaluate(cp, lam)
    ztz, ztx, zty = cp.ztz, cp.ztx, cp.zty
    ztz_a = ztz @ pieces.a
    w = ztx - ztz_a @ ztx
    u = zty - np.einsum("kqr,kr->kq", ztz_a, zty) - w @ pieces.beta
    s = (ztz - ztz_a @ ztz).sum(axis=0) - (u.T @ u) / sigma**2
    if reml:
        s -= np.einsum("kqp,pr,ksr->qs", w, np.linalg.inv(pieces.xvx), w)
    dof = cp.n_total - cp.p if reml else cp.n_total
    return np.append((2.0 * s @ lam)[theta_positions(pattern)], 2 * dof / sigma - 2 * pieces.r2 / sigma**3)


# ------------------------------------------------------------------ optimization


def _objective(cp: CrossProducts, pattern: np.ndarray, reml: bool):
    """theta -> (deviance, gradient) in the scaled coordinates (inf where not defined).

    One pass over the groups serves both. With V_g = L_g^-1 Lambda' Z_g'[Z_g X_g y_g]:
    sum_g V_g'V_g = sum_g [Z X y]_g' Z_g A_g Z_g' [Z X y]_g, which gives X'H^-1X, X'H^-1y,
    y'H^-1y and sum_g Z_g'H_g^-1 Z_g; the gradient is d deviance / d Lambda = 2 S Lambda, with
    S = d deviance / d G (G = Lambda Lambda') = sum_g Z_g'H_g^-1 Z_g - (dof / r2) sum_g u_g u_g'
    - [REML] sum_g W_g (X'H^-1 X)^-1 W_g', W_g = Z_g'H_g^-1 X_g, u_g = Z_g'H_g^-1 (y_g - X_g beta)
    (matrix calculus on the profiled deviance; the envelope theorem removes beta's own derivative)."""
    if cp.q == 1:
        return _at_one_point(_scalar_objective(cp, reml))
    positions = theta_positions(pattern)
    size, q, p = len(positions[0]), cp.q, cp.p
    xy = [*cp.x_index, cp.y_index]
    stacked = cp.products[:, cp.z_index, :][:, :, [*cp.z_index, *xy]]  # Z'[Z X y] per group
    totals = cp.products[:, xy, :][:, :, xy].sum(axis=0)  # [X y]'[X y]
    ztz_total = stacked[:, :, :q].sum(axis=0)
    dof = cp.n_total - p if reml else cp.n_total
    identity = np.eye(q)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        lam = relative_factor(theta, pattern)
        lt_s = lam.T @ stacked
        try:
            chol = np.linalg.cholesky(lt_s[:, :, :q] @ lam + identity)
            v = _forward_substitution(chol, lt_s)
            flat = v.reshape(-1, v.shape[2])
            corrections = flat.T @ flat  # sum_g [Z X y]_g' Z_g A_g Z_g' [Z X y]_g
            corrected = totals - corrections[q:, q:]  # [X y]' H^-1 [X y]
            xvx, xvy = corrected[:p, :p], corrected[:p, p]
            rx = np.linalg.cholesky(xvx)
            beta = np.linalg.solve(xvx, xvy)
        except np.linalg.LinAlgError:
            return np.inf, np.zeros(size)
        r2 = corrected[p, p] - float(beta @ xvy)
        if not r2 > 0:
            return np.inf, np.zeros(size)
        value = 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
        value += dof * (1 + np.log(2 * np.pi * r2 / dof))
        if reml:
            value += 2.0 * float(np.log(np.diag(rx)).sum())
        # [Z'H^-1 X, Z'H^-1 y] per group: Z'[X y] - Z'Z A Z'[X y]
        d = stacked[:, :, q:] - np.swapaxes(v[:, :, :q], 1, 2) @ v[:, :, q:]
        u = d @ np.append(-beta, 1.0)
        s = ztz_total - corrections[:q, :q] - (dof / r2) * (u.T @ u)
        if reml:
            w = d[:, :, :p]
            s -= (w @ np.linalg.inv(xvx) @ np.swapaxes(w, 1, 2)).sum(axis=0)
        return float(value), (2.0 * s @ lam)[positions]

    return objective


def _forward_substitution(lower: np.ndarray, b: np.ndarray) -> np.ndarray:
    """lower^-1 b for a stack of lower-triangular matrices, row by row (numpy's batched solve
    factorizes each triangle again and costs twice as much for these small blocks)."""
    out = np.empty_like(b)
    for i in range(b.shape[1]):
        row = b[:, i, :]
        if i:
            row = row - (lower[:, i, None, :i] @ out[:, :i, :])[:, 0, :]
        out[:, i, :] = row / lower[:, i, i, None]
    return out


def _at_one_point(scalar):
    """A vectorized q = 1 objective as an objective of one theta."""

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        values, gradients = scalar(theta)
        return float(values[0]), gradients

    return objective


def _scalar_objective(cp: CrossProducts, reml: bool):
    """q = 1: the deviance and its derivative (unless gradient=False) for an array of theta at
    once (a grid costs about one evaluation). With m_g = 1 + theta^2 z_g'z_g, H_g^-1 =
    I - z_g z_g' theta^2 / m_g, so Z'H^-1[X y] = z'[X y] / m_g and
    [X y]'H^-1[X y] = [X y]'[X y] - sum_g (theta^2 / m_g) z'[X y]' z'[X y];
    the derivative is _objective's formula with every block a scalar."""
    p = cp.p
    zz, zxy = cp.ztz[:, 0, 0], np.column_stack([cp.ztx[:, 0, :], cp.zty[:, 0]])
    outer = (zxy[:, :, None] * zxy[:, None, :]).reshape(len(zz), -1)
    xy = [*cp.x_index, cp.y_index]
    totals = cp.products[:, xy, :][:, :, xy].sum(axis=0)
    dof = cp.n_total - p if reml else cp.n_total

    def objective(theta, gradient: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        t = np.atleast_1d(np.asarray(theta, float)).ravel()
        m = 1.0 + (t**2)[:, None] * zz
        corrected = totals - ((t**2)[:, None] / m @ outer).reshape(len(t), p + 1, p + 1)
        xvx, xvy = corrected[:, :p, :p], corrected[:, :p, p]
        try:
            rx = np.linalg.cholesky(xvx)
            inverse = np.linalg.inv(xvx)
        except np.linalg.LinAlgError:
            if len(t) == 1:
                return np.array([np.inf]), np.zeros(1) if gradient else None
            parts = [objective(one, gradient) for one in t]
            return np.concatenate([v for v, _ in parts]), np.concatenate([g for _, g in parts]) if gradient else None
        beta = (inverse @ xvy[:, :, None])[:, :, 0]  # r2 is stationary in beta: inv costs no digits there
        r2 = corrected[:, p, p] - (beta * xvy).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.log(m).sum(axis=1) + dof * (1 + np.log(2 * np.pi * r2 / dof))
            if reml:
                values += 2.0 * np.log(np.diagonal(rx, axis1=1, axis2=2)).sum(axis=1)
            if not gradient:
                return np.where(r2 > 0, values, np.inf), None
            residual = (zxy[:, p] - beta @ zxy[:, :p].T) / m
            s = (zz / m).sum(axis=1) - (dof / r2) * (residual**2).sum(axis=1)
            if reml:
                s -= (((zxy[:, :p] @ inverse) * zxy[:, :p]).sum(axis=2) / m**2).sum(axis=1)
        positive = r2 > 0
        if positive.all():
            return values, 2.0 * s * t
        return np.where(positive, values, np.inf), np.where(positive, 2.0 * s * t, 0.0)

    return objective


def _minimize_one(cp: CrossProducts, reml: bool) -> np.ndarray:
    """q = 1: a grid over log theta brackets the global minimum and a finer grid around the best
    point narrows it (each grid is one vectorized evaluation, cheaper than the dozen sequential
    steps of Brent's method); the zero of the analytic gradient between the finer grid's points
    (secant) starts Newton steps (values alone resolve theta only to about 1e-8); theta = 0 (no
    between-group variance), tried with the first grid, is kept where it is as low as the finer
    grid or the Newton steps reach."""
    objective = _scalar_objective(cp, reml)
    grid = np.linspace(-12.0, 8.0, 41)
    values = objective(np.r_[0.0, np.exp(grid)], gradient=False)[0]
    at_zero, values = values[0], values[1:]
    best = int(np.argmin(values))  # the bracket narrowed twentyfold: log theta in steps of 0.025
    thetas = np.exp(np.linspace(grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)], 41))
    values, gradients = objective(thetas)
    best = int(np.argmin(values))
    if at_zero <= values[best]:
        return np.array([0.0])
    point = None
    for i in (best - 1, best):  # the gradient changes sign between points i and i + 1
        if 0 <= i < len(thetas) - 1 and gradients[i] < 0 < gradients[i + 1]:
            secant = thetas[i] - gradients[i] * (thetas[i + 1] - thetas[i]) / (gradients[i + 1] - gradients[i])
            point = _newton_point(objective, float(secant))
            break
    if point is None or point[0] > values[best] + 1e-11 * max(1.0, abs(values[best])):
        point = _newton_point(objective, float(thetas[best]))
    value, theta = _newton_one(objective, point)
    return np.array([0.0 if at_zero <= value else theta])


def _newton_point(objective, theta: float) -> tuple[float, float, float, float]:
    """(deviance, theta, derivative, second derivative) at one theta, from one vectorized
    evaluation at theta and beside it: the second derivative by central differences of the
    analytic gradient (forward at the bound 0)."""
    h = 1e-5 * max(theta, 1e-2)
    low = theta - h if theta >= h else theta
    values, gradients = objective(np.array([theta, theta + h, low]))
    return float(values[0]), theta, float(gradients[0]), float((gradients[1] - gradients[2]) / (theta + h - low))


def _newton_one(objective, point: tuple[float, float, float, float]) -> tuple[float, float]:
    """_newton_finish for one theta from a _newton_point, each step one evaluation (the Hessian
    comes with the gradient): (deviance, theta) at the zero of the gradient."""
    value, theta, gradient, second = point
    for _ in range(6):
        if not (theta > 0 and second > 0 and np.isfinite(second)):
            break
        step = -gradient / second
        if abs(step) <= 1e-6 * theta:  # the quadratic model holds to ~1e-12 of theta: no check needed
            return value, theta + step
        trial_value, trial, trial_gradient, trial_second = _newton_point(objective, max(theta + step, 0.0))
        # Near the optimum the deviance changes below its rounding (a few 1e-13 of the sum of its
        # terms): the gradient decides there, a step halving it is taken unless the deviance rises
        # beyond what counts as a tie (_lowest).
        tie = 1e-11 * max(1.0, abs(value))
        progress = abs(trial_gradient) < 0.5 * abs(gradient)
        if not (trial_value <= value or (progress and trial_value <= value + tie)):
            break
        value, theta, gradient, second = min(value, trial_value), trial, trial_gradient, trial_second
    return value, theta


NEAR_BOUNDARY = 0.05  # a diagonal element of the (scaled) Lambda this small: try the other starts too


def _minimize_many(cp: CrossProducts, pattern: np.ndarray, reml: bool) -> np.ndarray:
    """q > 1: bounded quasi-Newton with the analytic gradient from Lambda = I. Only when that
    optimum is on or near the boundary (a diagonal element near 0), where the profiled
    deviance often has a rival optimum, are other starts tried: 0.1 I and 3 I; then, if the
    best point is near r zero diagonal elements, the other faces with r zero diagonal elements
    (a covariance of the same rank written with other columns of Lambda), each searched from
    Lambda = I with its elements fixed at 0; and the starts just off the faces of the best
    point. The best point is finished by Newton steps on the free parameters. Until issue 21
    every face was searched, most of the time of a boundary fit; bench/bench_lmm_starts.py
    compares the two on generated data."""
    from scipy import optimize  # here: a fit with one random effect does not need its import (0.5 s)

    size, diagonal = int(pattern.sum()), diagonal_positions(pattern)
    objective = _objective(cp, pattern, reml)

    def search(start: np.ndarray, zero: tuple[int, ...] = ()) -> tuple[float, np.ndarray]:
        bounds = [(0.0, 0.0) if i in zero else (0.0, None) if i in diagonal else (None, None) for i in range(size)]
        found = optimize.minimize(
            objective, np.where(np.isin(np.arange(size), zero), 0.0, start), jac=True, method="L-BFGS-B",
            bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 2000},
        )  # fmt: skip
        return float(found.fun), found.x

    identity = np.zeros(size)
    identity[diagonal] = 1.0
    best = search(identity)
    if any(best[1][i] < NEAR_BOUNDARY for i in diagonal) or not np.isfinite(best[0]):
        best = _lowest([best, search(0.1 * identity), search(3.0 * identity)])
        near = tuple(i for i in diagonal if best[1][i] < NEAR_BOUNDARY)
        faces = [face for face in itertools.combinations(diagonal, len(near)) if face != near]
        best = _lowest([best] + [search(identity, face) for face in faces])
        best = _lowest([best] + [search(start) for start in _off_the_face(best[1], pattern, diagonal)])
    return _newton_finish(objective, best, diagonal)


def _lowest(candidates: list[tuple[float, np.ndarray]]) -> tuple[float, np.ndarray]:
    """The first candidate within rounding (1e-11 relative) of the lowest deviance: between
    optima that tie, the choice must not depend on rounding, or data that differ only in the
    order of a sum (a study split over two sites) would end at different points."""
    lowest = min(value for value, _ in candidates)
    return next(c for c in candidates if c[0] <= lowest + 1e-11 * max(1.0, abs(lowest)))


def _off_the_face(theta: np.ndarray, pattern: np.ndarray, diagonal: list[int]) -> list[np.ndarray]:
    """Starts just off a face where a diagonal element of Lambda is 0. On that face the sign of
    the column's other elements does not change the model, but it decides whether leaving the
    face (a correlation of +1 or -1) goes downhill: quasi-Newton from one sign cannot see the
    other, so both are tried. A column without other elements (the last of a term, or an
    uncorrelated one) makes the deviance even in its diagonal element: the gradient there is 0
    on the face whether the face is a minimum or not, and quasi-Newton stops on it."""
    rows, columns = theta_positions(pattern)
    starts = []
    for position in diagonal:
        if theta[position] > 0:
            continue
        below = [i for i in range(len(theta)) if columns[i] == columns[position] and rows[i] > columns[i]]
        # Below-diagonal elements at 0 (or none) make both signs the same start.
        signs = (1.0, -1.0) if below and np.max(np.abs(theta[below])) > 1e-8 else (1.0,)
        for sign in signs:
            start = theta.copy()
            start[position] = NEAR_BOUNDARY
            start[below] = sign * np.abs(theta[below])
            starts.append(start)
    return starts


def _newton_finish(objective, best: tuple[float, np.ndarray], diagonal: list[int]) -> np.ndarray:
    """A few Newton steps on the parameters off their bounds, with the Hessian from central
    differences of the analytic gradient: quasi-Newton stops where the deviance no longer
    resolves a step, Newton on the gradient goes on to its zero (what makes fits of slightly
    different data, or of shifted data, agree to many more digits). The Hessian is kept while
    its steps are accepted (near the optimum it changes less than its own difference error),
    so most steps cost one gradient instead of 2 per parameter."""
    value, theta = best
    gradient, hessian, free = objective(theta)[1], None, None
    for _ in range(6):
        now_free = [i for i in range(len(theta)) if i not in diagonal or theta[i] > 0]
        if not now_free:
            break
        fresh = hessian is None or now_free != free
        if fresh:
            free, hessian = now_free, _difference_hessian(objective, theta, now_free, diagonal)
            if hessian is None:
                break
        step = np.zeros_like(theta)
        step[free] = -np.linalg.solve(hessian, gradient[free])
        trial = theta + step
        trial[diagonal] = np.maximum(trial[diagonal], 0.0)
        trial_value, trial_gradient = objective(trial)
        # Near the optimum the deviance changes below its rounding: the gradient decides there.
        resolution = 1e-13 * max(1.0, abs(value))
        smaller = np.linalg.norm(trial_gradient[free]) < np.linalg.norm(gradient[free])
        if not (trial_value <= value or (smaller and trial_value <= value + resolution)):
            if fresh:
                break
            hessian = None  # a kept Hessian failed: one more try with a new one at this point
            continue
        value, theta, gradient = min(value, trial_value), trial, trial_gradient
        if np.max(np.abs(step)) < 1e-12:
            break
    return theta


def _difference_hessian(objective, theta: np.ndarray, free: list[int], diagonal: list[int]) -> np.ndarray | None:
    """The Hessian on the free parameters by central differences of the gradient (forward at a
    bound); None unless finite and positive definite."""
    hessian = np.empty((len(free), len(free)))
    for column, i in enumerate(free):
        h = 1e-5 * max(abs(theta[i]), 1e-2)
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        if i in diagonal and down[i] < 0:
            down[i] = theta[i]
        hessian[:, column] = (objective(up)[1][free] - objective(down)[1][free]) / (up[i] - down[i])
    hessian = (hessian + hessian.T) / 2
    if not np.all(np.isfinite(hessian)) or np.linalg.eigvalsh(hessian).min() <= 0:
        return None
    return hessian


# ------------------------------------------------------------------ the fit


def covariance_from_hessian(h: np.ndarray, warnings: list[str]) -> np.ndarray:
    """The asymptotic covariance of (theta, sigma), 2 H^-1 for the deviance's Hessian H, over its
    positive eigen-directions (a boundary fit has a flat one); a negative eigenvalue is a warning."""
    h = (h + h.T) / 2
    values, vectors = np.linalg.eigh(h)
    if np.any(values < -1e-8):
        warnings.append(
            f"Hessian of the deviance has {int(np.sum(values < -1e-8))} negative eigenvalue(s): "
            "the fit may not have converged"
        )
    keep = values > 1e-8
    return 2 * (vectors[:, keep] / values[keep]) @ vectors[:, keep].T


@dataclass
class LmmFit:
    """A fitted model: estimates, variance components, likelihood and inference on demand.

    theta, beta, vcov, sigma2 and the deviance are in the data's own coordinates (as lme4
    reports them); inference is computed in the scaled coordinates (`scaled`) and mapped back.
    """

    cp: CrossProducts
    reml: bool
    theta: np.ndarray
    beta: np.ndarray
    sigma2: float
    vcov: np.ndarray
    deviance: float
    scaled: Scaled
    lam_internal: np.ndarray
    sigma2_internal: float
    vcov_internal: np.ndarray
    warnings: list[str] = field(default_factory=list)
    singular_tolerance: float = SINGULAR_TOLERANCE

    @property
    def method(self) -> str:
        return "REML" if self.reml else "ML"

    @property
    def names(self) -> list[str]:
        return list(self.cp.x_names)

    @property
    def n(self) -> int:
        return self.cp.n_total

    @property
    def k(self) -> int:
        return self.cp.k

    @property
    def pattern(self) -> np.ndarray:
        return self.scaled.pattern

    @property
    def random_covariance(self) -> np.ndarray:
        """sigma2 Lambda Lambda': the covariance of the random effects."""
        factor = self.scaled.relative_factor(self.lam_internal)
        return self.sigma2 * factor @ factor.T

    @property
    def is_singular(self) -> bool:
        """lme4's isSingular: a diagonal element of Lambda at (near) its bound 0, which also
        covers correlations of +-1 (a rank-deficient random-effect covariance)."""
        return bool(np.any(self.theta[diagonal_positions(self.pattern)] < self.singular_tolerance))

    @property
    def loglik(self) -> float:
        return -0.5 * self.deviance

    @property
    def n_parameters(self) -> int:
        return self.cp.p + len(self.theta) + 1

    @property
    def aic(self) -> float:
        return self.deviance + 2 * self.n_parameters

    @property
    def bic(self) -> float:
        return self.deviance + self.n_parameters * np.log(self.n)

    @property
    def _internal(self) -> tuple[float, np.ndarray]:
        """(sigma2, cov(beta)) in the scaled coordinates."""
        return self.sigma2_internal, self.vcov_internal

    # -------------------------------------------------------------- Satterthwaite

    @cached_property
    def _satterthwaite_parts(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """(covariance of (theta, sigma), d cov(beta) / d (theta, sigma)) in the scaled
        coordinates, as lmerTest's as_lmerModLT: 2 H^-1 from the observed Hessian H of the
        deviance, inverted on its eigenvalues above 1e-8 (zero ones dropped, as lmerTest).
        The df they give are invariant to the reparametrization."""
        cp, pattern = self.scaled.cp, self.pattern
        theta = self.lam_internal[theta_positions(pattern)]
        q_theta = len(theta)
        sigma2 = self._internal[0]
        point = np.concatenate([theta, [np.sqrt(sigma2)]])
        # The Hessian as the Jacobian of the analytic gradient: differences of values (lmerTest's
        # numDeriv::hessian) lose half the digits to rounding where theta is small.
        columns = numderiv.jacobian(lambda v: deviance_at_gradient(cp, pattern, v, self.reml), point)
        covariance = covariance_from_hessian(np.column_stack(columns), self.warnings)

        def covbeta(v: np.ndarray) -> np.ndarray:
            return v[-1] ** 2 * np.linalg.inv(evaluate(cp, relative_factor(v[:q_theta], pattern)).xvx)

        return covariance, numderiv.jacobian(covbeta, point)

    def satterthwaite_df(self, contrast: np.ndarray) -> float:
        covariance, jacobian = self._satterthwaite_parts
        vector = self.scaled.contrast(np.asarray(contrast, float))
        variance = float(vector @ self._internal[1] @ vector)
        gradient = np.array([vector @ j @ vector for j in jacobian])
        denominator = float(gradient @ covariance @ gradient)
        return float(2 * variance**2 / denominator) if denominator > 0 else np.inf

    # -------------------------------------------------------------- Kenward-Roger

    @cached_property
    def _kenward_roger_parts(self) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """(adjusted covariance Phi_A, P_r, W) as pbkrtest's vcovAdj, in the scaled coordinates."""
        sigma2, covariance = self._internal
        return kenward_roger_parts(self.scaled.cp, self.lam_internal, self.pattern, sigma2, covariance)

    def kenward_roger(self, contrast: np.ndarray) -> tuple[float, float]:
        """(adjusted variance of L beta, df) for one contrast, as pbkrtest's Lb_ddf."""
        adjusted, p_list, w = self._kenward_roger_parts
        vector = self.scaled.contrast(np.asarray(contrast, float))
        variance = self.scaled.y_scale**2 * float(vector @ adjusted @ vector)
        return variance, kenward_roger_df(vector[None, :], self._internal[1], p_list, w)

    # -------------------------------------------------------------- contrasts

    def contrast(self, contrast, ddf: str = "satterthwaite", level: float = 0.95) -> dict:
        """Estimate, SE, df, t, p and t-based CI of L beta (L a vector over the fixed effects)."""
        from ..probabilities import t_quantile, t_sf  # scipy.special: only inference needs it

        vector = np.asarray(contrast, float)
        estimate = float(vector @ self.beta)
        if ddf == "kenward_roger" and self.reml:
            variance, df = self.kenward_roger(vector)
            inference = "t (Kenward-Roger)"
        else:
            variance, df = float(vector @ self.vcov @ vector), self.satterthwaite_df(vector)
            inference = "t (Satterthwaite)"
            if ddf == "kenward_roger":
                inference += "; Kenward-Roger needs REML, Satterthwaite used for this ML fit"
        se = float(np.sqrt(variance))
        crit = t_quantile(0.5 + level / 2, df)
        return {
            "estimate": estimate, "se": se, "df": df, "t": estimate / se,
            "p_value": float(2 * t_sf(abs(estimate / se), df)),
            "ci_low": estimate - crit * se, "ci_high": estimate + crit * se, "inference": inference,
        }  # fmt: skip


def fit_lmm(cp: CrossProducts, reml: bool = True, singular_tolerance: float = SINGULAR_TOLERANCE) -> LmmFit:
    if cp.n_total <= cp.p:
        raise NotEstimable(f"{cp.n_total} observations for {cp.p} fixed effects")
    scaled = scaled_problem(cp)
    internal = scaled.cp
    if np.linalg.matrix_rank(internal.xtx.sum(axis=0)) < cp.p:
        raise NotEstimable("fixed-effects design is not of full rank")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # trial points with a non-finite deviance are rejected
        if cp.q == 1:
            theta = _minimize_one(internal, reml)
        else:
            theta = _minimize_many(internal, scaled.pattern, reml)
    lam = relative_factor(theta, scaled.pattern)
    pieces = evaluate(internal, lam)
    dof = cp.n_total - cp.p if reml else cp.n_total
    sigma2_internal = pieces.r2 / dof
    fit = LmmFit(
        cp, reml, lme4_theta(scaled.relative_factor(lam), scaled.pattern), scaled.beta(pieces.beta),
        scaled.y_scale**2 * sigma2_internal, scaled.fixed_covariance(sigma2_internal * np.linalg.inv(pieces.xvx)),
        scaled.deviance(_criterion(internal, pieces, reml), reml), scaled, lam, sigma2_internal,
        sigma2_internal * np.linalg.inv(pieces.xvx), [], singular_tolerance,
    )  # fmt: skip
    if fit.is_singular:
        fit.warnings.append(
            "singular fit: a random-effect variance is estimated at 0 or a correlation at +-1 (lme4 isSingular)"
        )
    return fit


# ------------------------------------------------------------------ Kenward-Roger pieces


def _indicators(pattern: np.ndarray) -> list[np.ndarray]:
    """dD/dgamma for D's free elements (the pattern of Lambda), column by column (pbkrtest's order)."""
    out = []
    for row, column in zip(*theta_positions(pattern)):
        e = np.zeros(pattern.shape)
        e[row, column] = e[column, row] = 1.0
        out.append(e)
    return out


def kenward_roger_parts(
    cp: CrossProducts, lam: np.ndarray, pattern: np.ndarray, sigma2: float, phi: np.ndarray, indicators=None
):
    """pbkrtest's vcovAdj_internal with Sigma_g = Z_g D Z_g' + sigma2 I, G_r = Z_g E_r Z_g'
    (random) and I (residual). With S = Sigma^-1 = (I - Z A Z') / sigma2 per group and
    B = I - A Z'Z: S^m Z = Z B^m / sigma2^m and S^m X = (X - Z C_m) / sigma2^m, with
    C_1 = A Z'X, C_(m+1) = A Z'X + B C_m, so every trace and product reduces to blocks.
    `indicators` (dD/dgamma per covariance parameter) default to one per free element of D."""
    s = sigma2
    a = evaluate(cp, lam).a
    ztz, ztx, xtx = cp.ztz, cp.ztx, cp.xtx
    xtz = np.swapaxes(ztx, 1, 2)
    q = cp.q
    b = np.eye(q) - a @ ztz
    c1 = a @ ztx
    c2 = c1 + b @ c1
    c3 = c1 + b @ c2
    k_xz = xtz @ b / s  # X'SZ
    k_zz = ztz @ b / s  # Z'SZ
    z_ssx = np.swapaxes(b @ b, 1, 2) @ ztx / s**2  # Z'SSX
    z_ssz = ztz @ b @ b / s**2  # Z'SSZ
    x_ssx = (xtx - xtz @ c2).sum(axis=0) / s**2
    x_sssx = (xtx - xtz @ c3).sum(axis=0) / s**3
    az = a @ ztz
    trace_ss = float((cp.n - 2 * np.trace(az, axis1=1, axis2=2) + np.einsum("kij,kji->k", az, az)).sum()) / s**2
    e = _indicators(pattern) if indicators is None else indicators
    n_random = len(e)
    total = n_random + 1
    p_list = [-np.einsum("kpi,ij,kqj->pq", k_xz, er, k_xz) for er in e] + [-x_ssx]
    q_mat: dict[tuple[int, int], np.ndarray] = {}
    k_tr = np.zeros((total, total))
    for r in range(n_random):
        for t in range(n_random):
            q_mat[r, t] = np.einsum("kpi,ij,kjl,lm,kqm->pq", k_xz, e[r], k_zz, e[t], k_xz)
            k_tr[r, t] = float(np.einsum("ij,kjl,lm,kmi->", e[r], k_zz, e[t], k_zz))
        q_mat[r, n_random] = np.einsum("kpi,ij,kjq->pq", k_xz, e[r], z_ssx)
        q_mat[n_random, r] = q_mat[r, n_random].T
        k_tr[r, n_random] = k_tr[n_random, r] = float(np.einsum("ij,kji->", e[r], z_ssz))
    q_mat[n_random, n_random] = x_sssx
    k_tr[n_random, n_random] = trace_ss
    ie2 = np.zeros((total, total))
    for r in range(total):
        for t in range(total):
            ie2[r, t] = k_tr[r, t] - 2 * np.sum(phi * q_mat[r, t]) + np.sum((phi @ p_list[r]) * (p_list[t] @ phi))
    smallest = np.min(np.abs(np.linalg.eigvalsh(ie2)))
    w = 2 * (np.linalg.inv(ie2) if smallest > 1e-10 else np.linalg.pinv(ie2))
    u = np.zeros_like(phi)
    for r in range(total):
        for t in range(total):
            u += w[r, t] * (q_mat[r, t] - p_list[r] @ phi @ p_list[t])
    adjusted = phi + 2 * phi @ u @ phi
    return adjusted, p_list, w


def kenward_roger_df(contrast: np.ndarray, v0: np.ndarray, p_list: list[np.ndarray], w: np.ndarray) -> float:
    """Denominator df for H0: L beta = 0 (Kenward & Roger 1997), as pbkrtest's Lb_ddf."""
    theta_m = contrast.T @ np.linalg.solve(contrast @ v0 @ contrast.T, contrast)
    a1 = a2 = 0.0
    total = len(p_list)
    for i in range(total):
        ui = theta_m @ v0 @ p_list[i] @ v0
        for j in range(i, total):
            uj = theta_m @ v0 @ p_list[j] @ v0
            weight = 1.0 if i == j else 2.0
            a1 += weight * w[i, j] * np.trace(ui) * np.trace(uj)
            a2 += weight * w[i, j] * np.sum(ui * uj.T)
    q = contrast.shape[0]
    b = (a1 + 6 * a2) / (2 * q)
    g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
    c1 = g / (3 * q + 2 * (1 - g))
    c2 = (q - g) / (3 * q + 2 * (1 - g))
    c3 = (q + 2 - g) / (3 * q + 2 * (1 - g))
    v0_ = 1 + c1 * b
    v1 = 1 - c2 * b
    v2 = 1 - c3 * b
    v0_ = 0.0 if abs(v0_) < 1e-10 else v0_
    ratio = 1.0 if abs(1 - a2 / q) < 1e-14 and abs(v1) < 1e-14 else (1 - a2 / q) / v1
    rho = ratio**2 * v0_ / (q * v2)
    return float(4 + (q + 2) / (q * rho - 1))
