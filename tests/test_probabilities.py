"""ipdpool.probabilities gives scipy.stats' numbers (normal, t and chi-squared tails and
quantiles) without importing scipy.stats; scipy.stats is the reference here."""

import numpy as np
import pytest
from scipy import stats

from ipdpool import probabilities

RNG = np.random.default_rng(20261127)
P = RNG.uniform(0, 1, 500)
X = RNG.normal(0, 4, 500)
DF = np.concatenate([RNG.uniform(0.5, 300, 499), [np.inf]])


@pytest.mark.parametrize(
    "ours, reference, arguments",
    [
        (probabilities.t_quantile, stats.t.ppf, (P, DF)),
        (probabilities.t_sf, stats.t.sf, (X, DF)),
        (probabilities.norm_quantile, stats.norm.ppf, (P,)),
        (probabilities.norm_sf, stats.norm.sf, (X,)),
        (probabilities.chi2_quantile, stats.chi2.ppf, (P[:-1], np.round(DF[:-1]) + 1)),
        (probabilities.chi2_sf, stats.chi2.sf, (np.abs(X) * 3, DF)),
    ],
)
def test_the_same_numbers_as_scipy_stats(ours, reference, arguments):
    np.testing.assert_array_equal(ours(*arguments), reference(*arguments))
