"""Two-level normal imputation draws: a random study intercept and a residual variance per study.

Model (Kasim & Raudenbush 1998, the model of mice's `2l.norm` with only the intercept random):

  y_ij = x_ij beta + u_j + e_ij,   u_j ~ N(0, tau2),   e_ij ~ N(0, sigma2_j),
  1/sigma2_j ~ Gamma(shape 1/(2 theta), scale 2 theta/sigma2_0)  (variances shrunk towards sigma2_0)

with the priors and hyperparameter steps of mice.impute.2l.norm (flat on beta, its Wishart step
with n_studies - 2 df for 1/tau2, its Gamma steps for 1/sigma2_j, sigma2_0 and theta). As mice,
each draw runs a fresh Gibbs chain of 100 iterations from the same start and imputes from the last
state. Written here because mice's 2l.norm makes every predictor a random coefficient (its note:
type-1 fixed effects are not handled), whose Wishart step needs more studies than an IPD
meta-analysis has; with the intercept as the only random term the steps are those of mice with
beta drawn by generalized least squares.
"""

from __future__ import annotations

import numpy as np

from .draws import independent_columns

GIBBS_ITERATIONS = 100  # mice.impute.2l.norm's n.iter
# 1/tau2 has a chi-square posterior with n_studies - 2 df: below 3 df the posterior of tau2 has
# no mean, so the imputations would be dominated by the prior's tail
MINIMUM_STUDIES = 5


def two_level_draw(
    rng: np.random.Generator,
    x_obs: np.ndarray,
    y_obs: np.ndarray,
    study_obs: np.ndarray,
    x_mis: np.ndarray,
    study_mis: np.ndarray,
    iterations: int = GIBBS_ITERATIONS,
) -> np.ndarray:
    """Imputations of the rows x_mis (studies study_mis, integer codes 0..J-1, each with observed
    rows) from one Gibbs chain over the observed rows. Column 0 of x is the intercept."""
    keep = independent_columns(x_obs)
    x_obs, x_mis = x_obs[:, keep], x_mis[:, keep]
    studies = int(study_obs.max()) + 1
    sizes = np.bincount(study_obs, minlength=studies).astype(float)
    # per-study cross-products: the scores are standardized and age is bounded by the schema (16-80), so
    # little cancels here (attack7 finding 6: age + 1e8 would be dropped as collinear with the intercept)
    cross = np.einsum("ij,ik->ijk", x_obs, x_obs)
    xtx = np.stack([cross[study_obs == j].sum(axis=0) for j in range(studies)])
    xty = np.stack([x_obs[study_obs == j].T @ y_obs[study_obs == j] for j in range(studies)])
    xt1 = np.stack([x_obs[study_obs == j].sum(axis=0) for j in range(studies)])
    beta, u = np.zeros(x_obs.shape[1]), np.zeros(studies)
    inv_tau2, inv_sigma2, sigma2_0, theta = 1.0, np.ones(studies), 1.0, 1.0
    for _ in range(iterations):
        precision = np.einsum("j,jkl->kl", inv_sigma2, xtx)
        chol = np.linalg.cholesky(precision)
        mean = np.linalg.solve(precision, inv_sigma2 @ (xty - u[:, None] * xt1))
        beta = mean + np.linalg.solve(chol.T, rng.standard_normal(len(beta)))
        residual = y_obs - x_obs @ beta
        sums = np.bincount(study_obs, weights=residual, minlength=studies)
        u_precision = sizes * inv_sigma2 + inv_tau2
        u = inv_sigma2 * sums / u_precision + rng.standard_normal(studies) / np.sqrt(u_precision)
        inv_tau2 = rng.chisquare(studies - 2) / (u @ u)  # mice's Wishart with 1 x 1 scale
        squares = np.bincount(study_obs, weights=(residual - u[study_obs]) ** 2, minlength=studies)
        inv_sigma2 = rng.gamma(sizes / 2 + 1 / (2 * theta), 2 * theta / (squares * theta + sigma2_0))
        harmonic = 1 / inv_sigma2.mean()
        sigma2_0 = rng.gamma(studies / (2 * theta) + 1, 2 * theta * harmonic / studies)
        log_geometric = np.mean(-np.log(inv_sigma2))
        rate = studies * (sigma2_0 / harmonic - np.log(sigma2_0) + log_geometric - 1) / 2
        theta = 1 / rng.gamma(studies / 2 - 1, 1 / rate)
    noise = rng.standard_normal(len(x_mis)) / np.sqrt(inv_sigma2[study_mis])
    return x_mis @ beta + u[study_mis] + noise
