"""The IV analysis against R's AER::ivreg with sandwich's vcovHC, computed live: 2SLS
estimate, classical SE (AER's default), HC0 and HC1 robust SEs (ours reports HC1, which is
linearmodels' cov_type="robust" with debiased=True), the weak-instrument F and Wu-Hausman F of
summary(ivreg, diagnostics = TRUE), the effective F (HC1 first-stage Wald with one
instrument), and the Anderson-Rubin limits found in R by uniroot on the HC1 test of the
regression of y - b0 E on the instrument. Tolerance (issue 26): 1e-8 relative.
The federated 2SLS from per-study cross-products equals the pooled run to 1e-10."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rscript import run_r

from ipdpool.models.iv import crossproducts, design, federated_two_sls, hc1_2sls, iv_by_study_and_pooled, two_sls

R_IV = r"""
suppressPackageStartupMessages({library(AER); library(sandwich)})
one <- function(d, pooled) {
  d$y <- d[[paste0(outcome, "_fu_z")]]; d$b <- d[[paste0(outcome, "_bl_z")]]; d$ips <- as.numeric(d$arm == "IPS")
  d <- d[complete.cases(d[, c("y", "b", "employed", "ips")]), ]
  f <- if (pooled) y ~ employed + b + factor(study) | ips + b + factor(study) else y ~ employed + b | ips + b
  m <- ivreg(f, data = d)
  s <- summary(m, diagnostics = TRUE)$diagnostics
  controls <- if (pooled) "b + factor(study)" else "b"
  first <- lm(as.formula(paste("employed ~ ips +", controls)), d)
  ar <- function(b0) {
    r <- lm(as.formula(paste("I(y - b0 * employed) ~ ips +", controls)), d)
    coef(r)[["ips"]]^2 / vcovHC(r, type = "HC1")["ips", "ips"] - qchisq(0.95, 1)
  }
  est <- coef(m)[["employed"]]; se <- sqrt(vcov(m)["employed", "employed"])
  list(n = nobs(m), estimate = est, se = se,
       hc0 = sqrt(vcovHC(m, type = "HC0")["employed", "employed"]),
       hc1 = sqrt(vcovHC(m, type = "HC1")["employed", "employed"]),
       weak = s["Weak instruments", "statistic"], wu = s["Wu-Hausman", "statistic"], wu_p = s["Wu-Hausman", "p-value"],
       effective_f = coef(first)[["ips"]]^2 / vcovHC(first, type = "HC1")["ips", "ips"],
       ar_low = if (ar(est - 200 * se) > 0) uniroot(ar, c(est - 200 * se, est), tol = 1e-14)$root else NA,
       ar_high = if (ar(est + 200 * se) > 0) uniroot(ar, c(est, est + 200 * se), tol = 1e-14)$root else NA)
}
out <- list()
for (outcome in outcomes) {
  out[[outcome]] <- list(pooled = one(pooled, TRUE))
  for (st in sort(unique(pooled$study[!is.na(pooled[[paste0(outcome, "_fu_z")]])]))) {
    out[[outcome]][[st]] <- one(pooled[pooled$study == st, ], FALSE)
  }
}
"""


def synthetic_pooled(seed: int = 26) -> pd.DataFrame:
    """Three trials with confounded employment (a latent trait raises work and outcome) and a
    heteroskedastic outcome."""
    rng = np.random.default_rng(seed)
    frames = []
    for study, n, low, high in (("A", 300, 0.2, 0.5), ("B", 200, 0.1, 0.45), ("C", 250, 0.3, 0.6)):
        ips = rng.random(n) < 0.5
        trait = rng.normal(size=n)
        baseline = 0.5 * trait + rng.normal(size=n)
        employed = rng.random(n) < np.where(ips, high, low) + 0.1 * np.tanh(trait)
        y = 0.3 * employed + 0.5 * baseline + 0.4 * trait + rng.normal(size=n) * (1 + 0.5 * employed)
        frames.append(
            pd.DataFrame(
                {
                    "study": study,
                    "arm": np.where(ips, "IPS", "SAU"),
                    "employed": employed.astype(float),
                    "qol_fu_z": y,
                    "qol_bl_z": baseline,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def check_against_r(results, reference):
    for result in results:
        ref = reference[result.scope]
        assert result.n == ref["n"]
        for ours, theirs in (
            (result.estimate, ref["estimate"]),
            (result.se, ref["se"]),
            (result.se_robust, ref["hc1"]),
            (result.first_stage_f, ref["weak"]),
            (result.wu_hausman_f, ref["wu"]),
            (result.wu_hausman_p, ref["wu_p"]),
            (result.effective_f, ref["effective_f"]),
        ):
            assert ours == pytest.approx(theirs, rel=1e-8), (result.scope, ours, theirs)
        for ours, theirs in ((result.ar_low, ref["ar_low"]), (result.ar_high, ref["ar_high"])):
            if theirs is None:
                assert result.ar_kind != "interval"
            else:
                assert ours == pytest.approx(theirs, rel=1e-8, abs=1e-10), (result.scope, ours, theirs)


def test_iv_equals_aer_ivreg_with_sandwich_on_confounded_data():
    pooled = synthetic_pooled()
    reference = run_r('outcomes <- "qol"\n' + R_IV, {"pooled": pooled})["qol"]
    results = iv_by_study_and_pooled(pooled, "qol")
    assert [r.scope for r in results] == ["A", "B", "C", "pooled"]
    check_against_r(results, reference)
    # HC0 is HC1 without the n / (n - k) factor
    pooled_fit = results[-1]
    k = 5  # employed, baseline, three study dummies
    hc0 = pooled_fit.se_robust * np.sqrt((pooled_fit.n - k) / pooled_fit.n)
    assert hc0 == pytest.approx(reference["pooled"]["hc0"], rel=1e-8)


def test_federated_two_sls_from_per_study_crossproducts_equals_the_pooled_fit():
    pooled = synthetic_pooled(7)
    matrix = design(pooled, "qol")
    cp, n, names = crossproducts(matrix)
    direct = two_sls(cp, n, names)
    per_study = {}
    for study, part in pooled.groupby("study"):
        study_cp, count, _ = crossproducts(design(part, "qol"))
        per_study[study] = (study_cp, count)
    federated = federated_two_sls(per_study)
    np.testing.assert_allclose(federated.beta, direct.beta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(federated.vcov, direct.vcov, rtol=1e-10, atol=1e-14)
    assert federated.n == n
    assert np.isfinite(hc1_2sls(matrix, direct)).all()


@pytest.mark.workflow
def test_iv_on_the_demo_equals_aer_ivreg(completed_run):
    pooled = pd.read_parquet(completed_run / "results" / "harmonized" / "pooled.parquet")
    outcomes = ["quality_of_life", "negative_symptoms", "functioning"]
    columns = ["study", "arm", "employed"] + [f"{o}_{w}_z" for o in outcomes for w in ("fu", "bl")]
    frame = pooled[columns].astype({c: object for c in ("study", "arm")})
    reference = run_r(
        f"outcomes <- c({', '.join(repr(o) for o in outcomes)})\n" + R_IV.replace("'", '"'), {"pooled": frame}
    )
    for outcome in outcomes:
        check_against_r(iv_by_study_and_pooled(frame, outcome), reference[outcome])


def test_iv_equals_linearmodels_iv2sls():
    """linearmodels' IV2SLS (debiased: classical sigma^2 with n - k, robust = HC1) on the same design."""
    from linearmodels.iv import IV2SLS

    pooled = synthetic_pooled(11)
    matrix = design(pooled, "qol")
    controls = [c for c in matrix.columns if c.startswith("study[")] + ["baseline"]
    model = IV2SLS(matrix["y"], matrix[controls], matrix[["employed"]], matrix[["ips"]])
    classical = model.fit(cov_type="unadjusted", debiased=True)
    robust = model.fit(cov_type="robust", debiased=True)
    ours = iv_by_study_and_pooled(pooled, "qol")[-1]
    assert ours.estimate == pytest.approx(classical.params["employed"], rel=1e-10)
    assert ours.se == pytest.approx(classical.std_errors["employed"], rel=1e-10)
    assert ours.se_robust == pytest.approx(robust.std_errors["employed"], rel=1e-10)
