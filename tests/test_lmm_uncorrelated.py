"""Uncorrelated random effects, lme4's `(x || g)` (a diagonal relative covariance factor),
in the engine: checked live against lme4, lmerTest and pbkrtest on R datasets.

Each case is fitted twice: through ipdpool.lmer with lme4's formula, and with the engine
called directly (crossprod.cross_products's random_terms).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rscript import LME4_TIGHT, run_r

import ipdpool
from ipdpool.models.crossprod import cross_products
from ipdpool.models.lmm import fit_lmm

R_FITS = (
    LME4_TIGHT
    + r"""
suppressPackageStartupMessages({library(lmerTest); library(nlme)})
ortho <- as.data.frame(Orthodont); ortho$female <- as.numeric(ortho$Sex == "Female")
ortho$Subject <- as.character(ortho$Subject)
data <- list(sleep = lme4::sleepstudy, ortho = ortho[, c("Subject", "distance", "age", "female")])
one <- function(formula, d, reml) {
  m <- lmer(as.formula(formula), d, REML = reml, control = tight)
  s <- summary(m)$coefficients
  res <- list(beta = unname(fixef(m)), se = unname(s[, 2]), df = unname(s[, 3]), sigma2 = sigma(m)^2,
              variances = unname(sapply(VarCorr(m), function(v) diag(as.matrix(v)))),
              criterion = if (reml) REMLcrit(m) else deviance(m), singular = isSingular(m))
  if (reml) { k <- summary(m, ddf = "Kenward-Roger")$coefficients; res$kr_se <- unname(k[, 2])
              res$kr_df <- unname(k[, 3]) }
  res
}
out <- list(data = data, fits = list(
  sleep_reml = one("Reaction ~ Days + (Days || Subject)", data$sleep, TRUE),
  sleep_ml = one("Reaction ~ Days + (Days || Subject)", data$sleep, FALSE),
  ortho_reml = one("distance ~ age + female + (age || Subject)", data$ortho, TRUE)
))
"""
)

CASES = {
    "sleep_reml": ("sleep", "Reaction", ["Days"], "Subject", True),
    "sleep_ml": ("sleep", "Reaction", ["Days"], "Subject", False),
    "ortho_reml": ("ortho", "distance", ["age", "female"], "Subject", True),
}
FORMULAS = {
    "sleep_reml": "Reaction ~ Days + (Days || Subject)",
    "sleep_ml": "Reaction ~ Days + (Days || Subject)",
    "ortho_reml": "distance ~ age + female + (age || Subject)",
}


@pytest.fixture(scope="module")
def reference():
    return run_r(R_FITS)


@pytest.mark.parametrize("route", ["lmer", "engine"])
@pytest.mark.parametrize("case", CASES)
def test_uncorrelated_random_intercept_and_slope_equal_lme4(case, route, reference):
    data, response, covariates, group, reml = CASES[case]
    frame = pd.DataFrame(reference["data"][data])
    theirs = reference["fits"][case]
    x = np.column_stack([np.ones(len(frame))] + [frame[c].to_numpy(float) for c in covariates])
    names = ["Intercept", *covariates]
    cp = cross_products(
        x, x[:, :2], frame[response].to_numpy(float), frame[group], names, names[:2], random_terms=(((0, 1), False),)
    )
    if route == "lmer":
        result = ipdpool.lmer(FORMULAS[case], frame, reml=reml)
        assert "nan" not in result.summary().lower()
        fit = result.fit
    else:
        fit = fit_lmm(cp, reml=reml)
    assert fit.deviance <= theirs["criterion"] + 1e-9
    assert fit.deviance == pytest.approx(theirs["criterion"], abs=1e-6)
    se = np.sqrt(np.diag(fit.vcov))
    np.testing.assert_allclose(fit.beta, theirs["beta"], rtol=1e-6, atol=1e-6 * se.min())
    np.testing.assert_allclose(se, theirs["se"], rtol=1e-4)
    covariance = fit.random_covariance
    assert covariance[0, 1] == covariance[1, 0] == 0
    np.testing.assert_allclose(np.diag(covariance), theirs["variances"], rtol=1e-5, atol=1e-8 * theirs["sigma2"])
    assert fit.sigma2 == pytest.approx(theirs["sigma2"], rel=1e-6)
    assert fit.is_singular == theirs["singular"]
    contrasts = np.eye(len(names))
    np.testing.assert_allclose([fit.satterthwaite_df(e) for e in contrasts], theirs["df"], rtol=1e-3)
    if reml:
        kenward_roger = [fit.kenward_roger(e) for e in contrasts]
        np.testing.assert_allclose([np.sqrt(v) for v, _ in kenward_roger], theirs["kr_se"], rtol=1e-4)
        np.testing.assert_allclose([df for _, df in kenward_roger], theirs["kr_df"], rtol=1e-3)
