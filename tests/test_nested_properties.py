"""Invariance of nested fits, `(1 | study/centre)` and `(1 + x | study) + (1 | study:centre)`,
as their test oracle (issue 21), in tests/test_lmm_properties.py's style and with its helpers.

Generated data sets (hypothesis, derandomized) are fitted before and after a change that must not
matter: affine changes of y and of a covariate (shift up to 1e9, scale 1e-6 to 1e6), rows in
another order with studies and centres relabelled (so studies come in another order, and centres
are numbered within their study as multi-centre trials number them), and the per-centre
statistics entries of shifted data with one centre's rows split over two files (blocks merged)
and the studies in another order. Data on the 2^-10 grid, shifts integers: the shifted problem
is the same problem (see tests/test_lmm_properties.py), so estimates, SEs and variance
components must transform exactly to 1e-8 relative, df, t and p to 1e-5.

Each property runs 200 examples; to stay inside the CI budget one example checks several
changes against the same original fit. A few generated cases are fitted by lme4 as well.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rscript import LME4_TIGHT, run_r
from test_lmm_properties import GRID, NAMES, PROPERTY, affine, shifts
from tests_support import assert_close, assert_covariance, assert_same_inference, inference

from ipdpool import lmer
from ipdpool.federated import plain
from ipdpool.models.crossprod import cross_products
from ipdpool.models.lmm import fit_lmm
from ipdpool.models.nested import fit_nested, fit_nested_entries, nested_cross_products
from ipdpool.models.statistics import entry_from_rows


def generate(seed: int, k: int, slope: bool):
    """(X = [1 x w], y, study, centre): k studies of 1 to 3 centres of 3 to 8 rows; data on the grid."""
    rng = np.random.default_rng(seed)
    study_of_centre = np.repeat(np.arange(k), rng.integers(1, 4, k))
    centre = np.repeat(np.arange(len(study_of_centre)), rng.integers(3, 9, len(study_of_centre)))
    study = study_of_centre[centre]
    n = len(centre)
    x = np.round(rng.normal(0, rng.uniform(0.2, 3), n) / GRID) * GRID
    w = np.round(rng.binomial(1, 0.5, n) + rng.normal(0, 0.1, k)[study] / GRID) * GRID
    tau, nu, slope_sd = rng.uniform(0, 1.5), rng.uniform(0, 1.0), rng.uniform(0, 0.8) if slope else 0.0
    y = 1 + 0.5 * x - 0.3 * w + rng.normal(0, tau, k)[study] + rng.normal(0, nu, len(study_of_centre))[centre]
    y = np.round((y + rng.normal(0, slope_sd, k)[study] * x + rng.normal(0, 1, n)) / GRID) * GRID
    return np.column_stack([np.ones(n), x, w]), y, study, centre


def fit(x, y, study, centre, slope: bool, reml: bool):
    q = 2 if slope else 1
    blocks, studies = nested_cross_products(x, x[:, :q], y, study, centre, NAMES, NAMES[:q])
    return fit_nested(blocks, studies, reml=reml)


def assert_components(after, before, study_map: np.ndarray, factor: float):
    """centre variance x factor; study covariance M D M' x factor; each to 1e-8 of (its value +
    sigma2's share), as tests_support.assert_covariance."""
    floor = factor * before.sigma2
    assert_close(after.centre_variance, factor * before.centre_variance, 1e-8, floor, "centre variance")
    expected = factor * study_map @ before.study_covariance @ study_map.T
    assert_covariance(after.study_covariance, expected, floor * (study_map**2).sum(axis=1), "D")


cases = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.integers(3, 5),  # studies
    st.sampled_from([False, False, True]),  # random slope by study (a third of the cases)
    st.booleans(),  # REML
)


@PROPERTY
@given(cases, affine, affine, st.sampled_from([1, 2]))
def test_affine_changes_of_y_and_of_a_covariate(case, y_change, x_change, column):
    """y -> a y + c and x_j -> b x_j + d at once (X -> X A): beta -> a A^-1 beta (+ c), sigma2 and
    the centre variance x a^2, the study's covariance a^2 M D M' (M = A^-1 on its columns); SEs x |a|,
    df, t (sign of a) and p the same. One refit checks both changes (the CI budget)."""
    seed, k, slope, reml = case
    (scale, shift), (x_scale, x_shift) = y_change, x_change
    x, y, study, centre = generate(seed, k, slope)
    moved_x = x.copy()
    moved_x[:, column] = x_scale * x[:, column] + x_shift
    before, after = fit(x, y, study, centre, slope, reml), fit(moved_x, scale * y + shift, study, centre, slope, reml)
    a = np.eye(3)
    a[column, column], a[0, column] = x_scale, x_shift
    inverse = np.linalg.inv(a)
    assert_close(after.sigma2, scale**2 * before.sigma2, 1e-8, what="sigma2")
    q = before.layout.q_study
    assert_components(after, before, inverse[:q, :q], scale**2)
    ddf = "kenward_roger" if seed % 2 else "satterthwaite"
    for i in range(3):
        moved, original = inference(after, np.eye(3)[i], ddf), inference(before, inverse[i], ddf)
        expected = {**original, "t": np.sign(scale) * original["t"]}
        if i == 0 and shift:  # the intercept's t and p change with the shift
            expected |= {"t": moved["t"], "p_value": moved["p_value"]}
        assert_same_inference(moved, expected, lambda b, i=i: scale * b + (shift if i == 0 else 0), abs(scale))


def centre_entries(x, y, study, centre, split_centre: int, rng) -> list[tuple[str, str, dict]]:
    """(study, centre, entry) per centre as files would bring them: centres numbered within their
    study, one centre's rows in two files, every entry through JSON, in a shuffled order."""
    parts = []
    for c in np.unique(centre):
        rows = np.flatnonzero(centre == c)
        s = int(study[rows[0]])
        label = f"centre {int(np.sum(np.unique(centre[study == s]) < c)) + 1}"
        pieces = np.split(rows, [int(rng.integers(1, len(rows)))]) if c == split_centre else [rows]
        for piece in pieces:
            entry = json.loads(json.dumps(plain(entry_from_rows(x[piece], y[piece], NAMES))))
            parts.append((f"S{s}", label, entry))
    return [parts[i] for i in rng.permutation(len(parts))]


@PROPERTY
@given(cases, shifts, shifts, st.integers(0, 2**32 - 1))
def test_row_order_relabelling_and_centres_split_over_files(case, y_shift, x_shift, other_seed):
    """Nothing changes when the fit starts from per-centre statistics of the rows in another order,
    with studies and centres relabelled (the studies then sort in another order), x and y shifted,
    one centre's rows split over two files and the blocks arriving shuffled (one refit checks all:
    the CI budget; each change alone is the same map)."""
    seed, k, slope, reml = case
    x, y, study, centre = generate(seed, k, slope)
    rng = np.random.default_rng(other_seed)
    before = fit(x, y, study, centre, slope, reml)
    order = rng.permutation(len(y))
    studies, centres = rng.permutation(1000)[:k][study][order], rng.permutation(centre.max() + 1)[centre][order]
    moved_x, moved_y = x[order].copy(), y[order] + y_shift
    moved_x[:, 1] += x_shift
    entries = centre_entries(moved_x, moved_y, studies, centres, int(rng.integers(centre.max() + 1)), rng)
    after = fit_nested_entries(entries, "x" if slope else None, reml=reml)
    assert after.n_centres == before.n_centres and after.k == k
    assert_close(after.deviance, before.deviance, 1e-10, what="criterion")
    a = np.eye(3)
    a[0, 1] = x_shift
    inverse = np.linalg.inv(a)
    assert_close(after.sigma2, before.sigma2, 1e-8, what="sigma2")
    q = before.layout.q_study
    assert_components(after, before, inverse[:q, :q], 1.0)
    for i in range(3):
        moved, original = (
            inference(after, np.eye(3)[i], "satterthwaite"),
            inference(before, inverse[i], "satterthwaite"),
        )
        if i == 0:  # the intercept's t and p change with the shift
            original = {**original, "t": moved["t"], "p_value": moved["p_value"]}
        assert_same_inference(moved, original, lambda b, i=i: b + (y_shift if i == 0 else 0), 1.0)


STUDY_LEVEL = settings(PROPERTY, max_examples=50)  # two lmer fits and four predictions an example: the CI budget


@STUDY_LEVEL
@given(cases, st.integers(0, 2**32 - 1))
def test_study_level_predictions_ignore_centre_labels_and_row_order(case, other_seed):
    """lme4's study-level prediction (re.form = ~(1 | s), or ~(1 + x | s) with a random slope) of
    a nested fit is the same after the rows are reordered and the centres relabelled (they then sort
    in another order), and for rows whose centre the fit has not seen (the centre term is left out,
    so no new level); study-level plus centre-only minus population level is the full prediction."""
    seed, k, slope, reml = case
    x, y, study, centre = generate(seed, k, slope)
    rng = np.random.default_rng(other_seed)
    data = pd.DataFrame({"y": y, "x": x[:, 1], "w": x[:, 2], "s": study, "c": centre})
    formula, study_level, centre_only = (
        ("y ~ x + w + (1 + x | s) + (1 | s:c)", "~(1 + x | s)", "~(1 | s:c)")
        if slope
        else ("y ~ x + w + (1 | s/c)", "~(1 | s)", "~(1 | c:s)")
    )
    fitted = lmer(formula, data, reml=reml)
    before = fitted.predict(data, re_form=study_level).to_numpy()
    relabelled = data.assign(c=[f"centre {v}" for v in rng.permutation(1000)[centre]])
    refit = lmer(formula, relabelled.iloc[rng.permutation(len(y))], reml=reml)
    scale = np.abs(before).max() + np.sqrt(fitted.fit.sigma2)
    assert_close(refit.predict(relabelled, re_form=study_level), before, 1e-8, scale, "study level")
    assert np.array_equal(fitted.predict(data.assign(c=-1), re_form=study_level).to_numpy(), before)
    parts = before + fitted.predict(data, re_form=centre_only).to_numpy() - fitted.predict(data, re_form="~0")
    assert_close(parts, fitted.predict(data), 1e-12, scale, "sum of the terms")


# ------------------------------------------------------------------ generated cases in lme4

R_CASES = (
    LME4_TIGHT
    + r"""
suppressPackageStartupMessages(library(lmerTest))
out <- list()
for (name in unique(cases$case)) {
  d <- cases[cases$case == name, ]
  slope <- d$slope[1] == 1; reml <- d$reml[1] == 1
  f <- if (slope) y ~ x + w + (1 + x | s) + (1 | s:c) else y ~ x + w + (1 | s/c)
  m <- lmer(f, d, REML = reml, control = tight)
  out[[name]] <- list(beta = unname(fixef(m)), se = unname(sqrt(diag(as.matrix(vcov(m))))),
                      df = unname(summary(m)$coefficients[, "df"]), sigma2 = sigma(m)^2,
                      theta = unname(getME(m, "theta")), criterion = if (reml) REMLcrit(m) else deviance(m))
}
"""
)

R_EXAMPLES = [(21, 5, False, True), (22, 4, True, True), (23, 6, False, False), (24, 6, True, False)]


@pytest.fixture(scope="module")
def lme4_fits():
    frames = []
    for number, (seed, k, slope, reml) in enumerate(R_EXAMPLES):
        x, y, study, centre = generate(seed, k, slope)
        frames.append(
            pd.DataFrame(
                {
                    "case": f"c{number}",
                    "slope": int(slope),
                    "reml": int(reml),
                    "y": y,
                    "x": x[:, 1],
                    "w": x[:, 2],
                    "s": study,
                    "c": centre,
                }
            )  # fmt: skip
        )
    return run_r(R_CASES, {"cases": pd.concat(frames)})


@pytest.mark.parametrize("number", range(len(R_EXAMPLES)))
def test_generated_nested_cases_equal_lme4(number, lme4_fits):
    seed, k, slope, reml = R_EXAMPLES[number]
    ours, theirs = fit(*generate(seed, k, slope), slope, reml), lme4_fits[f"c{number}"]
    assert ours.deviance <= theirs["criterion"] + 1e-9
    assert ours.deviance == pytest.approx(theirs["criterion"], rel=1e-9)
    se = np.sqrt(np.diag(ours.vcov))
    assert_close(ours.beta, theirs["beta"], 1e-6, se, "beta")
    assert_close(se, theirs["se"], 1e-6, what="se")
    assert_close(ours.sigma2, theirs["sigma2"], 1e-6, what="sigma2")
    assert_close(ours.theta, theirs["theta"], 1e-6, 1e-1, "theta")
    assert_close([ours.satterthwaite_df(e) for e in np.eye(3)], theirs["df"], 1e-6, what="df")


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_one_centre_per_study_is_the_one_factor_model(seed):
    """With one centre per study the two variances are not told apart, only their sum: the REML
    criterion, estimates and SEs are those of (1 | study) (lmm.fit_lmm, whose q = 1 search brackets
    the optimum on a grid), whatever the split (a start at the face, where the deviance's
    derivative vanishes, once stopped there above the optimum)."""
    x, y, study, _ = generate(seed, 5, False)
    nested = fit(x, y, study, study, False, True)
    single = fit_lmm(cross_products(x, x[:, :1], y, study, NAMES, NAMES[:1]), reml=True)
    assert nested.deviance == pytest.approx(single.deviance, rel=1e-12)
    assert_close(nested.beta, single.beta, 1e-8, np.sqrt(np.diag(single.vcov)), "beta")
    assert_close(np.diag(nested.vcov), np.diag(single.vcov), 1e-7, what="vcov")
    total = nested.centre_variance + nested.study_covariance[0, 0]
    assert_close(total, single.random_covariance[0, 0], 1e-7, single.sigma2, "variance")
