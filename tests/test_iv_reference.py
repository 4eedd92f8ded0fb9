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

from ipdpool.causal import federated_iv_table, iv_table
from ipdpool.models.iv import crossproducts, design, federated_two_sls, hc1_2sls, iv_by_study_and_pooled, two_sls
from ipdpool.models.statistics import statistics_by_study

R_IV = r"""
suppressPackageStartupMessages({library(AER); library(sandwich)})
one <- function(d, pooled, inter = FALSE) {
  d$y <- d[[paste0(outcome, "_fu_z")]]; d$b <- d[[paste0(outcome, "_bl_z")]]; d$ips <- as.numeric(d$arm == "IPS")
  d <- d[complete.cases(d[, c("y", "b", "employed", "ips")]), ]
  controls <- if (pooled) "b + factor(study)" else "b"
  instruments <- if (inter) "ips:factor(study)" else "ips"
  f <- as.formula(paste("y ~ employed +", controls, "|", instruments, "+", controls))
  m <- ivreg(f, data = d)
  s <- summary(m, diagnostics = TRUE)$diagnostics
  first <- lm(as.formula(paste("employed ~", instruments, "+", controls)), d)
  inst <- grep("^ips", names(coef(first)), value = TRUE)
  pi <- coef(first)[inst]
  z <- model.matrix(first)[, inst, drop = FALSE]
  q <- crossprod(residuals(lm(z ~ model.matrix(first)[, setdiff(colnames(model.matrix(first)), inst)] - 1)))
  ar <- function(b0) {
    r <- lm(as.formula(paste("I(y - b0 * employed) ~", instruments, "+", controls)), d)
    cf <- coef(r)[inst]
    drop(t(cf) %*% solve(vcovHC(r, type = "HC1")[inst, inst], cf)) - qchisq(0.95, length(inst))
  }
  est <- coef(m)[["employed"]]; se <- sqrt(vcov(m)["employed", "employed"])
  observational <- lm(as.formula(paste("y ~ employed +", controls)), d)
  list(n = nobs(m), estimate = est, se = se, ols = confint(observational)["employed", ],
       hc0 = sqrt(vcovHC(m, type = "HC0")["employed", "employed"]),
       hc1 = sqrt(vcovHC(m, type = "HC1")["employed", "employed"]),
       weak = s["Weak instruments", "statistic"], wu = s["Wu-Hausman", "statistic"], wu_p = s["Wu-Hausman", "p-value"],
       sargan = if (inter) s["Sargan", "statistic"] else NA, sargan_p = if (inter) s["Sargan", "p-value"] else NA,
       effective_f = drop(t(pi) %*% q %*% pi) / sum(diag(vcovHC(first, type = "HC1")[inst, inst] %*% q)),
       ar_low = if (ar(est - 200 * se) > 0) uniroot(ar, c(est - 200 * se, est), tol = 1e-14)$root else NA,
       ar_high = if (ar(est + 200 * se) > 0) uniroot(ar, c(est, est + 200 * se), tol = 1e-14)$root else NA)
}
out <- list()
for (outcome in outcomes) {
  out[[outcome]] <- list(pooled = one(pooled, TRUE), pooled_inter = one(pooled, TRUE, TRUE))
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
        if result.status != "estimated":
            continue
        ref = reference[result.scope + ("_inter" if result.instruments == "ips x study" else "")]
        assert result.n == ref["n"]
        if ref["sargan"] is not None:
            assert result.sargan == pytest.approx(ref["sargan"], rel=1e-8)
            assert result.sargan_p == pytest.approx(ref["sargan_p"], rel=1e-8)
        for ours, theirs in (
            (result.estimate, ref["estimate"]),
            (result.se, ref["se"]),
            (result.se_robust, ref["hc1"]),
            (result.first_stage_f, ref["weak"]),
            (result.wu_hausman_f, ref["wu"]),
            (result.wu_hausman_p, ref["wu_p"]),
            (result.effective_f, ref["effective_f"]),
            (result.ols_ci_low, ref["ols"][0]),
            (result.ols_ci_high, ref["ols"][1]),
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
    results = iv_by_study_and_pooled(pooled, "qol", implication=False)
    # every study's first stage is strong: IPS x study instruments are added (over-identified)
    assert [(r.scope, r.instruments) for r in results] == [
        ("A", "ips"),
        ("B", "ips"),
        ("C", "ips"),
        ("pooled", "ips"),
        ("pooled", "ips x study"),
    ]
    assert min(r.effective_f for r in results[:3]) >= 10
    assert results[-1].ar_kind == "interval"
    check_against_r(results, reference)
    # HC0 is HC1 without the n / (n - k) factor
    pooled_fit = results[-2]
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
    # the coefficients of employed and baseline (each study's columns are centred at its own
    # means, which moves only the study intercepts)
    np.testing.assert_allclose(federated.beta[:2], direct.beta[:2], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(federated.vcov[:2, :2], direct.vcov[:2, :2], rtol=1e-10, atol=1e-14)
    assert federated.n == n
    # IPS x study instruments need nothing more: within study S, ips:study[S] is ips
    interacted = design(pooled, "qol", interactions=True)
    direct = two_sls(*crossproducts(interacted))
    federated = federated_two_sls(per_study, interactions=True)
    np.testing.assert_allclose(federated.beta[:2], direct.beta[:2], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(federated.vcov[:2, :2], direct.vcov[:2, :2], rtol=1e-10, atol=1e-14)
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
        check_against_r(iv_by_study_and_pooled(frame, outcome, implication=False), reference[outcome])


def test_iv_equals_linearmodels_iv2sls():
    """linearmodels' IV2SLS (debiased: classical sigma^2 with n - k, robust = HC1) on the same design."""
    from linearmodels.iv import IV2SLS

    pooled = synthetic_pooled(11)
    matrix = design(pooled, "qol")
    controls = [c for c in matrix.columns if c.startswith("study[")] + ["baseline"]
    model = IV2SLS(matrix["y"], matrix[controls], matrix[["employed"]], matrix[["ips"]])
    classical = model.fit(cov_type="unadjusted", debiased=True)
    robust = model.fit(cov_type="robust", debiased=True)
    ours = next(
        r
        for r in iv_by_study_and_pooled(pooled, "qol", implication=False)
        if (r.scope, r.instruments) == ("pooled", "ips")
    )
    assert ours.estimate == pytest.approx(classical.params["employed"], rel=1e-10)
    assert ours.se == pytest.approx(classical.std_errors["employed"], rel=1e-10)
    assert ours.se_robust == pytest.approx(robust.std_errors["employed"], rel=1e-10)


def study_rows(rng, name: str, n: int, worked: bool = True) -> pd.DataFrame:
    ips = rng.random(n) < 0.5
    employed = (rng.random(n) < 0.2 + 0.4 * ips).astype(float) if worked else np.zeros(n)
    baseline = rng.normal(size=n)
    y = 0.5 * employed + 0.5 * baseline + rng.normal(size=n)
    return pd.DataFrame(
        {"study": name, "arm": np.where(ips, "IPS", "SAU"), "employed": employed, "y_fu_z": y, "y_bl_z": baseline}
    )


def test_a_study_that_cannot_be_fitted_is_named_and_the_pool_still_equals_aer():
    """Attacker finding F7: a study where nobody worked, or whose baseline is constant, has no
    per-study 2SLS (AER gives NA); its row says why, the pooled fit is AER's."""
    rng = np.random.default_rng(3)
    cases = {
        "nobody_worked": pd.concat([study_rows(rng, "A", 200), study_rows(rng, "B", 150, worked=False)]),
        "constant_baseline": pd.concat([study_rows(rng, "A", 200), study_rows(rng, "B", 150).assign(y_bl_z=1.0)]),
    }
    reference = run_r(
        """suppressPackageStartupMessages(library(AER))
        out <- lapply(list(nobody_worked = nobody_worked, constant_baseline = constant_baseline), function(d) {
          d$ips <- as.numeric(d$arm == "IPS")
          m <- ivreg(y_fu_z ~ employed + y_bl_z + factor(study) | ips + y_bl_z + factor(study), data = d)
          b <- ivreg(y_fu_z ~ employed + y_bl_z | ips + y_bl_z, data = d[d$study == "B", ])
          list(estimate = coef(m)[["employed"]], se = sqrt(vcov(m)["employed", "employed"]),
               b_has_na = anyNA(coef(b)))
        })""",
        cases,
    )
    reasons = {"nobody_worked": "employed is constant", "constant_baseline": "baseline is constant within a study"}
    for case, frame in cases.items():
        results = {r.scope: r for r in iv_by_study_and_pooled(frame, "y", implication=False)}
        assert reference[case]["b_has_na"]
        assert results["A"].status == "estimated"
        assert results["B"].status.startswith("not estimable: study B, outcome y:")
        assert reasons[case] in results["B"].status
        assert np.isnan(results["B"].estimate)
        assert results["pooled"].estimate == pytest.approx(reference[case]["estimate"], rel=1e-8)
        assert results["pooled"].se == pytest.approx(reference[case]["se"], rel=1e-8)


CLASSICAL = ["n", "status", "instruments", "estimate", "se", "ci_low", "ci_high", "first_stage_f", "wu_hausman_f",
             "wu_hausman_p", "ols_estimate", "ols_ci_low", "ols_ci_high"]  # fmt: skip
IV_MODEL = {"ips_x_employed": {"terms": ["ips", "employed", "ips:employed"], "adjust": ["baseline"],
                               "report": {"ips:employed": {"ips:employed": 1}}}}  # fmt: skip


def assert_federated_equals_pooled(federated: pd.DataFrame, pooled: pd.DataFrame):
    keys = ["outcome", "scope", "instruments"]
    assert federated[keys].values.tolist() == pooled[keys].values.tolist()
    for column in CLASSICAL:
        if federated[column].dtype.kind == "f":
            np.testing.assert_allclose(federated[column], pooled[column], rtol=1e-10, atol=1e-12, err_msg=column)
        else:
            assert federated[column].tolist() == pooled[column].tolist(), column


def test_the_iv_table_from_released_statistics_equals_the_participant_data_table():
    """What a site releases (its statistics, as in a bundle) gives the classical IV table exactly:
    per study, pooled, IPS x study, and a study that cannot be fitted."""
    pooled = pd.concat(
        [synthetic_pooled(5), study_rows(np.random.default_rng(4), "D", 120, worked=False).rename(
            columns={"y_fu_z": "qol_fu_z", "y_bl_z": "qol_bl_z"})], ignore_index=True
    )  # fmt: skip
    strong = pooled[pooled["study"] != "D"]
    analysis = {"outcomes": ["qol"], "models": IV_MODEL}
    for frame, interacted in ((pooled, False), (strong, True)):
        statistics = statistics_by_study(frame, analysis, [])
        federated = federated_iv_table(statistics, ["qol"])
        assert_federated_equals_pooled(federated, iv_table(frame, ["qol"], implication=False))
        assert ("ips x study" in set(federated["instruments"])) == interacted
    assert (
        federated_iv_table(statistics_by_study(pooled, analysis, []), ["qol"])["status"]
        .str.contains("study D, outcome qol: employed is constant")
        .any()
    )


@pytest.mark.workflow
def test_the_demo_iv_table_from_the_studies_statistics_equals_the_pooled_run(completed_run):
    import json

    statistics = {}
    for path in sorted((completed_run / "results" / "statistics").glob("*.json")):
        content = json.loads(path.read_text(encoding="utf-8"))["statistics"]
        statistics[content["study"]] = content
    outcomes = ["quality_of_life", "negative_symptoms", "functioning"]
    pooled = pd.read_parquet(completed_run / "results" / "harmonized" / "pooled.parquet")
    assert_federated_equals_pooled(
        federated_iv_table(statistics, outcomes), iv_table(pooled, outcomes, implication=False)
    )


def test_a_perfect_first_stage_a_tiny_study_or_a_constant_outcome_is_named_and_the_pool_equals_aer():
    """Attack 3, C2 and C10: a study where employed equals the arm (2SLS = OLS, first-stage F
    infinite), a 4-participant study (no degrees of freedom for the diagnostics) and a study whose
    outcome is constant get rows that say why; none aborts the pooled fit, which is AER's."""
    rng = np.random.default_rng(5)
    a, b = study_rows(rng, "A", 200), study_rows(rng, "B", 150)
    tiny = pd.DataFrame(
        {"study": "D", "arm": ["IPS", "SAU", "IPS", "SAU"], "employed": [1.0, 0, 0, 1],
         "y_fu_z": [0.3, 0.1, 0.2, 0.5], "y_bl_z": [0.1, 0.2, 0.3, 0.4]}
    )  # fmt: skip
    cases = {
        "perfect": (
            pd.concat([a, b.assign(employed=(b["arm"] == "IPS").astype(float))]),
            "B",
            "the first stage is perfect",
        ),
        "tiny": (pd.concat([a, b, tiny]), "D", "4 complete rows: too few"),
        "constant_outcome": (pd.concat([a, b.assign(y_fu_z=-1.5)]), "B", "the outcome is constant within the study"),
    }
    frames = {case: frame.reset_index(drop=True) for case, (frame, _, _) in cases.items()}
    functions = R_IV.split("out <- list()")[0]
    reference = run_r('outcome <- "y"\n' + functions + "out <- lapply(list(" + ", ".join(f"{c} = {c}" for c in frames)
                      + "), function(d) one(d, TRUE))", frames)  # fmt: skip
    for case, (_, study, reason) in cases.items():
        results = {r.scope: r for r in iv_by_study_and_pooled(frames[case], "y", implication=False)}
        assert results[study].status.startswith(f"not estimable: study {study}, outcome y:"), case
        assert reason in results[study].status, case
        check_against_r([results["pooled"]], {"pooled": reference[case]})


@pytest.mark.parametrize(
    ("column", "row", "value", "message"),
    [
        ("y_fu_z", 5, np.inf, "study A, variable y_fu_z: a value that is not a finite number in row 6"),
        ("y_bl_z", 7, -np.inf, "study A, variable y_bl_z: a value that is not a finite number in row 8"),
        ("arm", None, "ips", "study A, variable arm: an arm other than IPS or SAU in row 1"),
        ("arm", 260, "Control-7", "study B, variable arm: an arm other than IPS or SAU in row 261"),
        ("employed", 3, 2.0, "study A, variable employed: a value other than 0 or 1 in row 4"),
    ],
)
def test_iv_input_that_would_be_misread_is_refused_naming_study_variable_and_row(column, row, value, message):
    """Attack 3, C8: non-finite values, arm codes other than IPS/SAU, employed not 0/1; the
    message never shows the value."""
    rng = np.random.default_rng(6)
    data = pd.concat([study_rows(rng, "A", 200), study_rows(rng, "B", 150)], ignore_index=True)
    data[column] = data[column].astype(object)
    if row is None:
        data[column] = value
    else:
        data.loc[row, column] = value
    with pytest.raises(ValueError, match=message) as refused:
        iv_by_study_and_pooled(data, "y", implication=False)
    assert str(value) not in str(refused.value)


def test_the_federated_pooled_row_names_a_study_left_out_and_the_release_rules_reason():
    """Attack 3, C14: a study whose statistics hold no IV design is left out of the pooled fit;
    the pooled row says so, and a design withheld by the release rule passes its reason on."""
    pooled = synthetic_pooled()
    statistics = statistics_by_study(pooled, {"outcomes": ["qol"], "models": IV_MODEL}, [])
    content = statistics["B"]["outcomes"]["qol"]
    names = sorted(content["designs"])
    content["designs"] = {}
    table = federated_iv_table(statistics, ["qol"])
    pooled_row = table[table["scope"] == "pooled"].iloc[0]
    assert pooled_row["n"] == (pooled["study"] != "B").sum()
    assert "study B left out (no released design holds ips, employed and baseline" in pooled_row["notes"]
    content["harmonized"] = {names[0]: "withheld: its participants differ from those of another release by 1"}
    table = federated_iv_table(statistics, ["qol"])
    assert f"design {names[0]} withheld: its participants differ" in table.loc[table["scope"] == "B", "status"].iloc[0]
    assert f"study B left out (design {names[0]} withheld" in table[table["scope"] == "pooled"].iloc[0]["notes"]
