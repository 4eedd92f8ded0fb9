"""Every one-stage and two-stage table the workflow wrote for the demo, against R.

One-stage: R refits each estimated row's model (primary, ML, unadjusted, covariates,
leave-one-out, within/between, random slope, centre within study) from the pooled harmonized data with its own
formula and model frame, and computes each reported contrast with lmerTest's contest1D
(pbkrtest for Kenward-Roger). The study fixed-effect variant is not a mixed model
(linearmodels' PanelOLS) and is left out. Two-stage: R fits each study by lm and pools the
estimates with metafor's rma (FE, DL, REML, PM, with and without Knapp-Hartung), predict
and leave1out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from rscript import LME4_TIGHT, run_r

from ipdpool.models.lmm import fit_lmm, profiled_deviance
from ipdpool.models.nested import fit_nested_entries
from ipdpool.models.onestage import centre_parts, fit_outcome
from ipdpool.models.statistics import combine, present, statistics_by_study
from ipdpool.tables import read_table

pytestmark = pytest.mark.workflow

R_TERMS = {
    "employed": "employed",
    "ips": "ips",
    "ips:employed": "ips:employed",
    "baseline": "baseline",
    "age": "age",
    "sex": "female",
    "diagnosis": "diagnosis",
}

R_REFIT = (
    LME4_TIGHT
    + r"""
suppressPackageStartupMessages({library(lmerTest)})
pooled$ips <- as.numeric(pooled$arm == "IPS")
pooled$female <- as.numeric(pooled$sex == "female")
pooled$diagnosis <- relevel(factor(pooled$diagnosis), ref = "schizophrenia_spectrum")
out <- list()
for (i in seq_len(nrow(spec))) {
  s <- spec[i, ]
  d <- pooled
  d$y <- d[[paste0(s$outcome, "_fu_z")]]
  d$baseline <- d[[paste0(s$outcome, "_bl_z")]]
  if (s$exclude != "") d <- d[d$study != s$exclude, ]
  used <- setdiff(all.vars(as.formula(s$formula)), c("employed_within", "employed_between"))
  if (s$within_between) used <- union(used, "employed")
  d <- d[complete.cases(d[, used]), ]
  if (s$within_between) {
    d$employed_between <- ave(d$employed, d$study)
    d$employed_within <- d$employed - d$employed_between
  }
  m <- lmer(as.formula(s$formula), d, REML = s$reml, control = tight)
  vc <- VarCorr(m)$study
  rows <- contrasts[contrasts$id == s$id, ]
  res <- list(tau2 = vc[1, 1], sigma2 = sigma(m)^2, singular = isSingular(m), n = nobs(m), terms = list(),
              theta = I(unname(getME(m, "theta"))), criterion = if (s$reml) REMLcrit(m) else deviance(m))
  if (nrow(vc) > 1) { res$slope_variance <- vc[2, 2]; res$slope_correlation <- attr(vc, "correlation")[1, 2] }
  if (!is.null(VarCorr(m)[["site:study"]])) res$centre_variance <- VarCorr(m)[["site:study"]][1, 1]
  for (term in unique(rows$term)) {
    w <- rows[rows$term == term, ]
    L <- setNames(rep(0, length(fixef(m))), names(fixef(m)))
    L[w$coefficient] <- w$weight
    t <- contest1D(m, L, ddf = "Satterthwaite")
    entry <- list(estimate = t$Estimate, se = t[["Std. Error"]], df = t$df)
    if (s$kr) { k <- contest1D(m, L, ddf = "Kenward-Roger"); entry$kr_se <- k[["Std. Error"]]; entry$kr_df <- k$df }
    res$terms[[term]] <- entry
  }
  out[[s$id]] <- res
}
"""
)


def r_formula(terms: list[str], random: str) -> str:
    """random: the terms by study, or a whole random part ('1 | study/site')."""
    return (
        "y ~ "
        + " + ".join(R_TERMS.get(t, t) for t in terms)
        + (f" + ({random})" if "|" in random else f" + ({random} | study)")
    )


def model_spec(analysis: dict, contrast: str, variant: str) -> tuple[list[str], dict, dict]:
    """(terms, report, R options) of a table row, from the config as the workflow read it."""
    model = analysis["models"][contrast]
    terms, adjust, report = list(model["terms"]), list(model.get("adjust", [])), dict(model["report"])
    options = {"reml": variant != "ml", "exclude": "", "within_between": False, "random": "1"}
    if variant == "unadjusted":
        adjust = [a for a in adjust if a != "baseline"]
    elif variant == "covariates":
        adjust += analysis["sensitivity"]["covariates"]
    elif variant.startswith("leave_out_"):
        options["exclude"] = variant.removeprefix("leave_out_")
    elif variant == "within_between":
        terms = [t for t in terms if t != "employed"] + ["employed_within", "employed_between"]
        report = {
            "employed_within": {"employed_within": 1},
            "employed_between": {"employed_between": 1},
            "between_minus_within": {"employed_between": 1, "employed_within": -1},
        }
        options["within_between"] = True
    elif variant == "random_slope_employed":
        options["random"] = "1 + employed"
    elif variant == "centre_within_study":
        options["random"] = "1 | study/site"
    return terms + adjust, report, options


@pytest.fixture(scope="module")
def demo_tables(completed_run):
    results = completed_run / "results"
    pooled = pd.read_parquet(results / "harmonized" / "pooled.parquet")
    one_stage = read_table(results / "tables" / "one_stage.tsv").assign(variant="random_intercept")
    sensitivity = read_table(results / "tables" / "sensitivity.tsv")
    tables = pd.concat([one_stage, sensitivity], ignore_index=True)
    tables = tables[(tables["status"] == "estimated") & (tables["variant"] != "study_fixed_effect")]
    analysis = yaml.safe_load((completed_run / "config" / "config.yaml").read_text())["analysis"]
    return pooled, tables, analysis


@pytest.fixture(scope="module")
def r_reference(demo_tables):
    pooled, tables, analysis = demo_tables
    spec, contrasts = [], []
    for (outcome, contrast, variant), _ in tables.groupby(["outcome", "contrast", "variant"], sort=True):
        terms, report, options = model_spec(analysis, contrast, variant)
        key = f"{outcome}|{contrast}|{variant}"
        spec.append(
            {
                "id": key,
                "outcome": outcome,
                "formula": r_formula(terms, options.pop("random")),
                "kr": variant == "random_intercept",
                **options,
            }
        )
        contrasts += [
            {"id": key, "term": term, "coefficient": coefficient, "weight": weight}
            for term, weights in report.items()
            for coefficient, weight in weights.items()
        ]
    columns = ["study", "site", "arm", "employed", "age", "sex", "diagnosis"] + [
        c for c in pooled if c.endswith(("_bl_z", "_fu_z"))
    ]
    data = pooled[columns].astype({"employed": float})
    return run_r(R_REFIT, {"pooled": data, "spec": pd.DataFrame(spec), "contrasts": pd.DataFrame(contrasts)})


def test_every_estimated_one_stage_row_equals_lmertest(demo_tables, r_reference):
    pooled, tables, analysis = demo_tables
    checked = checked_exactly = 0
    for _, row in tables.iterrows():
        ref = r_reference[f"{row['outcome']}|{row['contrast']}|{row['variant']}"]
        theirs = ref["terms"][row["term"]]
        where = f"{row['outcome']} {row['contrast']} {row['variant']} {row['term']}"
        assert row["n_participants"] == ref["n"], where
        assert row["estimate"] == pytest.approx(theirs["estimate"], rel=1e-6, abs=1e-6 * theirs["se"]), where
        assert row["se"] == pytest.approx(theirs["se"], rel=1e-4), where
        assert row["df"] == pytest.approx(theirs["df"], rel=1e-3), where
        assert bool(row["singular"]) == ref["singular"], where
        components = ["sigma2", "tau2"] + [c for c in ("slope_variance", "centre_variance") if c in ref]
        differs = any(abs(row[c] - ref[c]) > 1e-6 * ref[c] + 1e-7 * ref["sigma2"] for c in components)
        if row["variant"] == "centre_within_study":
            if differs:
                assert_equivalent_nested_optimum(pooled, analysis, row, ref)
            else:
                checked_exactly += 1
        elif any(abs(row[c] - ref[c]) > 1e-6 * ref[c] + 1e-9 * ref["sigma2"] for c in components):
            assert_equivalent_optimum(pooled, analysis, row, ref)
        else:
            checked_exactly += 1
        checked += 1
    assert checked == len(tables) and checked > 300
    assert checked_exactly > 0.8 * checked


def assert_equivalent_nested_optimum(pooled: pd.DataFrame, analysis: dict, row: pd.Series, ref: dict) -> None:
    """Centre within study: where the study and centre variances are barely told apart (lme4 then
    warns of a degenerate Hessian), the REML criterion is flat along their split. lme4's split is
    accepted if our refit's criterion equals lme4's to 1e-8 and is not above it."""
    variants = {**analysis, "outcomes": [row["outcome"]], "sensitivity": {"variants": ["centre_within_study"]}}
    statistics = statistics_by_study(pooled, variants)
    key = f"{row['contrast']}/primary"
    blocks, whole = centre_parts(statistics, row["outcome"], key, present(statistics, row["outcome"], key))
    assert not whole
    ours = fit_nested_entries(blocks).deviance
    assert ours <= ref["criterion"] + 1e-8 and ref["criterion"] - ours < 1e-8, (row.to_dict(), ref["criterion"] - ours)


def assert_equivalent_optimum(pooled: pd.DataFrame, analysis: dict, row: pd.Series, ref: dict) -> None:
    """Variance components off by more than 1e-6: with five studies the deviance is flat in tau2,
    and double precision places the optimum no closer. lme4's point is then accepted only if our
    deviance function gives lme4's criterion there (the same objective), our optimum is at least
    as low, and the two differ by less than the deviance's resolution (1e-8)."""
    _, _, options = model_spec(analysis, row["contrast"], row["variant"])
    design = row["variant"] if row["variant"] in ("unadjusted", "covariates", "within_between") else "primary"
    statistics = statistics_by_study(pooled, {**analysis, "outcomes": [row["outcome"]]})
    parts = present(statistics, row["outcome"], f"{row['contrast']}/{design}", options["exclude"] or None)
    cp = combine(parts, "employed" if options["random"] != "1" else None)
    at_theirs = profiled_deviance(cp, np.atleast_1d(np.asarray(ref["theta"], float)), options["reml"])
    assert at_theirs == pytest.approx(ref["criterion"], abs=1e-7), row.to_dict()
    ours = fit_lmm(cp, reml=options["reml"]).deviance  # the table keeps 10 digits: refit for the criterion
    assert ours <= at_theirs + 1e-7 and at_theirs - ours < 1e-7, (row.to_dict(), at_theirs - ours)
    for component in ("tau2", "sigma2", "slope_variance"):
        if component in ref:
            assert row[component] == pytest.approx(ref[component], rel=1e-4, abs=1e-9 * ref["sigma2"]), row.to_dict()


def test_kenward_roger_primary_models_equal_pbkrtest(demo_tables, r_reference):
    pooled, tables, analysis = demo_tables
    settings = {**analysis, "ddf": "kenward_roger", "sensitivity": {"variants": []}}
    for outcome in analysis["outcomes"]:
        primary, _ = fit_outcome(pooled, outcome, settings)
        for _, row in primary[primary["status"] == "estimated"].iterrows():
            theirs = r_reference[f"{outcome}|{row['contrast']}|random_intercept"]["terms"][row["term"]]
            assert row["se"] == pytest.approx(theirs["kr_se"], rel=1e-4), (outcome, row["term"])
            assert row["df"] == pytest.approx(theirs["kr_df"], rel=1e-3), (outcome, row["term"])
            assert "Kenward-Roger" in row["inference"]


R_TWO_STAGE = """
suppressPackageStartupMessages({library(metafor)})
pooled$ips <- as.numeric(pooled$arm == "IPS")
meta <- function(yi, vi, method, test) {
  unit <- 1 / mean(1 / vi)
  control <- list(threshold = 1e-12 * unit, tol = 1e-12 * unit, maxiter = 10000)
  res <- suppressWarnings(rma(yi, vi, method = method, test = test, control = control))
  out <- list(estimate = res$b[1], se = res$se, ci_low = res$ci.lb, ci_high = res$ci.ub, p_value = res$pval,
              tau2 = res$tau2, q = res$QE, q_p = res$QEp, i2 = res$I2, h2 = res$H2)
  if (method != "FE" && res$k >= 3) {
    riley <- predict(res, pi.type = "riley")  # t(k - 2): Higgins et al. 2009, the workflow's default
    out[c("pi_low", "pi_high")] <- list(riley$pi.lb, riley$pi.ub)
  }
  if (method == "REML") {
    l <- suppressWarnings(leave1out(res))
    out$leave1out <- list(estimate = l$estimate, se = l$se, tau2 = l$tau2, i2 = l$I2)
  }
  out
}
out <- list()
for (key in unique(models$key)) {
  m <- models[models$key == key, ]
  d <- pooled
  d$y <- d[[paste0(m$outcome, "_fu_z")]]; d$baseline <- d[[paste0(m$outcome, "_bl_z")]]
  f <- as.formula(m$formula)
  d <- d[complete.cases(d[, all.vars(f)]), ]
  w <- weights[weights$key == key, ]
  per <- list()
  for (study in sort(unique(d$study))) {
    fit <- lm(f, d[d$study == study, ])
    if (any(is.na(coef(fit))) || fit$df.residual < 1) next
    for (term in unique(w$term)) {
      L <- setNames(rep(0, length(coef(fit))), names(coef(fit)))
      L[w$coefficient[w$term == term]] <- w$weight[w$term == term]
      per[[length(per) + 1]] <- list(study = study, term = term, estimate = sum(L * coef(fit)),
                                     se = sqrt(drop(t(L) %*% vcov(fit) %*% L)), df = fit$df.residual)
    }
  }
  per <- do.call(rbind, lapply(per, as.data.frame))
  pooled_rows <- list()
  for (term in unique(w$term)) {
    p <- per[per$term == term, ]
    if (nrow(p) < 1) next
    for (method in c("FE", "DL", "REML", "PM")) for (test in c("z", "knha")) {
      if (method == "FE" && test == "knha") next
      pooled_rows[[paste(term, method, test)]] <- c(meta(p$estimate, p$se^2, method, test), \
studies = paste(p$study, collapse = ","))
    }
  }
  out[[key]] <- list(per_study = per, pooled = pooled_rows)
}
"""

TWO_STAGE_QUANTITIES = {  # quantity -> (relative tolerance, absolute floor)
    "estimate": (1e-6, 1e-9), "se": (1e-4, 1e-9), "ci_low": (1e-6, 1e-9), "ci_high": (1e-6, 1e-9),
    "p_value": (1e-6, 1e-12),
    "tau2": (1e-6, 1e-10), "q": (1e-8, 1e-10), "q_p": (1e-6, 1e-12), "i2": (1e-6, 1e-8), "h2": (1e-6, 1e-10),
    "pi_low": (1e-6, 1e-9), "pi_high": (1e-6, 1e-9),
}  # fmt: skip


@pytest.fixture(scope="module")
def metafor_two_stage(completed_run, demo_tables):
    pooled, _, analysis = demo_tables
    assert analysis["prediction_interval"] == "higgins"  # the R side computes the t(k - 2) interval
    models, weights = [], []
    for outcome in analysis["outcomes"]:
        for contrast, model in analysis["models"].items():
            key = f"{outcome}|{contrast}"
            terms = model["terms"] + model.get("adjust", [])
            models.append({"key": key, "outcome": outcome, "formula": "y ~ " + " + ".join(R_TERMS[t] for t in terms)})
            weights += [
                {"key": key, "term": term, "coefficient": c, "weight": w}
                for term, ws in model["report"].items()
                for c, w in ws.items()
            ]
    data = pooled[["study", "arm", "employed"] + [c for c in pooled if c.endswith(("_bl_z", "_fu_z"))]].astype(
        {"employed": float}
    )
    return run_r(R_TWO_STAGE, {"pooled": data, "models": pd.DataFrame(models), "weights": pd.DataFrame(weights)})


def test_per_study_estimates_equal_r_lm(completed_run, metafor_two_stage):
    table = read_table(completed_run / "results" / "tables" / "per_study.tsv")
    estimated = table[table["status"] == "estimated"]
    checked = 0
    for key, reference in metafor_two_stage.items():
        outcome, contrast = key.split("|")
        theirs = pd.DataFrame(reference["per_study"])
        ours = estimated[(estimated["outcome"] == outcome) & (estimated["contrast"] == contrast)]
        assert len(ours) == len(theirs), key
        merged = ours.merge(theirs, on=["study", "term"], suffixes=("", "_r"))
        assert len(merged) == len(ours), key
        np.testing.assert_allclose(
            merged["estimate"], merged["estimate_r"], rtol=1e-6, atol=1e-9 * merged["se_r"].max()
        )
        np.testing.assert_allclose(merged["se"], merged["se_r"], rtol=1e-4)
        np.testing.assert_array_equal(merged["df"], merged["df_r"])
        checked += len(merged)
    assert checked == len(estimated)


def test_two_stage_table_equals_metafor(completed_run, metafor_two_stage):
    table = read_table(completed_run / "results" / "tables" / "two_stage.tsv")
    checked = 0
    for _, row in table.iterrows():
        reference = metafor_two_stage[f"{row['outcome']}|{row['contrast']}"]["pooled"]
        theirs = reference[f"{row['term']} {row['method']} {'knha' if row['hksj'] else 'z'}"]
        where = f"{row['outcome']} {row['contrast']} {row['term']} {row['method']} hksj={row['hksj']}"
        assert row["studies"] == theirs["studies"], where
        for quantity, (rel, floor) in TWO_STAGE_QUANTITIES.items():
            if quantity in theirs:
                assert row[quantity] == pytest.approx(theirs[quantity], rel=rel, abs=floor), (where, quantity)
            elif quantity.startswith("pi_"):
                assert np.isnan(row[quantity]), (where, quantity)
        checked += 1
    assert checked == len(table) and checked >= 8 * 6 * 7


def test_two_stage_leave_one_out_equals_metafor(completed_run, metafor_two_stage):
    table = read_table(completed_run / "results" / "tables" / "leave_one_out.tsv")
    checked = 0
    for (outcome, contrast, term, hksj), rows in table.groupby(["outcome", "contrast", "term", "hksj"], sort=False):
        theirs = metafor_two_stage[f"{outcome}|{contrast}"]["pooled"][f"{term} REML {'knha' if hksj else 'z'}"][
            "leave1out"
        ]
        for quantity in ("estimate", "se", "tau2", "i2"):
            values = np.atleast_1d(np.asarray(theirs[quantity], float))
            rel, floor = TWO_STAGE_QUANTITIES[quantity]
            np.testing.assert_allclose(
                rows[quantity].to_numpy(float),
                values,
                rtol=rel,
                atol=floor,
                err_msg=f"{outcome} {contrast} {term} {quantity}",
            )
        checked += len(rows)
    assert checked == len(table) > 0
