"""Invariance of the mixed-model engine as its test oracle (issue 21): what must not change
when the input changes in a way that should not matter.

Generated data sets (hypothesis, derandomized so CI is reproducible) are fitted before and
after a change and compared: affine changes of y and of a covariate (shift up to 1e9,
scale 1e-6 to 1e6), row order with relabelled groups, and the federated route (sites'
statistics from shifted data, a study split over two sites, studies in another order,
through JSON). REML and ML; random intercept and correlated random slope.

The data are multiples of 2^-10 with |value| < 2^12 and the shifts integers below 2^31, so
shifted data are exactly representable (they need at most 10 + 31 + 1 bits): the shifted
problem is then the same problem, not one with rounded data, and the estimates must
transform exactly up to the fit's own precision (1e-8 relative). Scalings by powers of ten
round the data, which changes the answer by about 1e-16 relative only.

A few generated cases per property are also fitted by lme4/lmerTest in one R call.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rscript import LME4_TIGHT, run_r
from tests_support import assert_close, assert_covariance, assert_same_inference, inference

from ipdpool.federated import plain
from ipdpool.models.crossprod import cross_products
from ipdpool.models.lmm import fit_lmm
from ipdpool.models.statistics import RESPONSE, combine, entry_from_rows, merge_entries

PROPERTY = settings(
    max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
GRID = 2.0**-10
NAMES = ["Intercept", "x", "w"]


def generate(seed: int, k: int, slope: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X = [1 x w], y, groups): unbalanced groups of 3 to 14 rows, data on the 2^-10 grid."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 15, k)
    groups = np.repeat(np.arange(k), sizes)
    n = len(groups)
    x = np.round(rng.normal(0, rng.uniform(0.2, 3), n) / GRID) * GRID
    w = np.round(rng.binomial(1, 0.5, n) + rng.normal(0, 0.1, k)[groups] / GRID) * GRID
    tau, slope_sd = rng.uniform(0, 1.5), rng.uniform(0, 0.8) if slope else 0.0
    y = 1 + 0.5 * x - 0.3 * w + rng.normal(0, tau, k)[groups] + rng.normal(0, slope_sd, k)[groups] * x
    y = np.round((y + rng.normal(0, 1, n)) / GRID) * GRID
    return np.column_stack([np.ones(n), x, w]), y, groups


def fit(x, y, groups, slope: bool, reml: bool):
    q = 2 if slope else 1
    return fit_lmm(cross_products(x, x[:, :q], y, groups, NAMES, NAMES[:q]), reml=reml)


cases = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.integers(3, 8),  # groups
    st.booleans(),  # random slope
    st.booleans(),  # REML
)
# An affine change is a scaling (by up to 1e6 either way, which rounds the data to 1e-16 of
# each value) or a shift (by up to 1e9) with a scaling that keeps the data exact: both at
# their extremes at once would need more than 53 bits (a resolution of 1e-9 at 1e9).
affine = st.one_of(
    st.tuples(st.sampled_from([1e-6, 1e-3, 0.1, 3.7, 1e3, 1e6, -25.0]), st.just(0)),
    st.tuples(st.sampled_from([1.0, -1.0, 2.0, 0.25, 3.0, -5.0]), st.integers(-(10**9), 10**9)),
)
shifts = st.integers(-(10**9), 10**9)


@PROPERTY
@given(cases, affine)
def test_affine_change_of_y(case, change):
    seed, k, slope, reml = case
    scale, shift = change
    x, y, groups = generate(seed, k, slope)
    before, after = fit(x, y, groups, slope, reml), fit(x, scale * y + shift, groups, slope, reml)
    assert_close(after.sigma2, scale**2 * before.sigma2, 1e-8, what="sigma2")
    q = before.cp.q
    assert_covariance(
        after.random_covariance, scale**2 * before.random_covariance, np.full(q, scale**2 * before.sigma2)
    )
    ddf = "kenward_roger" if seed % 2 else "satterthwaite"
    for j in range(3):
        e = np.eye(3)[j]
        moved, original = inference(after, e, ddf), inference(before, e, ddf)
        expected = {**original, "t": np.sign(scale) * original["t"]}
        if j == 0 and shift:  # the intercept's t and p change with the shift
            expected |= {"t": moved["t"], "p_value": moved["p_value"]}
        assert_same_inference(moved, expected, lambda b, j=j: scale * b + (shift if j == 0 else 0), abs(scale))


@PROPERTY
@given(cases, affine, st.sampled_from([1, 2]))
def test_affine_change_of_a_covariate(case, change, column):
    """x_j -> a x_j + c is X -> X A (A = I, A_jj = a, A_0j = c): beta -> A^-1 beta, and the
    random slope's covariance likewise; each new coefficient is the old fit's contrast A^-1 e_i."""
    seed, k, slope, reml = case
    scale, shift = change
    x, y, groups = generate(seed, k, slope)
    moved_x = x.copy()
    moved_x[:, column] = scale * x[:, column] + shift
    before, after = fit(x, y, groups, slope, reml), fit(moved_x, y, groups, slope, reml)
    a = np.eye(3)
    a[column, column], a[0, column] = scale, shift
    inverse = np.linalg.inv(a)
    assert_close(after.sigma2, before.sigma2, 1e-8, what="sigma2")
    q = before.cp.q
    z_inverse = inverse[:q, :q]
    floor = before.sigma2 * (z_inverse**2).sum(axis=1)
    assert_covariance(after.random_covariance, z_inverse @ before.random_covariance @ z_inverse.T, floor)
    ddf = "kenward_roger" if seed % 2 else "satterthwaite"
    for i in range(3):
        moved, original = inference(after, np.eye(3)[i], ddf), inference(before, inverse[i], ddf)
        assert_same_inference(moved, original, lambda b: b, 1.0)


@PROPERTY
@given(cases, st.integers(0, 2**32 - 1))
def test_row_order_and_group_labels_do_not_matter(case, permutation_seed):
    seed, k, slope, reml = case
    x, y, groups = generate(seed, k, slope)
    rng = np.random.default_rng(permutation_seed)
    order = rng.permutation(len(y))
    labels = np.array([f"site-{v}" for v in rng.permutation(10**6)[:k]])  # another sort order
    before, after = fit(x, y, groups, slope, reml), fit(x[order], y[order], labels[groups][order], slope, reml)
    assert_close(after.sigma2, before.sigma2, 1e-8)
    assert_covariance(after.random_covariance, before.random_covariance, np.full(before.cp.q, before.sigma2))
    assert_close(after.deviance, before.deviance, 1e-12)
    for j in range(3):
        e = np.eye(3)[j]
        assert_same_inference(inference(after, e, "satterthwaite"), inference(before, e, "satterthwaite"), float, 1)


def site_statistics(x, y, groups, split_study: int, rng) -> list[tuple[str, dict]]:
    """(study, entry) per study as the coordinating centre gets them: one study's rows at two
    sites (merged), every entry through JSON, studies in a shuffled order."""
    parts = []
    for study in np.unique(groups):
        rows = np.nonzero(groups == study)[0]
        if study == split_study and len(rows) >= 2:
            cut = rng.integers(1, len(rows))
            sites = [entry_from_rows(x[r], y[r], NAMES) for r in (rows[:cut], rows[cut:])]
            entry = merge_entries([json.loads(json.dumps(plain(site))) for site in sites])
        else:
            entry = json.loads(json.dumps(plain(entry_from_rows(x[rows], y[rows], NAMES))))
        parts.append((f"S{study}", entry))
    return [parts[i] for i in rng.permutation(len(parts))]


@PROPERTY
@given(cases, shifts, shifts, st.integers(0, 2**32 - 1))
def test_site_statistics_from_shifted_data_reproduce_the_pooled_fit(case, y_shift, x_shift, split_seed):
    seed, k, slope, reml = case
    x, y, groups = generate(seed, k, slope)
    x = x.copy()
    x[:, 1] += x_shift
    y = y + y_shift
    rng = np.random.default_rng(split_seed)
    pooled = fit(x, y, groups, slope, reml)
    federated = fit_lmm(combine(site_statistics(x, y, groups, int(rng.integers(k)), rng), "x" if slope else None), reml)
    assert federated.cp.x_names == pooled.cp.x_names and federated.cp.y_index == len(NAMES)
    assert_close(federated.beta, pooled.beta, 1e-10, np.sqrt(np.diag(pooled.vcov)), "beta")
    assert_close(federated.vcov, pooled.vcov, 1e-10, np.sqrt(np.outer(np.diag(pooled.vcov), np.diag(pooled.vcov))))
    assert_close(federated.sigma2, pooled.sigma2, 1e-10)
    scale = np.abs(np.diag(pooled.random_covariance)) + pooled.sigma2
    assert_close(federated.random_covariance, pooled.random_covariance, 1e-10, np.sqrt(np.outer(scale, scale)))
    assert_close(federated.deviance, pooled.deviance, 1e-12)
    for j in (1, 2):
        e = np.eye(3)[j]
        assert_close(federated.satterthwaite_df(e), pooled.satterthwaite_df(e), 1e-6)


def test_statistics_entries_keep_the_format():
    """products[0][0] == n, symmetric positive semi-definite, the intercept's reference 0."""
    x, y, groups = generate(5, 4, True)
    entry = entry_from_rows(x + [0, 1e9, 0], y - 3e8, NAMES)
    products = entry["products"]
    assert entry["names"] == [*NAMES, RESPONSE] and entry["n"] == len(y) == products[0, 0]
    assert entry["reference"][0] == 0 and entry["reference"][1] != 0 and entry["reference"][3] != 0
    np.testing.assert_array_equal(products, products.T)
    assert np.linalg.eigvalsh(products).min() > -1e-9 * np.abs(products).max()
    assert np.abs(products[0, 1:]).max() < len(y) * 10  # sums about the reference, not about 0


# ------------------------------------------------------------------ the same cases in lme4

R_CASES = (
    LME4_TIGHT
    + r"""
suppressPackageStartupMessages(library(lmerTest))
out <- list()
for (name in unique(cases$case)) {
  d <- cases[cases$case == name, ]
  d$g <- factor(d$g)
  slope <- d$slope[1] == 1; reml <- d$reml[1] == 1
  f <- if (slope) y ~ x + w + (1 + x | g) else y ~ x + w + (1 | g)
  m <- lmer(f, d, REML = reml, control = tight)
  L <- as.matrix(contrasts[contrasts$case == name, c("c0", "c1", "c2")])
  tests <- lapply(seq_len(nrow(L)), function(i) contest1D(m, L[i, ], ddf = "Satterthwaite"))
  out[[name]] <- list(beta = unname(fixef(m)), vcov = as.vector(as.matrix(vcov(m))), sigma2 = sigma(m)^2,
                      cov_re = as.vector(as.matrix(VarCorr(m)$g)), df = sapply(tests, function(t) t$df))
}
"""
)

R_EXAMPLES = [  # (seed, groups, slope, reml, y: scale, shift, x: scale, shift): issue 21's examples
    (11, 6, False, True, 1.0, 1e8, 1.0, 0.0),  # 1e8 added to y
    (12, 5, False, False, 1e-3, 1e6, 1.0, 1.7e9),  # a Unix time, and 1e6 added to y
    (13, 8, True, True, 1.0, 1e6, 1.0, 2024.0),  # a calendar year
    (16, 7, True, False, 3.7, -5e5, 1e3, 0.0),
    (15, 6, True, True, 1e6, 0.0, 1e-6, 3.0),
]


def maps(example) -> tuple[np.ndarray, float, float]:
    """(A with X_new = X A, y scale, y shift)."""
    _, _, _, _, y_scale, y_shift, x_scale, x_shift = example
    a = np.eye(3)
    a[1, 1], a[0, 1] = x_scale, x_shift
    return a, y_scale, y_shift


def transformed(example):
    x, y, groups = generate(*example[:3])
    a, y_scale, y_shift = maps(example)
    return x @ a, y_scale * y + y_shift, groups


@pytest.fixture(scope="module")
def lme4_fits():
    """lme4 on the original data (where it is accurate), with lmerTest's df of the contrasts
    that become the transformed data's coefficients."""
    frames, contrasts = [], []
    for number, example in enumerate(R_EXAMPLES):
        x, y, groups = generate(*example[:3])
        frames.append(
            pd.DataFrame(
                {
                    "case": f"c{number}",
                    "slope": int(example[2]),
                    "reml": int(example[3]),
                    "y": y,
                    "x": x[:, 1],
                    "w": x[:, 2],
                    "g": groups,
                }  # fmt: skip
            )
        )
        inverse = np.linalg.inv(maps(example)[0])
        contrasts.append(pd.DataFrame(inverse, columns=["c0", "c1", "c2"]).assign(case=f"c{number}"))
    return run_r(R_CASES, {"cases": pd.concat(frames), "contrasts": pd.concat(contrasts)})


@pytest.mark.parametrize("number", range(len(R_EXAMPLES)))
def test_shifted_and_scaled_cases_equal_lme4_on_the_original_data(number, lme4_fits):
    """The engine on transformed data gives lme4's answer on the original data, transformed
    (lme4 itself loses digits on the transformed data: with 1e8 added to y its slope moves by
    2e-5 SE; with x + 1.7e9 of SD 1 it declares the design rank deficient)."""
    example = R_EXAMPLES[number]
    ours, theirs = fit(*transformed(example), example[2], example[3]), lme4_fits[f"c{number}"]
    a, y_scale, y_shift = maps(example)
    inverse = np.linalg.inv(a)
    vcov = y_scale**2 * inverse @ np.reshape(theirs["vcov"], (3, 3)) @ inverse.T
    se = np.sqrt(np.diag(vcov))
    assert_close(ours.beta, y_scale * inverse @ theirs["beta"] + [y_shift, 0, 0], 1e-6, se, "beta")
    assert_close(np.sqrt(np.diag(ours.vcov)), se, 1e-4, what="se")
    assert_close([ours.satterthwaite_df(e) for e in np.eye(3)], theirs["df"], 1e-3, what="df")
    assert_close(ours.sigma2, y_scale**2 * theirs["sigma2"], 1e-5, what="sigma2")
    q = 2 if example[2] else 1
    z_inverse = inverse[:q, :q]
    expected = y_scale**2 * z_inverse @ np.reshape(theirs["cov_re"], (q, q)) @ z_inverse.T
    scale = np.sqrt(np.outer(np.diag(expected), np.diag(expected))) + 1e-6 * y_scale**2 * theirs["sigma2"]
    assert_close(ours.random_covariance, expected, 1e-4, scale / 1e-4 * 1e-4, "random covariance")


@pytest.mark.parametrize("number", range(len(R_EXAMPLES)))
def test_reordered_relabelled_and_federated_cases_equal_lme4(number, lme4_fits):
    """The other properties' changes on the same cases: rows shuffled with new group labels,
    and the transformed data as site statistics (a study split over two sites), against lme4
    on the original data."""
    example = R_EXAMPLES[number]
    x, y, groups = transformed(example)
    rng = np.random.default_rng(number)
    order = rng.permutation(len(y))
    labels = np.array([f"centre {v}" for v in rng.permutation(1000)[: groups.max() + 1]])
    shuffled = fit(x[order], y[order], labels[groups][order], example[2], example[3])
    parts = site_statistics(x, y, groups, int(rng.integers(groups.max() + 1)), rng)
    federated = fit_lmm(combine(parts, "x" if example[2] else None), example[3])
    theirs = lme4_fits[f"c{number}"]
    a, y_scale, y_shift = maps(example)
    inverse = np.linalg.inv(a)
    se = y_scale * np.sqrt(np.diag(inverse @ np.reshape(theirs["vcov"], (3, 3)) @ inverse.T))
    for ours in (shuffled, federated):
        assert_close(ours.beta, y_scale * inverse @ theirs["beta"] + [y_shift, 0, 0], 1e-6, se, "beta")
        assert_close(np.sqrt(np.diag(ours.vcov)), se, 1e-4, what="se")
        assert_close([ours.satterthwaite_df(e) for e in np.eye(3)], theirs["df"], 1e-3, what="df")
        assert_close(ours.sigma2, y_scale**2 * theirs["sigma2"], 1e-5, what="sigma2")
