"""Tail probabilities and quantiles of the normal, t and chi-squared distributions.

These are the scipy.special functions that scipy.stats' distributions call for the same
quantities, so the numbers are identical; importing scipy.stats instead costs about 1 CPU-s
in every job that fits or pools a model.
"""

from scipy import special


def t_quantile(p, df):
    return special.stdtrit(df, p)


def t_sf(x, df):
    return special.stdtr(df, -x)


def norm_quantile(p):
    return special.ndtri(p)


def norm_sf(x):
    return special.ndtr(-x)


def chi2_quantile(p, df):
    return 2 * special.gammaincinv(df / 2, p)


def chi2_sf(x, df):
    return special.chdtrc(df, x)
