"""The testable implication of the IV assumptions for never-takers and always-takers (Kitagawa
2015, Econometrica 83(5):2043-2063; Balke & Pearl 1997).

With Z = randomized to IPS, D = working and Y the outcome: under random assignment, exclusion
(IPS acts on Y only through work) and monotonicity (no one works because they were NOT offered
IPS), the non-workers under IPS are never-takers only, while the non-workers under usual
services are never-takers and compliers. So for every set B of outcome values
    P(Y in B, D = 0 | Z = 1) <= P(Y in B, D = 0 | Z = 0)     (never-takers fit within SAU non-workers)
    P(Y in B, D = 1 | Z = 0) <= P(Y in B, D = 1 | Z = 1)     (always-takers fit within IPS workers)
A violation means that IPS non-workers have more outcomes in some range than the SAU
non-workers can hold: IPS changed never-takers' outcomes (exclusion fails) or some people work
only without IPS (monotonicity fails).

Kitagawa's test (unweighted version, B ranging over intervals): the statistic is
sqrt(m n / N) times the largest violation over intervals and both inequalities; its p-value
comes from resampling the pooled sample (the least favourable null, where both arms share one
distribution). Randomization is within study here, so the probabilities are study-weighted
averages of within-study ones and the resampling is within study. The raw follow-up score is
used: an estimated baseline adjustment would change the test's size, which the bootstrap would
not reflect. The test cannot confirm the assumptions: it detects only violations large enough
to show in the distributions.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP = 999
SEED = 26


def largest_interval_sum(y_sorted: np.ndarray, mass_sorted: np.ndarray) -> float:
    """max over intervals [a, b] of the summed mass of the y inside (0 for the empty interval);
    tied y values are in or out together. Kadane's rule on the cumulative sums at the end of
    each run of ties."""
    cumulative = np.cumsum(mass_sorted)
    ends = np.append(np.flatnonzero(np.diff(y_sorted)), len(y_sorted) - 1)
    at_ends = np.concatenate([[0.0], cumulative[ends]])
    return float(np.max(at_ends - np.minimum.accumulate(at_ends)))


def masses(z: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """Each row's probability mass in its arm's study-weighted distribution: w_s / m_s for IPS,
    w_s / n_s for usual services (w_s the study's share of rows)."""
    out = np.zeros(len(z))
    for stratum in np.unique(strata):
        rows = strata == stratum
        weight = rows.mean()
        for arm in (0, 1):
            chosen = rows & (z == arm)
            out[chosen] = weight / chosen.sum()
    return out


def statistic(y: np.ndarray, d: np.ndarray, z: np.ndarray, mass: np.ndarray) -> float:
    order = np.argsort(y, kind="stable")
    y, d, z, mass = y[order], d[order], z[order], mass[order]
    signed = np.where(z == 1, mass, -mass)  # P(. | Z = 1) - P(. | Z = 0)
    never = largest_interval_sum(y, np.where(d == 0, signed, 0.0))
    always = largest_interval_sum(y, np.where(d == 1, -signed, 0.0))
    m, n = int((z == 1).sum()), int((z == 0).sum())
    return float(np.sqrt(m * n / (m + n)) * max(never, always))


def kitagawa_test(y, d, z, strata, bootstrap: int = BOOTSTRAP, seed: int = SEED) -> tuple[float, float]:
    """(statistic, bootstrap p-value) of the never-taker/always-taker implication; p-values
    below 0.05 say that the assumptions (exclusion, monotonicity) fail. NaN when a study has
    one arm only."""
    y, d, z, strata = (np.asarray(a) for a in (y, d, z, strata))
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    if any(len(np.unique(z[rows])) < 2 for rows in groups):
        return np.nan, np.nan
    mass = masses(z, strata)
    observed = statistic(y, d, z, mass)
    rng = np.random.default_rng(seed)
    exceed = 0
    drawn = np.arange(len(y))
    for _ in range(bootstrap):
        # each study's rows keep their arm labels and take (y, d) drawn from the study's pool
        for rows in groups:
            drawn[rows] = rng.choice(rows, size=len(rows))
        exceed += statistic(y[drawn], d[drawn], z, mass) >= observed - 1e-12
    return observed, (exceed + 1) / (bootstrap + 1)
