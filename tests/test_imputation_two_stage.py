"""The two-stage imputation option (multiple_imputation.method: two_stage, micemd's 2l.2stage.norm /
.bin): its meta-analysis step against R's metafor run live (the univariate method of moments is
DerSimonian-Laird; the pooled mean and its covariance given Psi are rma.mv's with Psi fixed), the
multivariate method of moments' expectation by simulation with a known between-study covariance
(no R package with mvmeta's estimator is installable here, and micemd itself is not), a small
simulation with known parameters (the full one: bench/bench_mi_two_stage.py, docs/validation.md),
its refusals, the studies it imputes wholesale, and what must not change (row order, study order
and labels)."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rscript import run_r
from tests_support import imputed_alike_when_moved
from two_stage_reference import replicate, simulated, summary

from ipdpool.imputation.analysis import annotated_studies, chunk_estimates, pool_estimates, site_imputations
from ipdpool.imputation.chained import ImputationError, impute, thin_meta_analyses, wholesale_imputed
from ipdpool.imputation.twostage import conditional_moments, gls_mean, method_of_moments
from ipdpool.simulation import simulate_trials
from ipdpool.summary import imputed, wholesale_studies

VARIABLES = ["employed", "o_bl_z", "o_fu_z"]


def univariate_sets() -> pd.DataFrame:
    """Four meta-analyses of 3-12 estimates: heterogeneous ones and one homogeneous (tau2 truncated at 0)."""
    rng = np.random.default_rng(4)
    frames = []
    for number, (k, tau2) in enumerate([(3, 0.5), (6, 0.1), (12, 0.2), (8, 0.0)]):
        vi = rng.uniform(0.01, 0.3, k)
        yi = 0.3 + rng.normal(0, np.sqrt(tau2), k) + rng.normal(0, np.sqrt(vi))
        if tau2 == 0:
            yi = 0.3 + 0.1 * np.sqrt(vi) * rng.standard_normal(k)  # far less spread than the vi: Q < k - 1
        frames.append(pd.DataFrame({"set": number + 1, "yi": yi, "vi": vi}))
    return pd.concat(frames, ignore_index=True)


def test_univariate_method_of_moments_is_metafor_dersimonian_laird():
    """micemd's meta-analysis of the log residual variances (mvmeta, method "mm", one outcome) is
    DerSimonian-Laird: tau2, the pooled mean and its SE against metafor's rma(method = "DL"), to
    1e-10 relative (closed forms on both sides); a truncated tau2 is mvmeta's sqrt(eps) here, 0 there."""
    data = univariate_sets()
    script = """
suppressMessages(library(metafor))
out <- do.call(rbind, lapply(split(data, data$set), function(d) {
  f <- rma(yi, vi, data = d, method = "DL")
  c(f$tau2, as.numeric(coef(f)), f$se)
}))
"""
    reference = np.asarray(run_r(script, {"data": data}), float)
    for (_, d), (tau2, mean, se) in zip(data.groupby("set"), reference):
        meta = method_of_moments(d[["yi"]].to_numpy(), d["vi"].to_numpy()[:, None, None])
        if tau2 == 0:
            assert meta.psi_raw[0, 0] < 0 and meta.psi[0, 0] == pytest.approx(np.sqrt(np.finfo(float).eps))
            continue
        assert meta.psi[0, 0] == pytest.approx(tau2, rel=1e-10, abs=1e-14)
        assert meta.mean[0] == pytest.approx(mean, rel=1e-10) and np.sqrt(meta.mean_covariance[0, 0]) == pytest.approx(
            se, rel=1e-10
        )
    assert (reference[:, 0] == 0).sum() == 1 and (reference[:, 0] > 0.01).sum() == 3  # both cases were met


def multivariate_meta(seed: int, studies: int, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(estimates, within-study covariances) of `studies` studies with random correlated within-study
    covariances and study effects N((0.2, -0.1, 0.4), psi)."""
    rng = np.random.default_rng(seed)
    k = len(psi)
    covariances = []
    for _ in range(studies):
        root = rng.normal(0, 0.25, (k, k)) + np.diag(rng.uniform(0.1, 0.4, k))
        covariances.append(root @ root.T)
    covariances = np.array(covariances)
    effects = rng.multivariate_normal([0.2, -0.1, 0.4], psi, studies)
    estimates = np.array([rng.multivariate_normal(e, s) for e, s in zip(effects, covariances)])
    return estimates, covariances


PSI = np.array([[0.09, 0.03, -0.02], [0.03, 0.04, 0.01], [-0.02, 0.01, 0.06]])


def test_pooled_mean_and_covariance_given_psi_match_metafor_rma_mv():
    """The GLS step (mvmeta's glsfit, which follows the method of moments): beta and its covariance
    given Psi equal metafor's rma.mv(yi, V, mods = ~ 0 + coef, random = ~ coef | study, struct = "UN")
    with tau2 and rho fixed at that Psi, to 1e-8 relative (metafor then estimates nothing but by
    GLS, so its convergence tolerance does not enter). Psi is the true one: full rank, so every
    element of it is used (the method of moments' estimate from 9 studies is often singular)."""
    estimates, covariances = multivariate_meta(5, 9, PSI)
    mean, mean_covariance = gls_mean(estimates, covariances, PSI)
    m, k = estimates.shape
    long = pd.DataFrame({"study": np.repeat(np.arange(1, m + 1), k), "coef": np.tile([f"c{j}" for j in range(k)], m),
                         "yi": estimates.reshape(-1)})  # fmt: skip
    rows, cols = np.meshgrid(np.arange(1, k + 1), np.arange(1, k + 1), indexing="ij")
    within = pd.DataFrame({"study": np.repeat(np.arange(1, m + 1), k * k), "row": np.tile(rows.reshape(-1), m),
                           "col": np.tile(cols.reshape(-1), m), "value": covariances.reshape(-1)})  # fmt: skip
    script = f"""
suppressMessages(library(metafor))
V <- bldiag(lapply(split(within, within$study), function(d) {{
  M <- matrix(0, {k}, {k}); M[cbind(d$row, d$col)] <- d$value; M }}))
P <- as.matrix(psi)
R <- cov2cor(P)
fit <- rma.mv(yi, V, mods = ~ 0 + coef, random = ~ coef | study, struct = "UN",
              tau2 = diag(P), rho = R[lower.tri(R)], data = long)
out <- list(coef = as.numeric(coef(fit)), vcov = as.numeric(vcov(fit)))
"""
    reference = run_r(script, {"long": long, "within": within, "psi": pd.DataFrame(PSI)})
    np.testing.assert_allclose(mean, reference["coef"], rtol=1e-8)
    np.testing.assert_allclose(mean_covariance.reshape(-1), reference["vcov"], rtol=1e-8)
    # the method of moments' own mean is this GLS at its Psi
    meta = method_of_moments(estimates, covariances)
    np.testing.assert_allclose(meta.mean, gls_mean(estimates, covariances, meta.psi)[0], rtol=1e-12)


def test_multivariate_method_of_moments_is_unbiased_for_a_known_psi():
    """mvmeta's estimator before its eigenvalue floor is a method of moments, unbiased given the
    within-study covariances: over 1500 meta-analyses of 10 studies (3 correlated outcomes, known
    Psi), each element's mean is within 3.5 Monte Carlo SEs (all below 0.005) of the true one, and so
    is the pooled mean's. The test can tell: the floored Psi that micemd uses is biased upwards on
    the diagonal (a known price of truncation) by more than 3.5 MCSEs."""
    raw, floored, means = [], [], []
    for seed in range(1500):
        estimates, covariances = multivariate_meta(seed, 10, PSI)
        meta = method_of_moments(estimates, covariances)
        raw.append(meta.psi_raw[np.tril_indices(3)])
        floored.append(meta.psi[np.tril_indices(3)])
        means.append(meta.mean)
    raw, floored, means = np.array(raw), np.array(floored), np.array(means)
    mcse = raw.std(axis=0, ddof=1) / np.sqrt(len(raw))
    z = (raw.mean(axis=0) - PSI[np.tril_indices(3)]) / mcse
    assert np.all(np.abs(z) <= 3.5) and mcse.max() < 0.005, (z, mcse)
    diagonal = [0, 2, 5]  # positions of Psi's diagonal in the lower triangle
    floored_z = (floored.mean(axis=0) - PSI[np.tril_indices(3)]) / (floored.std(axis=0, ddof=1) / np.sqrt(len(raw)))
    assert np.all(floored_z[diagonal] > 3.5), floored_z
    z_mean = (means.mean(axis=0) - [0.2, -0.1, 0.4]) / (means.std(axis=0, ddof=1) / np.sqrt(len(means)))
    assert np.all(np.abs(z_mean) <= 3.5), z_mean


def test_conditional_moments_equal_micemds_formula_when_psi_is_invertible():
    """micemd: S = ginv(W + V^-1), mean = S (W beta + V^-1 b), W = ginv(Psi). Same numbers (the
    form here also holds for singular Psi, where it pools fully)."""
    estimates, covariances = multivariate_meta(6, 2, PSI)
    mean, covariance = conditional_moments(estimates[0], covariances[0], np.array([0.1, 0.0, 0.3]), PSI)
    w, v_inverse = np.linalg.pinv(PSI), np.linalg.pinv(covariances[0])
    micemd_covariance = np.linalg.pinv(w + v_inverse)
    micemd_mean = micemd_covariance @ (w @ [0.1, 0.0, 0.3] + v_inverse @ estimates[0])
    np.testing.assert_allclose(mean, micemd_mean, rtol=1e-10)
    np.testing.assert_allclose(covariance, micemd_covariance, rtol=1e-10)
    singular = np.diag([0.05, 0.0, 0.0])
    mean, covariance = conditional_moments(estimates[0], covariances[0], np.array([0.1, 0.0, 0.3]), singular)
    np.testing.assert_allclose(mean[1:], [0.0, 0.3], atol=1e-15)
    np.testing.assert_allclose(covariance[1:, :], 0, atol=1e-15)


def test_small_simulation_two_stage_mi_is_unbiased_where_complete_cases_are_not():
    """24 replicates, m = 3 (the bench: 500 replicates, docs/validation.md): 8 studies, the follow-up
    never measured in the 2 that differ (more IPS-driven employment, higher baseline). MI's IPS
    effect is within 2 MCSE of the truth (here +0.011, MCSE 0.018); the complete-case estimate (6
    studies) is below the truth by more than 2 MCSE (-0.034, MCSE 0.016) and below the full data's
    estimate by more than 3 paired MCSE (-0.041, MCSE 0.011)."""
    rows = pd.DataFrame([replicate(r, 3) for r in range(24)])
    found = summary(rows)
    assert abs(found.loc["mi", "bias_z"]) <= 2, found
    assert found.loc["complete_case", "bias_z"] < -2, found
    paired = rows["complete_case"] - rows["full"]
    assert paired.mean() / (paired.std(ddof=1) / np.sqrt(len(rows))) < -3, paired.describe()


def five_studies(seed: int) -> pd.DataFrame:
    """5 studies of 30-60, sporadic missing values; the second study (in label order) never
    measured the follow-up score, the fourth never measured the baseline score."""
    rng = np.random.default_rng(seed)
    data = simulate_trials(rng, {"studies": 5, "participants": [30, 60], "tau2": 0.05, "employment_rate": 0.4,
                                 "smd": 0.4, "attrition": 0.3})  # fmt: skip
    data.loc[rng.random(len(data)) < 0.1, "employed"] = np.nan
    data.loc[rng.random(len(data)) < 0.1, "o_bl_z"] = np.nan
    labels = sorted(data["study"].unique())
    data.loc[data["study"] == labels[1], "o_fu_z"] = np.nan
    data.loc[data["study"] == labels[3], "o_bl_z"] = np.nan
    data["participant_id"] = [f"{k * 7919 % 10007:05d}" for k in range(len(data))]
    return data


def test_systematically_missing_variables_are_imputed_and_named():
    data = five_studies(1)
    labels = sorted(data["study"].unique())
    completed = impute(data, "o", 0, seed=3, method="two_stage")
    assert completed[VARIABLES].notna().all().all()
    observed = data[VARIABLES].notna()
    pd.testing.assert_frame_equal(completed[VARIABLES][observed], data[VARIABLES][observed])
    assert wholesale_imputed(data, "o") == {labels[1]: ["o_fu_z"], labels[3]: ["o_bl_z"]}
    # the other methods leave them missing
    assert impute(data, "o", 0, seed=3)["o_fu_z"][data["study"] == labels[1]].isna().all()
    studies = annotated_studies(",".join(labels), wholesale_imputed(data, "o"))
    assert studies.split(",")[1] == f"{labels[1]} (imputed: follow-up)"
    assert wholesale_studies(studies) == [f"{labels[1]} (imputed: follow-up)", f"{labels[3]} (imputed: baseline)"]


def test_too_few_studies_are_refused_naming_the_variable():
    data = five_studies(2)
    labels = sorted(data["study"].unique())
    one = data.assign(o_fu_z=data["o_fu_z"].where(data["study"] == labels[0]))
    with pytest.raises(ImputationError, match=r"^o_fu_z is measured in 1 study only.*two-stage.*at least 2"):
        impute(one, "o", 0, seed=1, method="two_stage")
    # two studies measured it, one of them on 8 participants: fewer than 5 residual df for 5 coefficients
    small = one["o_fu_z"].copy()
    rows = np.flatnonzero((data["study"] == labels[2]).to_numpy())[:8]
    small.iloc[rows] = data["o_fu_z"].iloc[rows].fillna(0.1)
    refusal = rf"^o_fu_z has a usable fit .* in 1 of the 2 studies that observed it \(study {labels[2]}: 3 residual df,"
    with pytest.raises(ImputationError, match=refusal):
        impute(one.assign(o_fu_z=small), "o", 0, seed=1, method="two_stage")


def test_a_site_refuses_two_stage_imputation():
    data = five_studies(3)
    analysis = {"outcomes": ["o"], "models": {}}
    with pytest.raises(ValueError, match="needs multiple_imputation.method: stratified"):
        site_imputations(
            data[data["study"] == data["study"].iloc[0]], analysis, {"method": "two_stage", "imputations": 2}
        )


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), labels=st.permutations(["P", "Q", "S01", "A", "zz"]))
def test_row_order_study_order_and_labels_do_not_change_the_two_stage_imputations(seed, labels):
    data = five_studies(seed)
    before = imputed_alike_when_moved(data, "two_stage", seed, labels, VARIABLES)
    assert before[VARIABLES].notna().all().all()


def test_the_pooled_table_and_the_summary_name_the_studies_imputed_wholesale():
    data = five_studies(4)
    labels = sorted(data["study"].unique())
    analysis = {"outcomes": ["o"], "models": {"ips": {"terms": ["ips"], "adjust": ["baseline"],
                                                      "report": {"ips": {"ips": 1}}}}}  # fmt: skip
    mi = {"method": "two_stage", "imputations": 2, "iterations": 2, "seed": 5}
    pooled = pool_estimates(chunk_estimates(data, {}, "o", analysis, mi, range(2)))
    one_stage = pooled[pooled["analysis"] == "one-stage"].iloc[0]
    assert one_stage["n_studies"] == 5 and one_stage["status"] == "estimated"
    marked = f"{labels[1]} (imputed: follow-up),{labels[2]},{labels[3]} (imputed: baseline)"
    assert marked in one_stage["studies"]
    # 4 measuring studies for a 5-coefficient model: part of Psi is 0, and the rows say so
    assert (
        "o_fu_z imputed wholesale from 4 measuring studies, fewer than its model's 5 coefficients + 1"
        in (one_stage["warnings"])
    )
    assert thin_meta_analyses(simulated(np.random.default_rng(1))[1], "o") == ""  # 6 measuring studies
    text = imputed(pooled, "o", "ips")
    assert text.endswith(f"{labels[1]} (imputed: follow-up), {labels[3]} (imputed: baseline) wholesale"), text
    # stratified leaves out the studies without follow-up or baseline (the model adjusts for it), marks nothing
    plain = pool_estimates(chunk_estimates(data, {}, "o", analysis, {**mi, "method": "stratified"}, range(2)))
    assert plain[plain["analysis"] == "one-stage"].iloc[0]["n_studies"] == 3
    assert "imputed" not in " ".join(plain["studies"].astype(str)) and "wholesale" not in imputed(plain, "o", "ips")


def test_covariates_age_and_sex_are_imputed_and_diagnosis_is_refused():
    data = five_studies(5)
    labels = sorted(data["study"].unique())
    rng = np.random.default_rng(5)
    data["age"] = np.where(data["study"] == labels[0], np.nan, rng.normal(40, 10, len(data)))
    data["sex"] = np.where(rng.random(len(data)) < 0.1, None, np.where(rng.random(len(data)) < 0.5, "female", "male"))
    completed = impute(data, "o", 0, seed=6, method="two_stage", covariates=("age", "sex"))
    assert completed[[*VARIABLES, "age", "sex"]].notna().all().all()
    assert set(completed["sex"]) == {"female", "male"}
    assert wholesale_imputed(data, "o", ("age", "sex"))[labels[0]] == ["age"]
    data["diagnosis"] = "F20"
    with pytest.raises(ImputationError, match="^multiple_imputation.method two_stage does not take diagnosis"):
        impute(data, "o", 0, seed=6, method="two_stage", covariates=("age", "sex", "diagnosis"))


def test_employment_never_recorded_in_a_study_is_imputed_from_the_binary_two_stage_model():
    """micemd's 2l.2stage.bin: the study's employment is drawn with logistic coefficients from the
    between-study distribution; its imputed rate lies within the other studies' range, widened by
    0.15 for the between-study spread (the 5 studies' rates are about 0.4)."""
    data = five_studies(6)
    labels = sorted(data["study"].unique())
    data.loc[data["study"] == labels[2], "employed"] = np.nan
    rates = [impute(data, "o", j, seed=7, method="two_stage")
             .loc[data["study"] == labels[2], "employed"].mean() for j in range(4)]  # fmt: skip
    others = data[data["study"] != labels[2]].groupby("study")["employed"].mean()
    assert all(others.min() - 0.15 <= rate <= others.max() + 0.15 for rate in rates), (rates, others)
    assert wholesale_imputed(data, "o")[labels[2]] == ["employed"]
