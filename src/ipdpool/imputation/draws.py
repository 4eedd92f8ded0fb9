"""Bayesian draws of one incomplete variable's imputations, as mice's `norm` and `logreg`.

Both are "proper": the parameters are drawn from their (approximate) posterior before the
missing values are drawn, so the imputations carry the uncertainty of the imputation model
(Rubin 1987; van Buuren 2018, algorithms 3.1 and 3.4). Written here rather than called from a
library because no Python package implements mice's draws; each follows mice's R source
(mice.impute.norm / .norm.draw / estimice, mice.impute.logreg / augment).
"""

from __future__ import annotations

import numpy as np


def independent_columns(x: np.ndarray, tolerance: float = 1e-7) -> np.ndarray:
    """Indices of a maximal set of linearly independent columns of x (first ones kept), as
    mice removes predictors that are constant or collinear in the observed rows."""
    scaled = x / np.sqrt((x**2).sum(axis=0)).clip(min=1e-300)
    singular = np.linalg.svd(scaled, compute_uv=False)
    if len(singular) == x.shape[1] and singular[-1] > tolerance * singular[0]:
        return np.arange(x.shape[1])  # the usual case: one decomposition
    keep: list[int] = []
    for j in range(x.shape[1]):
        singular = np.linalg.svd(scaled[:, keep + [j]], compute_uv=False)
        if singular[-1] > tolerance * singular[0]:
            keep.append(j)
    return np.array(keep, dtype=int)


def norm_draw(rng: np.random.Generator, x_obs: np.ndarray, y_obs: np.ndarray, x_mis: np.ndarray) -> np.ndarray:
    """mice's norm: sigma* = sqrt(RSS / chi2(n - p)), beta* ~ N(beta_hat, sigma*^2 (X'X)^-1),
    imputations x_mis beta* + N(0, sigma*^2)."""
    keep = independent_columns(x_obs)
    x_obs, x_mis = x_obs[:, keep], x_mis[:, keep]
    q, r = np.linalg.qr(x_obs)
    beta = np.linalg.solve(r, q.T @ y_obs)
    residuals = y_obs - x_obs @ beta
    df = max(len(y_obs) - x_obs.shape[1], 1)
    sigma = np.sqrt(residuals @ residuals / rng.chisquare(df))
    r_inv = np.linalg.inv(r)
    # R^-1 z has covariance (X'X)^-1, as mice's t(chol(v)) z
    beta_star = beta + sigma * (r_inv @ rng.standard_normal(x_obs.shape[1]))
    return x_mis @ beta_star + sigma * rng.standard_normal(len(x_mis))


def augment(x_obs: np.ndarray, y_obs: np.ndarray, x_all: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mice's augment(): 2 p k pseudo-observations at mean +- sd/2 of each predictor (over all
    rows, within its range) for each outcome level, of total weight p + 1, so that perfect
    prediction in the observed rows cannot send the logistic fit to infinity (White, Daniel &
    Royston 2010). Predictors exclude the intercept; returns (x, y, weights) with the
    pseudo-rows appended."""
    levels = np.array([0.0, 1.0])
    p = x_obs.shape[1]
    if p == 0:
        return x_obs, y_obs, np.ones(len(y_obs))
    rows = 2 * p * len(levels)
    mean, sd = x_all.mean(axis=0), x_all.std(axis=0, ddof=1)
    steps = np.zeros((rows, p))
    for j in range(p):  # column j: +-0.5 in its own block of 2k rows (R's recycling in augment)
        steps[2 * len(levels) * j : 2 * len(levels) * (j + 1), j] = np.tile([0.5, -0.5], len(levels))
    pseudo = np.clip(mean + steps * sd, x_all.min(axis=0), x_all.max(axis=0))
    pseudo_y = np.tile(np.repeat(levels, 2), p)
    weights = np.concatenate([np.ones(len(y_obs)), np.full(rows, (p + 1) / rows)])
    return np.vstack([x_obs, pseudo]), np.concatenate([y_obs, pseudo_y]), weights


def logistic_fit(x: np.ndarray, y: np.ndarray, weights: np.ndarray, iterations: int = 50) -> tuple:
    """Weighted logistic regression by IRLS (as glm.fit): (beta, unscaled covariance)."""
    beta = np.zeros(x.shape[1])
    for _ in range(iterations):
        eta = x @ beta
        mu = 1 / (1 + np.exp(-eta))
        w = weights * np.clip(mu * (1 - mu), 1e-10, None)
        step = np.linalg.solve(x.T @ (w[:, None] * x), x.T @ (weights * (y - mu)))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10 * (1 + np.max(np.abs(beta))):
            break
    mu = 1 / (1 + np.exp(-(x @ beta)))
    w = weights * mu * (1 - mu)
    return beta, np.linalg.inv(x.T @ (w[:, None] * x))


def logreg_draw(rng: np.random.Generator, x_obs: np.ndarray, y_obs: np.ndarray, x_mis: np.ndarray) -> np.ndarray:
    """mice's logreg for a 0/1 variable: beta* ~ N(beta_hat, V) from the augmented logistic fit,
    imputations 1 where a uniform draw is <= plogis(x_mis beta*). Column 0 is the intercept."""
    keep = independent_columns(x_obs)
    x_obs, x_mis = x_obs[:, keep], x_mis[:, keep]
    xa, ya, weights = augment(x_obs[:, 1:], y_obs, np.vstack([x_obs, x_mis])[:, 1:])
    xa = np.column_stack([np.ones(len(xa)), xa])
    beta, covariance = logistic_fit(xa, ya, weights)
    beta_star = beta + np.linalg.cholesky(covariance) @ rng.standard_normal(len(beta))
    probability = 1 / (1 + np.exp(-(x_mis @ beta_star)))
    return (rng.random(len(x_mis)) <= probability).astype(float)
