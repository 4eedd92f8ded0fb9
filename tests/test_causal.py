"""The first stage from 2x2 tables against R (glm per study, metafor's rma REML, lme4's glmer
on the participant rows), computed live; the disclosure rule on small cells; E-value rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rscript import run_r

from ipdpool.causal import evalue_table, first_stage_table
from ipdpool.evalue import evalue_smd

R_FIRST_STAGE = r"""
suppressPackageStartupMessages({library(lme4); library(metafor)})
rows$ips <- as.numeric(rows$arm == "IPS")
per <- lapply(sort(unique(rows$study)), function(s) {
  m <- glm(employed ~ ips, binomial, rows[rows$study == s, ], control = glm.control(epsilon = 1e-15, maxit = 100))
  c(coef(m)[["ips"]], sqrt(vcov(m)["ips", "ips"]))
})
yi <- sapply(per, `[`, 1); sei <- sapply(per, `[`, 2)
ma <- rma(yi = yi, sei = sei, method = "REML", control = list(threshold = 1e-14, maxiter = 10000))
tight <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5), tolPwrss = 1e-12)
g <- glmer(employed ~ ips + (1 | study), rows, binomial, control = tight)
# The marginal likelihood by adaptive numerical integration (stats::integrate, not lme4), its
# optimum and its numDeriv Hessian: the limit that adaptive quadrature converges to.
cells <- aggregate(employed ~ study + ips, rows, function(x) c(sum(x), length(x)))
deviance <- function(p) {
  -2 * sum(sapply(split(cells, cells$study), function(d) {
    k <- d$employed[, 1]; n <- d$employed[, 2]
    f <- function(b) sapply(b, function(bi) exp(sum(dbinom(k, n, plogis(p[2] + p[3] * d$ips + p[1] * bi), log = TRUE))
                                                 + dnorm(bi, log = TRUE) + 60))
    log(integrate(f, -Inf, Inf, rel.tol = 1e-13, subdivisions = 1000L)$value) - 60
  }))
}
g25 <- glmer(employed ~ ips + (1 | study), rows, binomial, nAGQ = 25, control = tight)
start <- c(getME(g25, "theta"), fixef(g25))  # near the optimum: few integrate() passes
best <- optim(start, deviance, method = "BFGS", control = list(reltol = 1e-15, maxit = 1000))
exact_se <- sqrt(diag(2 * solve(numDeriv::hessian(deviance, best$par))))[3]
out <- list(log_or = yi, se = sei, ma = c(ma$b[1], ma$se, ma$tau2),
            glmer = c(fixef(g)[["ips"]], sqrt(vcov(g)["ips", "ips"]), getME(g, "theta")^2),
            integrated = c(best$par[3], exact_se, best$par[1]^2))
"""


def participants(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for study, n, low, high in (
        ("A", 160, 0.2, 0.5),
        ("B", 90, 0.1, 0.45),
        ("C", 200, 0.35, 0.55),
        ("D", 70, 0.2, 0.7),
    ):
        ips = rng.random(n) < 0.5
        employed = (rng.random(n) < np.where(ips, high, low)).astype(int)
        frames.append(pd.DataFrame({"study": study, "arm": np.where(ips, "IPS", "SAU"), "employed": employed}))
    return pd.concat(frames, ignore_index=True)


def table1_like(rows: pd.DataFrame) -> dict[str, dict]:
    """Table 1's employment-by-arm counts, as in every study's statistics and bundle."""
    out = {}
    for study, part in rows.groupby("study"):
        out[study] = {
            arm: {"employed": {str(k): int(v) for k, v in part[part["arm"] == arm]["employed"].value_counts().items()}}
            for arm in ("IPS", "SAU")
        }
    return out


def test_first_stage_from_2x2_tables_equals_glm_metafor_and_glmer_on_participant_rows():
    rows = participants()
    reference = run_r(R_FIRST_STAGE, {"rows": rows})
    table = first_stage_table(table1_like(rows), nfilter_tab=3)
    per_study = table[table["scope"] != "pooled"]
    np.testing.assert_allclose(per_study["log_or"], reference["log_or"], rtol=1e-8)
    np.testing.assert_allclose(per_study["se"], reference["se"], rtol=1e-8)
    two_stage = table[table["method"].str.startswith("two-stage")].iloc[0]
    np.testing.assert_allclose([two_stage["log_or"], two_stage["se"], two_stage["tau2"]], reference["ma"], rtol=1e-6)
    one_stage = table[table["method"].str.startswith("one-stage")].iloc[0]
    assert one_stage["log_or"] == pytest.approx(reference["glmer"][0], rel=1e-5)
    # lme4's SE comes from a finite-difference Hessian of a criterion with ~1e-8 of PIRLS noise
    assert one_stage["se"] == pytest.approx(reference["glmer"][1], rel=5e-4)
    assert one_stage["tau2"] == pytest.approx(reference["glmer"][2], rel=1e-5)
    assert one_stage["n"] == len(rows)
    # adaptive quadrature with 25 points against the marginal likelihood integrated by R's
    # integrate(): an SE check independent of lme4's finite differences
    accurate = first_stage_table(table1_like(rows), nfilter_tab=3, n_agq=25)
    accurate = accurate[accurate["method"].str.startswith("one-stage")].iloc[0]
    integrated = reference["integrated"]
    assert accurate["log_or"] == pytest.approx(integrated[0], rel=1e-6)
    assert accurate["se"] == pytest.approx(integrated[1], rel=1e-5)
    assert accurate["tau2"] == pytest.approx(integrated[2], rel=3e-5)  # optim stops ~1e-5 short in theta


def test_a_study_with_a_small_cell_is_refused_and_left_out():
    rows = participants()
    tables = table1_like(rows)
    tables["B"]["SAU"]["employed"]["1"] = 2  # below nfilter_tab 3
    table = first_stage_table(tables, nfilter_tab=3)
    refused = table[table["scope"] == "B"].iloc[0]
    assert refused["status"].startswith("refused") and np.isnan(refused["log_or"])
    assert refused[["employed_SAU", "not_employed_SAU", "employed_IPS", "not_employed_IPS"]].isna().all()
    for pooled in table[table["scope"] == "pooled"].itertuples():
        assert pooled.k == 3
        assert "study B left out (refused: a cell below nfilter_tab 3)" in pooled.notes


R_EMPTY_CELL = r"""
suppressPackageStartupMessages({library(lme4)})
rows$ips <- as.numeric(rows$arm == "IPS")
tight <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5), tolPwrss = 1e-12)
g <- glmer(employed ~ ips + (1 | study), rows, binomial, control = tight)
out <- c(fixef(g)[["ips"]], getME(g, "theta")^2)
"""


def test_a_study_with_an_empty_cell_enters_the_one_stage_model_as_in_lme4_on_the_rows():
    rows = participants()
    rows.loc[(rows["study"] == "D") & (rows["arm"] == "SAU"), "employed"] = 0  # nobody works under SAU in D
    reference = run_r(R_EMPTY_CELL, {"rows": rows})
    table = first_stage_table(table1_like(rows), nfilter_tab=3)
    one_stage = table[table["method"].str.startswith("one-stage")].iloc[0]
    assert (one_stage["k"], one_stage["n"]) == (4, len(rows))
    assert one_stage["log_or"] == pytest.approx(reference[0], rel=1e-5)
    assert one_stage["tau2"] == pytest.approx(reference[1], rel=1e-4)
    two_stage = table[table["method"].str.startswith("two-stage")].iloc[0]
    assert two_stage["k"] == 3 and "study D left out (not estimable: an empty cell" in two_stage["notes"]


def test_evalue_rows_are_those_of_the_headline_employed_smds():
    one_stage = pd.DataFrame(
        {
            "outcome": ["a", "b", "a"],
            "contrast": ["employed", "employed", "ips"],
            "model": ["random_intercept"] * 3,
            "estimate": [0.5, -0.3, 0.1],
            "se": [0.25, 0.1, 0.1],
        }
    )
    table = evalue_table(one_stage)
    assert table["outcome"].tolist() == ["a", "b"]
    assert table.iloc[0]["evalue"] == pytest.approx(evalue_smd(0.5, 0.25)["evalue"])
    assert table.iloc[1]["evalue_ci"] == pytest.approx(evalue_smd(-0.3, 0.1)["evalue_ci"])
