"""The study-stratified imputation of ipdpool.imputation.chained, run by R's mice with the same
imputation models (norm for the scores, logreg for employment, each study on its own), then
the one-stage model of worked vs did not work (lmer, REML) on each completed data set.
Shared by tests/test_imputation_mice.py (small m, in CI) and bench/bench_mi_mice.py (m = 200)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ipdpool.imputation.analysis import completed_statistics, one_stage_rows
from ipdpool.imputation.chained import impute

MODEL = {"employed": {"terms": ["employed"], "adjust": ["baseline"], "report": {"employed": {"employed": 1}}}}

MICE_SCRIPT = """
suppressPackageStartupMessages({library(mice); library(lme4)})
d <- data.frame(study = data$study, ips = as.numeric(data$arm == "IPS"), employed = data$employed,
                bl = data$bl, fu = data$fu)
d <- d[ave(!is.na(d$fu), d$study, FUN = any), ]  # studies that never measured the outcome: not imputed
set.seed(seed)
completed <- lapply(split(d, d$study), function(s) {
  s$employed <- factor(s$employed, levels = c(0, 1))
  method <- c(employed = "logreg", bl = "norm", fu = "norm")  # one per block (formula)
  method[sapply(names(method), function(v) !anyNA(s[[v]]))] <- ""
  formulas <- list(employed = employed ~ ips + bl + fu + ips:bl + ips:fu,
                   bl = bl ~ ips + employed + ips:employed + fu,
                   fu = fu ~ ips + employed + ips:employed + bl)
  imp <- mice(s, m = m, maxit = maxit, method = method, formulas = formulas, printFlag = FALSE)
  lapply(seq_len(m), function(j) complete(imp, j))
})
fits <- t(sapply(seq_len(m), function(j) {
  one <- do.call(rbind, lapply(completed, function(imps) imps[[j]]))
  one$employed <- as.numeric(as.character(one$employed))
  f <- lmer(fu ~ employed + bl + (1 | study), data = one, REML = TRUE)
  c(fixef(f)[["employed"]], as.matrix(vcov(f))["employed", "employed"])
}))
out <- list(estimate = fits[, 1], variance = fits[, 2])
"""


def r_frame(data: pd.DataFrame, outcome: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"study": data["study"], "arm": data["arm"], "employed": data["employed"],
         "bl": data[f"{outcome}_bl_z"], "fu": data[f"{outcome}_fu_z"]}
    )  # fmt: skip


def r_script(m: int, maxit: int, seed: int) -> str:
    return f"m <- {m}; maxit <- {maxit}; seed <- {seed}\n" + MICE_SCRIPT


def python_estimates(data: pd.DataFrame, outcome: str, m: int, iterations: int, seed: int) -> pd.DataFrame:
    """ipdpool's completed data sets of the same model: estimate and variance of `employed` each."""
    analysis = {"models": MODEL, "outcomes": [outcome]}
    rows = []
    for j in range(m):
        completed = impute(data, outcome, j, seed, iterations=iterations)
        row = one_stage_rows(completed_statistics(completed, outcome, analysis), outcome, analysis)[0]
        rows.append({"estimate": row["estimate"], "variance": row["se"] ** 2})
    return pd.DataFrame(rows)


def agreement(python: pd.DataFrame, r_estimates: np.ndarray) -> dict:
    """The two pooled estimates (means over imputations) and their Monte Carlo SEs (sqrt(b / m))."""
    mcse_python = python["estimate"].std(ddof=1) / np.sqrt(len(python))
    mcse_r = np.std(r_estimates, ddof=1) / np.sqrt(len(r_estimates))
    difference = python["estimate"].mean() - np.mean(r_estimates)
    combined = float(np.hypot(mcse_python, mcse_r))
    return {"python": python["estimate"].mean(), "r": float(np.mean(r_estimates)), "difference": difference,
            "mcse_python": mcse_python, "mcse_r": mcse_r, "combined_mcse": combined,
            "in_mcse": abs(difference) / combined}  # fmt: skip
