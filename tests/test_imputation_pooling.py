"""Rubin's rules with Barnard-Rubin df against mice::pool.scalar and mitml::testEstimates (live in R),
on the same estimates, and the whole multiple-imputation analysis against lme4/lmerTest, metafor and
mitml fitted in R on the same completed data sets."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rscript import run_r

from ipdpool.imputation.analysis import completed_statistics, fit_imputation, pool_estimates
from ipdpool.imputation.chained import impute
from ipdpool.imputation.pooling import rubin
from ipdpool.simulation import ANALYSIS, simulate_trials


def pooling_cases() -> list[dict]:
    rng = np.random.default_rng(25)
    cases = []
    for m in (2, 5, 20, 60):
        for df_complete in (np.inf, 2.5, 31.7, 1.0e4):
            q = rng.normal(0.3, rng.uniform(0.01, 0.3), m)
            u = rng.uniform(0.5, 1.5, m) * rng.uniform(0.001, 0.05)
            cases.append({"q": q, "u": u, "df_complete": df_complete})
    # no between-imputation variance: mice floors lambda at 1e-4
    cases.append({"q": np.full(5, 0.2), "u": np.full(5, 0.01), "df_complete": 40.0})
    return cases


R_POOLING = """
suppressPackageStartupMessages({library(mice); library(mitml)})
out <- unname(lapply(split(draws, draws$case)[as.character(sort(unique(draws$case)))], function(case) {
  q <- case$q; u <- case$u
  dfcom <- if (is.na(case$df_complete[1])) Inf else case$df_complete[1]
  s <- pool.scalar(q, u, n = dfcom, k = 0)
  te <- testEstimates(qhat = matrix(q, nrow = 1), uhat = array(u, dim = c(1, 1, length(u))),
                      df.com = if (is.finite(dfcom)) dfcom else NULL)$estimates
  list(mice = list(qbar = s$qbar, t = s$t, df = s$df, r = s$r, fmi = s$fmi, b = s$b, ubar = s$ubar),
       mitml = list(estimate = te[1, "Estimate"], se = te[1, "Std.Error"], df = te[1, "df"],
                    p = te[1, "P(>|t|)"], riv = te[1, "RIV"], fmi = te[1, "FMI"]))
}))
"""


@pytest.fixture(scope="module")
def r_pooling():
    cases = pooling_cases()
    frame = pd.concat(
        [
            pd.DataFrame({"case": i, "q": c["q"], "u": c["u"], "df_complete": c["df_complete"]})
            for i, c in enumerate(cases)
        ]
    )
    frame["df_complete"] = frame["df_complete"].replace(np.inf, np.nan)  # NA: complete-data df infinite
    return cases, run_r(R_POOLING, {"draws": frame})


def test_rubin_equals_mice_pool_scalar(r_pooling):
    cases, reference = r_pooling
    for case, ref in zip(cases, reference):
        pooled = rubin(case["q"], case["u"], case["df_complete"])
        mice = ref["mice"]
        np.testing.assert_allclose(pooled.estimate, mice["qbar"], rtol=1e-12)
        np.testing.assert_allclose(pooled.se**2, mice["t"], rtol=1e-10)
        np.testing.assert_allclose(pooled.within, mice["ubar"], rtol=1e-10)
        np.testing.assert_allclose(pooled.between, mice["b"], rtol=1e-10, atol=1e-18)
        np.testing.assert_allclose(pooled.riv, mice["r"], rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(pooled.df, mice["df"], rtol=1e-10)
        np.testing.assert_allclose(pooled.fmi, mice["fmi"], rtol=1e-10)


def test_rubin_equals_mitml_test_estimates(r_pooling):
    cases, reference = r_pooling
    compared = 0
    for case, ref in zip(cases, reference):
        pooled = rubin(case["q"], case["u"], case["df_complete"])
        if pooled.lambda_ < 1e-4:
            continue  # mitml does not floor lambda (mice does): df differ by design there
        mitml = ref["mitml"]
        np.testing.assert_allclose(
            [pooled.estimate, pooled.se, pooled.df, pooled.riv, pooled.fmi],
            [mitml["estimate"], mitml["se"], mitml["df"], mitml["riv"], mitml["fmi"]],
            rtol=1e-10,
        )
        np.testing.assert_allclose(pooled.p_value, mitml["p"], rtol=1e-8, atol=1e-15)
        compared += 1
    assert compared == len(cases) - 1


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    q=st.lists(finite, min_size=2, max_size=30),
    seed=st.integers(0, 2**32 - 1),
    shift=st.floats(-1e4, 1e4),
    scale=st.floats(1e-3, 1e3),
    df_complete=st.one_of(st.just(np.inf), st.floats(1.0, 1e5)),
)
def test_rubin_is_equivariant_and_ignores_imputation_order(q, seed, shift, scale, df_complete):
    """Shifting and scaling the estimates (variances by scale^2) moves the estimate and CI alike and
    leaves df, RIV, FMI and p unchanged; the order of the completed data sets does not matter."""
    rng = np.random.default_rng(seed)
    q = np.array(q) + rng.normal(0, 1, len(q))  # never all equal
    u = rng.uniform(0.1, 10, len(q))
    base = rubin(q, u, df_complete)
    # the shifted inputs are themselves rounded to ~1e-16 x shift, up to ~1e-8 of their spread here
    moved = rubin(shift + scale * q, scale**2 * u, df_complete)
    np.testing.assert_allclose(
        moved.estimate, shift + scale * base.estimate, rtol=1e-9, atol=1e-9 * (abs(shift) + scale)
    )
    np.testing.assert_allclose(
        [moved.se, moved.ci_high - moved.ci_low], [scale * base.se, scale * (base.ci_high - base.ci_low)], rtol=1e-6
    )
    np.testing.assert_allclose([moved.df, moved.riv, moved.fmi], [base.df, base.riv, base.fmi], rtol=1e-6)
    order = rng.permutation(len(q))
    swapped = rubin(q[order], u[order], df_complete)
    np.testing.assert_allclose(
        [swapped.estimate, swapped.se, swapped.df, swapped.fmi], [base.estimate, base.se, base.df, base.fmi], rtol=1e-12
    )


def test_rubin_refuses_a_single_data_set_and_nonfinite_values():
    with pytest.raises(ValueError, match="at least 2"):
        rubin([0.1], [0.01])
    with pytest.raises(ValueError, match="finite"):
        rubin([0.1, np.nan], [0.01, 0.01])


def test_rubin_refuses_zero_or_negative_within_variance_and_pooling_names_the_term():
    """mice's pool.scalar gives NaN for riv = b / 0; here a sentence, and the pooled row says which term."""
    for q in ([1.0, 1.0], [1.0, 1.2]):
        with pytest.raises(ValueError, match="positive within-imputation variance.*0 in all"):
            rubin(q, [0.0, 0.0])
    with pytest.raises(ValueError, match="negative in some"):
        rubin([1.0, 1.1], [0.01, -0.01])
    group = pd.DataFrame({"outcome": "o", "analysis": "one-stage", "contrast": "c", "term": "employed",
                          "method": "REML", "hksj": False, "imputation": [0, 1], "estimate": [1.0, 1.0],
                          "se": [0.0, 0.0], "df": [30.0, 30.0], "n_participants": 40, "n_studies": 2,
                          "studies": "A,B", "status": "estimated", "warnings": ""})  # fmt: skip
    row = pool_estimates(group).iloc[0]
    assert row["term"] == "employed" and row["status"] == "not estimated"
    assert "positive within-imputation variance" in row["warnings"]


R_ANALYSIS = """
suppressPackageStartupMessages({library(lmerTest); library(metafor); library(mitml); library(mice)})
fits <- list(); two <- list()
for (j in sort(unique(completed$imputation))) {
  d <- completed[completed$imputation == j, ]
  tight <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 2e-4, rhoend = 2e-11))
  fits[[length(fits) + 1]] <- lmer(o_fu_z ~ employed + o_bl_z + (1 | study), data = d, REML = TRUE, control = tight)
  per <- do.call(rbind, lapply(split(d, d$study), function(s) {
    f <- summary(lm(o_fu_z ~ employed + o_bl_z, data = s))$coefficients
    data.frame(yi = f["employed", 1], vi = f["employed", 2]^2)
  }))
  r <- rma(yi, vi, data = per, method = "REML", control = list(threshold = 1e-12, maxiter = 10000))
  two[[length(two) + 1]] <- c(r$beta[1], r$se^2)
}
dfs <- sapply(fits, function(f) summary(f)$coefficients["employed", "df"])
te <- testEstimates(as.mitml.result(fits), df.com = mean(dfs))$estimates
two <- do.call(rbind, two)
s <- pool.scalar(two[, 1], two[, 2], n = Inf, k = 0)
out <- list(one = list(estimate = te["employed", "Estimate"], se = te["employed", "Std.Error"],
                       df = te["employed", "df"], fmi = te["employed", "FMI"], riv = te["employed", "RIV"]),
            two = list(estimate = s$qbar, se = sqrt(s$t), df = s$df, fmi = s$fmi))
"""


def test_multiple_imputation_analysis_equals_lmertest_metafor_and_mitml_on_the_same_completed_data():
    rng = np.random.default_rng(np.random.SeedSequence(2525))
    scenario = {"studies": 5, "participants": [60, 200], "tau2": 0.05, "employment_rate": 0.4, "smd": 0.4,
                "attrition": 0.0}  # fmt: skip
    data = simulate_trials(rng, scenario)
    data.loc[rng.random(len(data)) < 1 / (1 + np.exp(1 + data["o_bl_z"])), "o_fu_z"] = np.nan  # MAR
    data.loc[rng.random(len(data)) < 0.1, "employed"] = np.nan
    data.loc[rng.random(len(data)) < 0.05, "o_bl_z"] = np.nan
    analysis = {**ANALYSIS, "prediction_interval": "higgins"}
    completed, estimates = [], []
    for j in range(5):
        frame = impute(data, "o", j, seed=7, iterations=5)
        assert not frame[["employed", "o_bl_z", "o_fu_z"]].isna().any().any()
        completed.append(frame.assign(imputation=j))
        estimates.append(fit_imputation(completed_statistics(frame, "o", analysis), "o", analysis, j))
    pooled = pool_estimates(pd.concat(estimates, ignore_index=True))
    reference = run_r(R_ANALYSIS, {"completed": pd.concat(completed, ignore_index=True)})
    one = pooled[(pooled["analysis"] == "one-stage") & (pooled["term"] == "employed")].iloc[0]
    np.testing.assert_allclose(
        [one["estimate"], one["se"], one["df"], one["fmi"], one["riv"]],
        [reference["one"][k] for k in ("estimate", "se", "df", "fmi", "riv")],
        rtol=1e-5,
    )
    two = pooled[(pooled["analysis"] == "two-stage") & (pooled["method"] == "REML") & ~pooled["hksj"].astype(bool)]
    two = two[two["term"] == "employed"].iloc[0]
    np.testing.assert_allclose(
        [two["estimate"], two["se"], two["df"], two["fmi"]],
        [reference["two"][k] for k in ("estimate", "se", "df", "fmi")],
        rtol=1e-5,
    )
