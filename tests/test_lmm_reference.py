"""The mixed-model engine against lme4, lmerTest and pbkrtest, computed live by R on data
nobody here wrote (R's own datasets): estimates, SEs, Satterthwaite and Kenward-Roger df,
variance components, likelihood and singular-fit flags.

lme4 is refitted with tight optimizer tolerances for the reference values (its defaults stop
about 1e-6 short in flat directions); the engine must also never end above lme4's default
deviance. Tolerances (issue 10): estimates 1e-6 relative, SEs 1e-4, df 1e-3, variance
components 1e-6 (covariances relative to the product of the two SDs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rscript import LME4_TIGHT, run_r

import ipdpool
from ipdpool.models.lmm import profiled_deviance

R_FIT = (
    LME4_TIGHT
    + r"""
suppressPackageStartupMessages({library(lmerTest); library(nlme)})
criterion <- function(m) if (isREML(m)) REMLcrit(m) else deviance(m)
fit_one <- function(formula, data, reml = TRUE, kr = TRUE, contrast = NULL) {
  m <- lmer(as.formula(formula), data, REML = reml, control = tight)
  default <- suppressMessages(lmer(as.formula(formula), data, REML = reml))
  s <- summary(m)$coefficients
  vc <- VarCorr(m)[[1]]
  res <- list(names = names(fixef(m)), beta = unname(fixef(m)), se = unname(s[, 2]), df = unname(s[, 3]),
              cov_re = unname(as.matrix(vc))[, , drop = FALSE], sigma2 = sigma(m)^2, theta = unname(getME(m, "theta")),
              criterion = criterion(m), default_criterion = criterion(default),
              singular = isSingular(m), loglik = as.numeric(logLik(m)), aic = AIC(m), bic = BIC(m))
  res$cov_re <- lapply(seq_len(nrow(res$cov_re)), function(i) res$cov_re[i, ])
  if (kr && reml) {
    k <- summary(m, ddf = "Kenward-Roger")$coefficients
    res$kr_se <- unname(k[, 2]); res$kr_df <- unname(k[, 3])
  }
  if (!is.null(contrast)) {
    L <- setNames(rep(0, length(fixef(m))), names(fixef(m))); L[names(contrast)] <- contrast
    res$contrast_s <- as.list(contest1D(m, L, ddf = "Satterthwaite"))
    if (kr && reml) res$contrast_kr <- as.list(contest1D(m, L, ddf = "Kenward-Roger"))
  }
  res
}
"""
)

R_DATASETS = """
sleep <- lme4::sleepstudy
dye <- lme4::Dyestuff2
ortho <- as.data.frame(Orthodont); ortho$female <- as.numeric(ortho$Sex == "Female"); \
ortho$Subject <- as.character(ortho$Subject)
ma <- as.data.frame(MathAchieve); sch <- as.data.frame(MathAchSchool)
ma$MEANSES <- sch$MEANSES[match(ma$School, sch$School)]
ma$catholic <- as.numeric(sch$Sector[match(ma$School, sch$School)] == "Catholic")
ma$minority <- as.numeric(ma$Minority == "Yes"); ma$School <- as.character(ma$School)
ma <- ma[, c("School", "MathAch", "SES", "MEANSES", "catholic", "minority")]
ma10 <- ma[ma$School %in% unique(ma$School)[1:10], ]
out <- list(
  data = list(sleep = sleep, dye = dye, ortho = ortho[, c("Subject", "distance", "age", "female")], ma = ma, \
ma10 = ma10),
  fits = list()
)
"""

CASES = {
    "sleep_ri": ("sleep", "Reaction ~ Days + (1 | Subject)", True),
    "sleep_rs": ("sleep", "Reaction ~ Days + (Days | Subject)", True),
    "sleep_rs_ml": ("sleep", "Reaction ~ Days + (Days | Subject)", False),
    "dye_reml": ("dye", "Yield ~ 1 + (1 | Batch)", True),
    "dye_ml": ("dye", "Yield ~ 1 + (1 | Batch)", False),
    "ortho_rs": ("ortho", "distance ~ age + female + (age | Subject)", True),
    "ortho_ri": ("ortho", "distance ~ age * female + (1 | Subject)", True),
    "ma_ri": ("ma", "MathAch ~ SES + MEANSES + catholic + minority + (1 | School)", True),
    "ma_rs": ("ma", "MathAch ~ SES + MEANSES + catholic + minority + (1 + SES | School)", True),
    "ma_rs_ml": ("ma", "MathAch ~ SES + MEANSES + catholic + (1 + SES | School)", False),
    "ma10_ri": ("ma10", "MathAch ~ SES + MEANSES + (1 | School)", True),
    "ma10_rs": ("ma10", "MathAch ~ SES + MEANSES + (1 + SES | School)", True),
    "ma10_singular": ("ma10", "MathAch ~ SES + MEANSES + (1 + SES + minority | School)", True),
}
CONTRASTS = {
    "sleep_ri": {"Intercept": 1, "Days": 5},
    "sleep_rs": {"Intercept": 1, "Days": 5},
    "ortho_rs": {"age": 1, "female": 1},
    "ortho_ri": {"age": 1, "age:female": 1},
    "ma10_ri": {"SES": 1, "MEANSES": -1},
}


def as_vectors(fit: dict) -> dict:
    """jsonlite writes length-1 vectors as scalars (auto_unbox): make them vectors again."""
    vectors = ("names", "beta", "se", "df", "kr_se", "kr_df", "theta")
    return {k: (np.atleast_1d(v).tolist() if k in vectors else v) for k, v in fit.items()}


# pbkrtest builds dense n x n matrices: the 7,185-pupil MathAchieve fits are left to Satterthwaite.
KENWARD_ROGER_CASES = [case for case, (data, _, reml) in CASES.items() if reml and data != "ma"]


def r_fits() -> str:
    """One fit_one() call per case, from CASES and CONTRASTS (R names the intercept (Intercept))."""
    calls = []
    for case, (data, formula, reml) in CASES.items():
        options = "" if reml else ", reml = FALSE"
        options += "" if case in KENWARD_ROGER_CASES or not reml else ", kr = FALSE"
        if case in CONTRASTS:
            weights = ", ".join(
                f'"{term.replace("Intercept", "(Intercept)")}" = {w}' for term, w in CONTRASTS[case].items()
            )
            options += f", contrast = c({weights})"
        calls.append(f'out$fits${case} <- fit_one("{formula}", {data}{options})')
    return "\n".join(calls)


@pytest.fixture(scope="module")
def reference():
    out = run_r(R_FIT + R_DATASETS + r_fits())
    out["fits"] = {case: as_vectors(fit) for case, fit in out["fits"].items()}
    return out


@pytest.fixture(scope="module")
def fits(reference):
    out = {}
    for case, (data, formula, reml) in CASES.items():
        frame = pd.DataFrame(reference["data"][data])
        out[case] = {
            ddf: ipdpool.lmer(formula, frame, reml=reml, ddf=ddf)
            for ddf in ("satterthwaite", "kenward_roger")
            if reml or ddf == "satterthwaite"  # lmer refuses Kenward-Roger with ML, as lmerTest
        }
    return out


def close(ours, theirs, rel, floor=0.0):
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    return np.all(np.abs(ours - theirs) <= rel * np.abs(theirs) + floor), np.max(
        np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-300)
    )


@pytest.mark.parametrize("case", CASES)
def test_fixed_effects_and_satterthwaite_equal_lmertest(case, reference, fits):
    ref, result = reference["fits"][case], fits[case]["satterthwaite"]
    table = result.fixed
    assert [n.replace("Intercept", "(Intercept)") for n in table.index] == ref["names"]
    se = np.asarray(ref["se"])
    assert close(table["estimate"], ref["beta"], 1e-6, 1e-6 * se)[0], (table["estimate"].tolist(), ref["beta"])
    assert close(table["se"], se, 1e-4)[0], (table["se"].tolist(), ref["se"])
    assert close(table["df"], ref["df"], 1e-3)[0], (table["df"].tolist(), ref["df"])


@pytest.mark.parametrize("case", CASES)
def test_variance_components_likelihood_and_singularity_equal_lme4(case, reference, fits):
    ref, fit = reference["fits"][case], fits[case]["satterthwaite"].fit
    theirs = np.array(ref["cov_re"], float).reshape(fit.cp.q, fit.cp.q)
    scale = np.sqrt(np.outer(np.diag(theirs), np.diag(theirs))) + 1e-9 * ref["sigma2"]
    difference = np.abs(fit.random_covariance - theirs) / scale
    assert fit.deviance <= ref["criterion"] + 1e-9  # at least as low as lme4's tight optimum
    assert fit.deviance <= ref["default_criterion"] + 1e-9  # never worse than lme4 with its defaults
    if difference.max() > 1e-6 or abs(fit.sigma2 / ref["sigma2"] - 1) > 1e-6:
        # In a flat direction double precision cannot place the optimum closer: lme4's point is
        # then only acceptable if our deviance function gives its criterion there (same
        # objective) and it is no better than ours by more than the deviance's resolution.
        at_theirs = profiled_deviance(fit.cp, np.array(ref["theta"]), fit.reml)
        assert at_theirs == pytest.approx(ref["criterion"], abs=1e-8)
        assert at_theirs - fit.deviance < 1e-8, (case, at_theirs - fit.deviance)
        assert difference.max() < 1e-4 and fit.sigma2 == pytest.approx(ref["sigma2"], rel=1e-4)
    assert fit.loglik == pytest.approx(ref["loglik"], abs=1e-6)
    assert fit.aic == pytest.approx(ref["aic"], abs=1e-6) and fit.bic == pytest.approx(ref["bic"], abs=1e-6)
    assert fit.is_singular == ref["singular"]


@pytest.mark.parametrize("case", KENWARD_ROGER_CASES)
def test_kenward_roger_equals_pbkrtest(case, reference, fits):
    ref, table = reference["fits"][case], fits[case]["kenward_roger"].fixed
    assert close(table["se"], ref["kr_se"], 1e-4)[0], (table["se"].tolist(), ref["kr_se"])
    assert close(table["df"], ref["kr_df"], 1e-3)[0], (table["df"].tolist(), ref["kr_df"])


@pytest.mark.parametrize("case", CONTRASTS)
def test_contrasts_equal_lmertest_contest1d(case, reference, fits):
    ref = reference["fits"][case]
    for ddf, key in (("satterthwaite", "contrast_s"), ("kenward_roger", "contrast_kr")):
        ours = fits[case][ddf].contrast(CONTRASTS[case])
        theirs = ref[key]
        assert ours["estimate"] == pytest.approx(theirs["Estimate"], rel=1e-6, abs=1e-6 * theirs["Std. Error"])
        assert ours["se"] == pytest.approx(theirs["Std. Error"], rel=1e-4)
        assert ours["df"] == pytest.approx(theirs["df"], rel=1e-3)
        assert ours["p_value"] == pytest.approx(theirs["Pr(>|t|)"], rel=1e-3, abs=1e-12)


def test_the_boundary_conventions_are_lmertests(reference, fits):
    """Dyestuff2 has no between-batch variance: REML df n - p = 29, ML df n = 30 (lmerTest)."""
    assert fits["dye_reml"]["satterthwaite"].fixed["df"].iloc[0] == pytest.approx(29, rel=1e-6)
    assert fits["dye_ml"]["satterthwaite"].fixed["df"].iloc[0] == pytest.approx(30, rel=1e-6)
    assert fits["dye_reml"]["satterthwaite"].is_singular and reference["fits"]["dye_reml"]["singular"]
