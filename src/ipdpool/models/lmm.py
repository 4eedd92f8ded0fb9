"""Linear mixed models with one grouping factor, fitted exactly from per-group cross-products.

Model: y = X beta + Z b + e, b_g ~ N(0, sigma2 Lambda Lambda') per group, e ~ N(0, sigma2 I).
As in lme4 (Bates, Maechler, Bolker & Walker 2015, J Stat Softw 67(1), section 3), Lambda is
lower triangular with parameter theta (its lower triangle, column by column; diagonal >= 0),
beta and sigma2 are profiled out, and the profiled deviance is minimized over theta:
    ML:   log|L|^2 + n (1 + log(2 pi r2 / n))
    REML: log|L|^2 + log|R_X|^2 + (n - p) (1 + log(2 pi r2 / (n - p)))
with L_g L_g' = Lambda' Z_g'Z_g Lambda + I per group, R_X'R_X = X'X - sum_g R_ZX,g' R_ZX,g,
R_ZX,g = L_g^-1 Lambda' Z_g'X_g and r2 the penalized residual sum of squares. Every term is a
sum over groups of q x q, q x p and p x p blocks (crossprod.CrossProducts), so a fit costs
O(k (p + q)^3) after the cross-products, and never touches rows.

Inference follows lmerTest (Kuznetsova, Brockhoff & Christensen 2017): Satterthwaite df
from the observed Hessian of the deviance in (theta, sigma) and the Jacobian of cov(beta),
both numerical as lmerTest takes them; and pbkrtest (Halekoh & Hojsgaard 2014) for the
Kenward-Roger (1997) adjusted covariance and df, with the expected information.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import optimize

from ..probabilities import t_quantile, t_sf
from . import NotEstimable, numderiv
from .crossprod import CrossProducts

SINGULAR_TOLERANCE = 1e-4  # lme4's isSingular default, on theta
DDF_METHODS = ("satterthwaite", "kenward_roger")


def theta_size(q: int) -> int:
    return q * (q + 1) // 2


def diagonal_positions(q: int) -> list[int]:
    """Positions of Lambda's diagonal in theta (lower triangle, column-major, as lme4)."""
    positions, index = [], 0
    for column in range(q):
        positions.append(index)
        index += q - column
    return positions


def relative_factor(theta: np.ndarray, q: int) -> np.ndarray:
    lam = np.zeros((q, q))
    index = 0
    for column in range(q):
        for row in range(column, q):
            lam[row, column] = theta[index]
            index += 1
    return lam


@dataclass(frozen=True)
class Pieces:
    """Everything at one theta: the profiled quantities and the per-group blocks reused by inference."""

    log_det_l2: float
    xvx: np.ndarray  # X' H^-1 X, with V = sigma2 H
    xvy: np.ndarray
    yvy: float
    beta: np.ndarray
    r2: float  # penalized residual sum of squares
    log_det_rx2: float
    a: np.ndarray  # (k, q, q): Lambda M^-1 Lambda', H_g^-1 = I - Z_g A_g Z_g'


def evaluate(cp: CrossProducts, theta: np.ndarray) -> Pieces:
    lam = relative_factor(np.asarray(theta, float), cp.q)
    ztz, ztx, zty = cp.ztz, cp.ztx, cp.zty
    if cp.q == 1:  # scalar per group: the same algebra without batched linear algebra (10x faster)
        m = 1.0 + lam[0, 0] ** 2 * ztz[:, 0, 0]
        a = (lam[0, 0] ** 2 / m)[:, None, None]
        log_det_l2 = float(np.log(m).sum())
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
    rx = np.linalg.cholesky(xvx)
    beta = np.linalg.solve(xvx, xvy)
    r2 = yvy - float(beta @ xvy)
    log_det_rx2 = 2.0 * float(np.log(np.diag(rx)).sum())
    return Pieces(log_det_l2, xvx, xvy, yvy, beta, r2, log_det_rx2, a)


def profiled_deviance(cp: CrossProducts, theta: np.ndarray, reml: bool) -> float:
    try:
        pieces = evaluate(cp, theta)
    except np.linalg.LinAlgError:
        return np.inf
    if pieces.r2 <= 0:
        return np.inf
    dof = cp.n_total - cp.p if reml else cp.n_total
    value = pieces.log_det_l2 + dof * (1 + np.log(2 * np.pi * pieces.r2 / dof))
    return float(value + pieces.log_det_rx2) if reml else float(value)


def deviance_at(cp: CrossProducts, theta: np.ndarray, sigma: float, reml: bool) -> float:
    """Deviance at (theta, sigma), beta profiled (lmerTest's devfun_vp): the function whose
    Hessian gives the Satterthwaite covariance of the variance parameters."""
    pieces = evaluate(cp, theta)
    s2 = sigma**2
    value = pieces.log_det_l2 + pieces.r2 / s2 + cp.n_total * np.log(2 * np.pi * s2)
    if reml:
        value += pieces.log_det_rx2 - cp.p * np.log(2 * np.pi * s2)
    return float(value)


# ------------------------------------------------------------------ optimization


def _minimize_one(cp: CrossProducts, reml: bool) -> np.ndarray:
    """q = 1: a grid over log theta brackets the global minimum, Brent refines it, and
    theta = 0 (no between-group variance) is tried explicitly."""
    grid = np.linspace(-12.0, 8.0, 81)
    values = [profiled_deviance(cp, np.array([np.exp(u)]), reml) for u in grid]
    best = int(np.argmin(values))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    found = optimize.minimize_scalar(
        lambda u: profiled_deviance(cp, np.array([np.exp(u)]), reml),
        bounds=(low, high), method="bounded", options={"xatol": 1e-12},
    )  # fmt: skip
    candidates = [np.array([np.exp(found.x)]), np.array([np.exp(grid[best])]), np.array([0.0])]
    return min(candidates, key=lambda t: profiled_deviance(cp, t, reml))


def _minimize_many(cp: CrossProducts, reml: bool) -> np.ndarray:
    """q > 1: bounded quasi-Newton from several starts and with every pattern of zero
    diagonal elements (the singular fits lme4 reports) imposed, then the best point polished
    by Nelder-Mead (lme4 itself ends with a derivative-free optimizer)."""
    size, diagonal = theta_size(cp.q), diagonal_positions(cp.q)
    bounds = [(0.0, None) if i in diagonal else (None, None) for i in range(size)]

    def objective(theta: np.ndarray) -> float:
        return profiled_deviance(cp, theta, reml)

    def search(start: np.ndarray, fixed_zero: tuple[int, ...] = ()) -> np.ndarray:
        box = [(0.0, 0.0) if i in fixed_zero else bounds[i] for i in range(size)]
        start = np.where(np.isin(np.arange(size), fixed_zero), 0.0, start)
        return optimize.minimize(
            objective, start, method="L-BFGS-B", bounds=box, options={"ftol": 1e-14, "gtol": 1e-9}
        ).x

    identity = np.zeros(size)
    identity[diagonal] = 1.0
    rng = np.random.default_rng(20210901)  # fixed: the same data always give the same fit
    starts = [identity, 0.1 * identity, 3.0 * identity]
    starts += [np.where(np.isin(np.arange(size), diagonal), np.abs(v), v) for v in rng.normal(0, 1, (2, size))]
    candidates = [search(start) for start in starts]
    for count in range(1, cp.q + 1):
        candidates += [search(identity, zero) for zero in itertools.combinations(diagonal, count)]
    best = min(candidates, key=objective)
    polished = optimize.minimize(
        objective, best, method="Nelder-Mead", bounds=bounds, options={"xatol": 1e-10, "fatol": 1e-12, "maxfev": 4000}
    )
    return polished.x if polished.fun <= objective(best) else best


# ------------------------------------------------------------------ the fit


@dataclass
class LmmFit:
    """A fitted model: estimates, variance components, likelihood and inference on demand."""

    cp: CrossProducts
    reml: bool
    theta: np.ndarray
    beta: np.ndarray
    sigma2: float
    vcov: np.ndarray
    deviance: float
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
    def random_covariance(self) -> np.ndarray:
        """sigma2 Lambda Lambda': the covariance of the random effects."""
        lam = relative_factor(self.theta, self.cp.q)
        return self.sigma2 * lam @ lam.T

    @property
    def is_singular(self) -> bool:
        """lme4's isSingular: a diagonal element of Lambda at (near) its bound 0, which also
        covers correlations of +-1 (a rank-deficient random-effect covariance)."""
        return bool(np.any(self.theta[diagonal_positions(self.cp.q)] < self.singular_tolerance))

    @property
    def loglik(self) -> float:
        return -0.5 * self.deviance

    @property
    def n_parameters(self) -> int:
        return self.cp.p + theta_size(self.cp.q) + 1

    @property
    def aic(self) -> float:
        return self.deviance + 2 * self.n_parameters

    @property
    def bic(self) -> float:
        return self.deviance + self.n_parameters * np.log(self.n)

    # -------------------------------------------------------------- Satterthwaite

    @cached_property
    def _satterthwaite_parts(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """(covariance of (theta, sigma), d cov(beta) / d (theta, sigma)), as lmerTest's
        as_lmerModLT: 2 H^-1 from the observed Hessian H of the deviance, inverted on its
        eigenvalues above 1e-8 (zero ones dropped, as lmerTest)."""
        q_theta = len(self.theta)
        point = np.concatenate([self.theta, [np.sqrt(self.sigma2)]])
        h = numderiv.hessian(lambda v: deviance_at(self.cp, v[:-1], v[-1], self.reml), point)
        values, vectors = np.linalg.eigh(h)
        if np.any(values < -1e-8):
            self.warnings.append(
                f"Hessian of the deviance has {int(np.sum(values < -1e-8))} negative eigenvalue(s): "
                "the fit may not have converged"
            )
        keep = values > 1e-8
        covariance = 2 * (vectors[:, keep] / values[keep]) @ vectors[:, keep].T

        def covbeta(v: np.ndarray) -> np.ndarray:
            return v[-1] ** 2 * np.linalg.inv(evaluate(self.cp, v[:q_theta]).xvx)

        return covariance, numderiv.jacobian(covbeta, point)

    def satterthwaite_df(self, contrast: np.ndarray) -> float:
        covariance, jacobian = self._satterthwaite_parts
        variance = float(contrast @ self.vcov @ contrast)
        gradient = np.array([contrast @ j @ contrast for j in jacobian])
        denominator = float(gradient @ covariance @ gradient)
        return float(2 * variance**2 / denominator) if denominator > 0 else np.inf

    # -------------------------------------------------------------- Kenward-Roger

    @cached_property
    def _kenward_roger_parts(self) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """(adjusted covariance Phi_A, P_r, W) as pbkrtest's vcovAdj, from per-group blocks."""
        return kenward_roger_parts(self.cp, self.theta, self.sigma2, self.vcov)

    def kenward_roger(self, contrast: np.ndarray) -> tuple[float, float]:
        """(adjusted variance of L beta, df) for one contrast, as pbkrtest's Lb_ddf."""
        adjusted, p_list, w = self._kenward_roger_parts
        return float(contrast @ adjusted @ contrast), kenward_roger_df(contrast[None, :], self.vcov, p_list, w)

    # -------------------------------------------------------------- contrasts

    def contrast(self, contrast, ddf: str = "satterthwaite", level: float = 0.95) -> dict:
        """Estimate, SE, df, t, p and t-based CI of L beta (L a vector over the fixed effects)."""
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
    if np.linalg.matrix_rank(cp.xtx.sum(axis=0)) < cp.p:
        raise NotEstimable("fixed-effects design is not of full rank")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # trial points with a non-finite deviance are rejected
        theta = _minimize_one(cp, reml) if cp.q == 1 else _minimize_many(cp, reml)
    pieces = evaluate(cp, theta)
    dof = cp.n_total - cp.p if reml else cp.n_total
    sigma2 = pieces.r2 / dof
    fit = LmmFit(
        cp, reml, theta, pieces.beta, sigma2, sigma2 * np.linalg.inv(pieces.xvx), profiled_deviance(cp, theta, reml),
        [], singular_tolerance,
    )  # fmt: skip
    if fit.is_singular:
        fit.warnings.append(
            "singular fit: a random-effect variance is estimated at 0 or a correlation at +-1 (lme4 isSingular)"
        )
    return fit


# ------------------------------------------------------------------ Kenward-Roger pieces


def _indicators(q: int) -> list[np.ndarray]:
    """dD/dgamma for D's lower-triangle elements, column by column (pbkrtest's order)."""
    out = []
    for column in range(q):
        for row in range(column, q):
            e = np.zeros((q, q))
            e[row, column] = e[column, row] = 1.0
            out.append(e)
    return out


def kenward_roger_parts(cp: CrossProducts, theta: np.ndarray, sigma2: float, phi: np.ndarray):
    """pbkrtest's vcovAdj_internal with Sigma_g = Z_g D Z_g' + sigma2 I, G_r = Z_g E_r Z_g'
    (random) and I (residual). With S = Sigma^-1 = (I - Z A Z') / sigma2 per group and
    B = I - A Z'Z: S^m Z = Z B^m / sigma2^m and S^m X = (X - Z C_m) / sigma2^m, with
    C_1 = A Z'X, C_(m+1) = A Z'X + B C_m, so every trace and product reduces to blocks."""
    s = sigma2
    a = evaluate(cp, theta).a
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
    e = _indicators(q)
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
