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


BATCH = 200  # bootstrap samples evaluated at once (arrays of BATCH x rows)


def largest_interval_sums(y_sorted: np.ndarray, mass_sorted: np.ndarray) -> np.ndarray:
    """Per row: max over intervals [a, b] of the summed mass of the y inside (0 for the empty
    interval); tied y values are in or out together. Kadane's rule on the cumulative sums, taken
    only at the end of each run of ties."""
    cumulative = np.cumsum(mass_sorted, axis=1)
    end = np.ones(y_sorted.shape, bool)
    end[:, :-1] = y_sorted[:, 1:] != y_sorted[:, :-1]
    lowest = np.minimum(np.minimum.accumulate(np.where(end, cumulative, np.inf), axis=1), 0.0)
    return np.maximum(np.max(np.where(end, cumulative, -np.inf) - lowest, axis=1), 0.0)


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


def statistics(y: np.ndarray, d: np.ndarray, z: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """The statistic of each row of y and d (samples x participants; z and mass per column)."""
    order = np.argsort(y, axis=1, kind="stable")
    y_sorted, d_sorted = np.take_along_axis(y, order, axis=1), np.take_along_axis(d, order, axis=1)
    signed = np.where(z == 1, mass, -mass)[order]  # P(. | Z = 1) - P(. | Z = 0)
    never = largest_interval_sums(y_sorted, np.where(d_sorted == 0, signed, 0.0))
    always = largest_interval_sums(y_sorted, np.where(d_sorted == 1, -signed, 0.0))
    m, n = int((z == 1).sum()), int((z == 0).sum())
    return np.sqrt(m * n / (m + n)) * np.maximum(never, always)


def statistic(y: np.ndarray, d: np.ndarray, z: np.ndarray, mass: np.ndarray) -> float:
    return float(statistics(np.asarray(y)[None, :], np.asarray(d)[None, :], z, mass)[0])


def canonical_order(y, d, z, strata) -> list[np.ndarray]:
    """Rows sorted by (z, d, y) and strata ordered by their first row in that order: the
    bootstrap's draws then do not depend on how a file orders its rows or labels its studies.
    Strata with one arm only carry nothing for a within-study comparison and are left out."""
    order = np.lexsort((y, d, z))
    labels, first = np.unique(strata[order], return_index=True)
    groups = [order[strata[order] == label] for label in labels[np.argsort(first)]]
    return [rows for rows in groups if len(np.unique(z[rows])) == 2]


def kitagawa_test(y, d, z, strata, bootstrap: int = BOOTSTRAP, seed: int = SEED) -> tuple[float, float]:
    """(statistic, bootstrap p-value) of the never-taker/always-taker implication; p-values
    below 0.05 say that the assumptions (exclusion, monotonicity) fail. Computed on the studies
    with both arms (`canonical_order`); NaN when none has both."""
    y, d, z, strata = (np.asarray(a) for a in (y, d, z, strata))
    groups = canonical_order(y, d, z, strata)
    if not groups:
        return np.nan, np.nan
    rows = np.concatenate(groups)
    y, d, z, strata = y[rows], d[rows], z[rows], strata[rows]
    bounds = np.cumsum([0] + [len(group) for group in groups])
    groups = [np.arange(low, high) for low, high in zip(bounds[:-1], bounds[1:])]
    mass = masses(z, strata)
    observed = statistic(y, d, z, mass)
    rng = np.random.default_rng(seed)
    exceed = 0
    for start in range(0, bootstrap, BATCH):
        size = min(BATCH, bootstrap - start)
        # each study's rows keep their arm labels and take (y, d) drawn from the study's pool
        drawn = np.empty((size, len(y)), int)
        for rows in groups:
            drawn[:, rows] = rng.choice(rows, size=(size, len(rows)))
        exceed += int(np.sum(statistics(y[drawn], d[drawn], z, mass) >= observed - 1e-12))
    return observed, (exceed + 1) / (bootstrap + 1)
