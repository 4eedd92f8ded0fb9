"""Random-intercept linear mixed model: GLS, Satterthwaite degrees of freedom, boundary safety.

Variance components (tau2 between studies, sigma2 residual) come from statsmodels
MixedLM. Everything that follows from them is computed here from per-study
sufficient statistics, because statsmodels gives z-based inference only and, when
tau2 is estimated at zero, can return 0.0 for the intercept and study-level
coefficients while reporting convergence (statsmodels issue 10239).

Within study i (n_i rows), V_i = sigma2 I + tau2 J. With the orthogonal projectors
Q = I - J/n and R = J/n, V_i^-1 = Q / sigma2 + R / (sigma2 + n tau2), and every
product of I, J and V^-1 is a Q + b R, so all traces and cross-products reduce to
sums over studies of p x p matrices (linear in the number of rows).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import statsmodels.api as sm
from scipy import optimize, stats


@dataclass
class Blocks:
    """Per-study sufficient statistics of (X, y)."""

    n: np.ndarray  # (k,)
    xtx: np.ndarray  # (k, p, p)
    xs: np.ndarray  # (k, p): X_i' 1
    xty: np.ndarray  # (k, p)
    ys: np.ndarray  # (k,): 1' y_i
    yty: np.ndarray  # (k,)


def blocks(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Blocks:
    labels, index = np.unique(groups, return_inverse=True)
    k, p = len(labels), x.shape[1]
    n = np.bincount(index, minlength=k).astype(float)
    xtx = np.zeros((k, p, p))
    xs = np.zeros((k, p))
    xty = np.zeros((k, p))
    order = np.argsort(index, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(n).astype(int)])
    for i in range(k):
        rows = order[bounds[i] : bounds[i + 1]]
        xi, yi = x[rows], y[rows]
        xtx[i] = xi.T @ xi
        xs[i] = xi.sum(axis=0)
        xty[i] = xi.T @ yi
    ys = np.bincount(index, weights=y, minlength=k)
    yty = np.bincount(index, weights=y * y, minlength=k)
    return Blocks(n, xtx, xs, xty, ys, yty)


def _eigen(b: Blocks, tau2: float, sigma2: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of V_i^-1 on Q (within-study) and R (study mean) parts."""
    return np.full_like(b.n, 1.0 / sigma2), 1.0 / (sigma2 + b.n * tau2)


def _weighted(b: Blocks, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """sum_i X_i' (q_i Q + r_i R) X_i."""
    between = np.einsum("ip,iq->ipq", b.xs, b.xs) / b.n[:, None, None]
    return np.einsum("i,ipq->pq", q, b.xtx - between) + np.einsum("i,ipq->pq", r, between)


def gls(b: Blocks, tau2: float, sigma2: float) -> tuple[np.ndarray, np.ndarray]:
    """Fixed effects and their covariance (X' V^-1 X)^-1 at given variance components."""
    q, r = _eigen(b, tau2, sigma2)
    w = _weighted(b, q, r)
    xvy = np.einsum("i,ip->p", q, b.xty - b.xs * (b.ys / b.n)[:, None]) + np.einsum("i,ip->p", r, b.xs * (b.ys / b.n)[:, None])
    cov = np.linalg.inv(w)
    return cov @ xvy, cov


# Coefficients (on Q, on R) of dV/dtheta for theta = (tau2, sigma2): J = n R, I = Q + R.
def _dv(b: Blocks) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.zeros_like(b.n), b.n), (np.ones_like(b.n), np.ones_like(b.n))]


def variance_information(b: Blocks, tau2: float, sigma2: float, cov: np.ndarray, reml: bool) -> np.ndarray:
    """Expected information of (tau2, sigma2): ML 1/2 tr(V^-1 V_k V^-1 V_l);
    REML 1/2 tr(P V_k P V_l) with P = V^-1 - V^-1 X C X' V^-1 (Harville 1977)."""
    q, r = _eigen(b, tau2, sigma2)
    dv = _dv(b)
    info = np.zeros((2, 2))
    g = [_weighted(b, q * q * aq, r * r * ar) for aq, ar in dv]  # X' V^-1 V_k V^-1 X
    for k in range(2):
        for m in range(2):
            (aqk, ark), (aqm, arm) = dv[k], dv[m]
            trace = np.sum((b.n - 1) * q * q * aqk * aqm + r * r * ark * arm)
            if reml:
                middle = _weighted(b, q**3 * aqk * aqm, r**3 * ark * arm)
                trace += -2 * np.trace(cov @ middle) + np.trace(cov @ g[k] @ cov @ g[m])
            info[k, m] = 0.5 * trace
    return info


def satterthwaite_df(b: Blocks, tau2: float, sigma2: float, cov: np.ndarray, contrast: np.ndarray, reml: bool) -> float:
    """df = 2 (L C L')^2 / (g' A g), g_k = L (dC/dtheta_k) L', A = inverse information
    (Satterthwaite 1946; Giesbrecht & Burns 1985; as in lmerTest, Kuznetsova et al. 2017)."""
    q, r = _eigen(b, tau2, sigma2)
    gradient = np.array([contrast @ cov @ _weighted(b, q * q * aq, r * r * ar) @ cov @ contrast for aq, ar in _dv(b)])
    asymptotic = np.linalg.inv(variance_information(b, tau2, sigma2, cov, reml))
    variance = contrast @ cov @ contrast
    return float(2 * variance**2 / (gradient @ asymptotic @ gradient))


def profile_loglik(b: Blocks, gamma: float, reml: bool, p: int) -> tuple[float, float]:
    """Log-likelihood with sigma2 profiled out, at gamma = tau2 / sigma2; returns (loglik, sigma2).

    V = sigma2 H, H_i = I + gamma J (eigenvalues 1 on Q, 1 + n gamma on R); Harville (1977),
    Pinheiro & Bates (2000, ch. 2): REML adds log|X' H^-1 X| and uses N - p degrees of freedom.
    """
    r = 1.0 / (1.0 + b.n * gamma)
    w = _weighted(b, np.ones_like(b.n), r)
    mean_y = b.ys / b.n
    xhy = np.einsum("ip->p", b.xty - b.xs * mean_y[:, None]) + np.einsum("i,ip->p", r, b.xs * mean_y[:, None])
    yhy = np.sum(b.yty - b.ys * mean_y) + np.sum(r * b.ys * mean_y)
    beta = np.linalg.solve(w, xhy)
    rss = yhy - beta @ xhy
    n_total = b.n.sum()
    dof = n_total - p if reml else n_total
    sigma2 = rss / dof
    logdet_h = np.sum(np.log1p(b.n * gamma))
    value = dof * np.log(sigma2) + logdet_h + dof * (1 + np.log(2 * np.pi))
    if reml:
        value += np.linalg.slogdet(w)[1]
    return -0.5 * float(value), float(sigma2)


def maximize_profile(b: Blocks, reml: bool, p: int) -> float:
    """gamma maximizing the profile likelihood: Brent on log gamma, then the boundary gamma = 0."""
    found = optimize.minimize_scalar(lambda u: -profile_loglik(b, np.exp(u), reml, p)[0], bounds=(-30.0, 10.0), method="bounded", options={"xatol": 1e-10})
    gamma = float(np.exp(found.x))
    return 0.0 if profile_loglik(b, 0.0, reml, p)[0] >= profile_loglik(b, gamma, reml, p)[0] else gamma


@dataclass
class Fit:
    names: list[str]
    beta: np.ndarray
    cov: np.ndarray
    tau2: float
    sigma2: float
    n: int
    k: int
    method: str
    converged: bool
    boundary: bool
    blocks: Blocks
    warnings: list[str] = field(default_factory=list)

    def estimate(self, contrast: np.ndarray) -> dict:
        """Estimate of L beta with t (Satterthwaite, or residual df at the boundary) and z inference."""
        estimate = float(contrast @ self.beta)
        se = float(np.sqrt(contrast @ self.cov @ contrast))
        if self.boundary:
            df = float(self.n - len(self.beta))  # the model is ordinary least squares here
            inference = "t (OLS residual df: between-study variance at the boundary)"
        else:
            df = satterthwaite_df(self.blocks, self.tau2, self.sigma2, self.cov, contrast, self.method == "REML")
            inference = "t (Satterthwaite df)"
        t_crit, z_crit = stats.t.ppf(0.975, df), stats.norm.ppf(0.975)
        return {
            "estimate": estimate,
            "se": se,
            "ci_low": estimate - t_crit * se,
            "ci_high": estimate + t_crit * se,
            "df": df,
            "p_value": float(2 * stats.t.sf(abs(estimate / se), df)),
            "inference": inference,
            "z_ci_low": estimate - z_crit * se,
            "z_ci_high": estimate + z_crit * se,
            "z_p_value": float(2 * stats.norm.sf(abs(estimate / se))),
        }


def fit_random_intercept(x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: list[str], reml: bool = True, boundary_tolerance: float = 1e-6) -> Fit:
    """Fit with statsmodels MixedLM, then check and complete its answer.

    Variance components: statsmodels' optimizer can stop short of the maximum (seen on
    the demo: a non-converged fit 0.07 log-likelihood units below it), so its answer is
    compared with the maximum of the profiled likelihood and the better one is kept
    (a material difference is reported). Boundary: if tau2 <= boundary_tolerance * sigma2
    the model is ordinary least squares with the same fixed effects, so estimates, sigma2
    and the covariance come from OLS and the fit is flagged (statsmodels issue 10239).
    Otherwise the fixed effects are computed by GLS at the variance components, and a
    disagreement with statsmodels' own fixed effects is reported.
    """
    caught: list[str] = []
    p = x.shape[1]
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        result = sm.MixedLM(y, x, groups=groups).fit(reml=reml, method=["powell", "lbfgs"])
    caught += [f"{w.category.__name__}: {w.message}" for w in records]
    b = blocks(x, y, groups)
    sm_sigma2 = float(result.scale)
    sm_gamma = float(np.asarray(result.cov_re)[0, 0]) / sm_sigma2
    sm_loglik = profile_loglik(b, sm_gamma, reml, p)[0]
    gamma = maximize_profile(b, reml, p)
    loglik, sigma2 = profile_loglik(b, gamma, reml, p)
    if loglik < sm_loglik:
        gamma, loglik, sigma2 = sm_gamma, sm_loglik, profile_loglik(b, sm_gamma, reml, p)[1]
    elif loglik - sm_loglik > 1e-4:
        caught.append(f"statsmodels MixedLM stopped short of the {'REML' if reml else 'ML'} maximum (log-likelihood {sm_loglik:.4f} vs {loglik:.4f}, tau2 {sm_gamma * sm_sigma2:.4g} vs {gamma * sigma2:.4g}); the maximum is used")
    tau2 = gamma * sigma2
    fe = np.asarray(result.fe_params)
    boundary = tau2 <= boundary_tolerance * sigma2
    if boundary:
        zeros = [names[j] for j in range(len(fe)) if fe[j] == 0.0]
        if zeros:
            caught.append(f"statsmodels returned exactly 0.0 for {', '.join(zeros)} (statsmodels issue 10239); replaced by OLS")
        beta = np.linalg.lstsq(x, y, rcond=None)[0]
        residual = y - x @ beta
        sigma2 = float(residual @ residual / (len(y) - p)) if reml else float(residual @ residual / len(y))
        tau2, cov = 0.0, sigma2 * np.linalg.inv(x.T @ x)
        caught.append("between-study variance estimated at the boundary (0): fixed effects and SEs from ordinary least squares")
    else:
        beta, cov = gls(b, tau2, sigma2)
        if not np.allclose(beta, fe, rtol=1e-3, atol=1e-4):
            caught.append(f"statsmodels fixed effects differ from GLS at the variance estimates (max difference {np.max(np.abs(beta - fe)):.2g}); GLS used")
    return Fit(names, beta, cov, tau2, sigma2, len(y), len(b.n), "REML" if reml else "ML", bool(result.converged), bool(boundary), b, caught)


def gls_random_effects(x: np.ndarray, y: np.ndarray, groups: np.ndarray, z: np.ndarray, g: np.ndarray, sigma2: float) -> tuple[np.ndarray, np.ndarray]:
    """GLS fixed effects and covariance for V_i = Z_i G Z_i' + sigma2 I (random slopes).

    Woodbury: V_i^-1 = (I - Z_i G (sigma2 I + Z_i'Z_i G)^-1 Z_i') / sigma2, so only q x q
    systems are solved per study and G may be singular.
    """
    p, q = x.shape[1], z.shape[1]
    w, xvy = np.zeros((p, p)), np.zeros(p)
    for study in np.unique(groups):
        rows = groups == study
        xi, yi, zi = x[rows], y[rows], z[rows]
        inner = g @ np.linalg.solve(sigma2 * np.eye(q) + zi.T @ zi @ g, np.eye(q))
        xz, zy = xi.T @ zi, zi.T @ yi
        w += (xi.T @ xi - xz @ inner @ xz.T) / sigma2
        xvy += (xi.T @ yi - xz @ inner @ zy) / sigma2
    cov = np.linalg.inv(w)
    return cov @ xvy, cov
