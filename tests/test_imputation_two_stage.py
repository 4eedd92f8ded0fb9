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
from scipy.optimize import minimize
from tests_support import imputed_alike_when_moved
from two_stage_reference import replicate, simulated, summary

from ipdpool.imputation.analysis import (
    annotated_studies,
    bundle_refusal,
    chunk_estimates,
    imputation_settings,
    pool_estimates,
    site_imputations,
)
from ipdpool.imputation.chained import ImputationError, impute, thin_meta_analyses, wholesale_imputed
from ipdpool.imputation.twostage import (
    conditional_moments,
    general_method_of_moments,
    gls_mean,
    method_of_moments,
    posterior_given_rows,
    psi_root,
    two_stage_draw,
)
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
        "o_fu_z imputed wholesale from 4 measuring studies, 4 of them with a full fit of its model, fewer than its "
        "5 coefficients + 1" in (one_stage["warnings"])
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


def test_a_binary_with_one_observed_value_in_a_study_keeps_it_there():
    """As `stratified` (chained.BINARY rule): a women-only study's missing sex is female, a study in
    which nobody observed is employed imputes nobody employed (logistic draws gave 53% men, 82% employed)."""
    data, _, _ = outlying_study(8)
    labels = sorted(data["study"].unique())
    rng = np.random.default_rng(8)
    data["sex"] = np.where(rng.random(len(data)) < 0.5, "female", "male")
    data.loc[rng.random(len(data)) < 0.1, "employed"] = np.nan
    first, third = data["study"] == labels[0], data["study"] == labels[2]
    data.loc[first, "sex"] = "female"
    gone = first & (rng.random(len(data)) < 0.3)
    data.loc[gone, "sex"] = None
    data.loc[third & data["employed"].notna(), "employed"] = 0.0
    completed = impute(data, "o", 0, seed=8, method="two_stage", iterations=3, covariates=("sex",))
    assert gone.any() and (completed.loc[gone, "sex"] == "female").all()
    assert data.loc[third, "employed"].isna().any() and (completed.loc[third, "employed"] == 0).all()


def affine_problem() -> tuple:
    """Six studies: the first single-arm (aliased), the last never observed the variable (wholesale)."""
    rng = np.random.default_rng(3)
    sizes = np.array([40, 300, 60, 60, 30, 50])
    study = np.repeat(np.arange(6), sizes)
    arm = (rng.random(len(study)) < 0.5).astype(float)
    arm[study == 0] = 1.0
    x = np.column_stack([np.ones(len(study)), arm, rng.standard_normal(len(study))])
    y = x @ [0.2, 0.3, 0.5] + rng.normal(0, 0.5, 6)[study] + rng.standard_normal(len(study)) * 0.8
    observed = (rng.random(len(study)) > 0.3) & (study != 5)
    return x, y, observed, study


@settings(max_examples=25, deadline=None)
@given(
    offset=st.floats(-1e6, 1e6),
    log_scale=st.floats(-3, 3),
    column=st.sampled_from([1, 2]),
    binary=st.booleans(),
)
def test_units_and_offsets_of_a_predictor_do_not_change_the_two_stage_draws(offset, log_scale, column, binary):
    """Mvmeta's eigenvalue floor on Psi is not equivariant under a change of units: the draw standardizes
    the predictors, so a + b x leaves the imputations as they were (attack9 F3: up to 388 SD before)."""
    x, y, observed, study = affine_problem()
    if binary:
        y = (y > 0.4).astype(float)
    moved = x.copy()
    moved[:, column] = offset + 10**log_scale * x[:, column]
    base = two_stage_draw(np.random.default_rng(9), x, y, observed, study, 6, binary=binary)
    again = two_stage_draw(np.random.default_rng(9), moved, y, observed, study, 6, binary=binary)
    if binary:
        np.testing.assert_array_equal(again, base)
    else:
        # a + b x keeps x's digits only to eps |a| / b: the offset's share of the error is allowed
        representable = np.finfo(float).eps * abs(offset) / 10**log_scale
        assert np.abs(again - base).max() < (1e-8 + 1e3 * representable) * base.std()


@settings(max_examples=15, deadline=None)
@given(offset=st.floats(-1e6, 1e6), log_scale=st.floats(-3, 3))
def test_units_and_offsets_of_a_normal_variable_carry_over_to_its_draws(offset, log_scale):
    """y -> a + b y gives a + b (imputations), up to the digits a + b y keeps of y."""
    x, y, observed, study = affine_problem()
    scale = 10**log_scale
    base = two_stage_draw(np.random.default_rng(9), x, y, observed, study, 6)
    moved = two_stage_draw(np.random.default_rng(9), x, offset + scale * y, observed, study, 6)
    representable = np.finfo(float).eps * (abs(offset) / scale + np.abs(y).max())
    assert np.abs((moved - offset) / scale - base).max() < 1e-9 + 1e3 * representable


def outlying_study(seed: int, **first) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Six studies, follow-up = 2 (first study) or 0 + 0.2 IPS + 0.5 employed + 0.5 baseline + N(0, 0.8^2),
    30% of follow-ups missing; `first`: the first study's share in IPS / employment rate. Returns the
    observed data, the deleted follow-ups and the first study's missing rows."""
    rng = np.random.default_rng(seed)
    frames = []
    for j, n in enumerate([120, 80, 80, 80, 80, 80]):
        share, rate = (first.get("ips", 0.5), first.get("employed", 0.4)) if j == 0 else (0.5, 0.4)
        ips = (np.arange(n) < round(share * n)).astype(float)
        employed = (rng.random(n) < rate).astype(float)
        baseline = rng.standard_normal(n)
        follow_up = 2.0 * (j == 0) + 0.2 * ips + 0.5 * employed + 0.5 * baseline + 0.8 * rng.standard_normal(n)
        frames.append(pd.DataFrame({"study": f"S{j}", "arm": np.where(ips == 1, "IPS", "SAU"), "employed": employed,
                                    "o_bl_z": baseline, "o_fu_z": follow_up}))  # fmt: skip
    full = pd.concat(frames, ignore_index=True)
    data = full.assign(o_fu_z=full["o_fu_z"].mask(rng.random(len(full)) < 0.3))
    return data, full["o_fu_z"], data["o_fu_z"].isna() & (data["study"] == "S0")


@pytest.mark.parametrize("first", [{"ips": 1.0}, {"employed": 0.0}])
def test_a_study_whose_own_fit_is_aliased_keeps_its_own_data(first):
    """A single-arm study, or one where nobody is employed, with intercept +2 (others 0): its imputed
    follow-ups were drawn from the other studies' distribution (mean 0.44 / -0.04 against 2.5 / 2.2);
    now from its own rows given the between-study prior. Each imputation's study mean has SD ~0.15."""
    data, truth, rows = outlying_study(4, **first)
    means = [
        impute(data, "o", j, seed=2, method="two_stage", iterations=2).loc[rows, "o_fu_z"].mean() for j in range(3)
    ]
    assert abs(np.mean(means) - truth[rows].mean()) < 0.5, (means, truth[rows].mean())


def test_general_method_of_moments_is_jackson_white_riley_with_full_designs_and_unbiased_with_partial_ones():
    rng = np.random.default_rng(11)
    for _ in range(20):
        k = int(rng.integers(1, 4))
        m = int(rng.integers(k + 2, 9))
        estimates = rng.normal(size=(m, k))
        covariances = np.array([a @ a.T + 0.1 * np.eye(k) for a in rng.normal(size=(m, k, k))])
        direct = method_of_moments(estimates, covariances)
        general = general_method_of_moments(list(estimates), list(covariances), [np.eye(k)] * m)
        np.testing.assert_allclose(general.psi_raw, direct.psi_raw, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(general.mean, direct.mean, rtol=1e-9, atol=1e-12)
    # 10 studies, 4 of which estimate only beta_1 + beta_2 (single-arm): E[raw Psi] = Psi
    psi = np.array([[0.5, 0.1], [0.1, 0.3]])
    designs = [np.eye(2)] * 6 + [np.array([[1.0, 1.0]])] * 4
    covariances = [np.diag([0.2, 0.3])] * 6 + [np.array([[0.25]])] * 4
    draws = []
    for _ in range(600):
        betas = rng.multivariate_normal([1.0, -0.5], psi, size=10)
        estimates = [
            c @ b + rng.multivariate_normal(np.zeros(len(s)), s) for c, b, s in zip(designs, betas, covariances)
        ]
        draws.append(general_method_of_moments(estimates, covariances, designs).psi_raw)
    draws = np.array(draws)
    z = (draws.mean(axis=0) - psi) / (draws.std(axis=0, ddof=1) / np.sqrt(len(draws)))
    assert np.abs(z).max() < 3.5, z


def test_a_study_posterior_given_its_rows_is_the_textbook_conditional_and_finite_under_separation():
    rng = np.random.default_rng(12)
    x = np.column_stack([np.ones(30), rng.standard_normal((30, 2))])
    y = x @ [0.5, 1.0, -1.0] + rng.standard_normal(30)
    mean, psi, variance = np.array([0.2, 0.8, -0.6]), np.diag([0.3, 0.2, 0.1]), 1.3
    estimate = np.linalg.lstsq(x, y, rcond=None)[0]
    expected = conditional_moments(estimate, variance * np.linalg.inv(x.T @ x), mean, psi)
    found = posterior_given_rows(x, y, mean, psi_root(psi), variance)
    np.testing.assert_allclose(found[0], expected[0], rtol=1e-10)
    np.testing.assert_allclose(found[1], expected[1], rtol=1e-10)
    # separation by the second column: the mode under the N(mean, psi) prior is finite; scipy agrees
    binary = (x[:, 1] > 0).astype(float)
    mode, _ = posterior_given_rows(x, binary, mean, psi_root(psi), None)
    precision = np.linalg.inv(psi)

    def negative_log_posterior(beta):
        eta = x @ beta
        return np.logaddexp(0, eta).sum() - binary @ eta + (beta - mean) @ precision @ (beta - mean) / 2

    reference = minimize(negative_log_posterior, mean, method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(mode, reference, atol=1e-5)


def test_the_thin_meta_analysis_warning_counts_studies_with_a_full_fit():
    """6 measuring studies for a 5-coefficient follow-up model, one of them single-arm: 5 full fits."""
    data, _, _ = outlying_study(5, ips=1.0)
    data = pd.concat([data, data[data["study"] == "S1"].assign(study="S6", o_fu_z=np.nan)], ignore_index=True)
    assert thin_meta_analyses(data, "o") == (
        "two_stage: o_fu_z imputed wholesale from 6 measuring studies, 5 of them with a full fit of its model, "
        "fewer than its 5 coefficients + 1, so part of the between-study covariance is 0"
    )
    both = data.assign(arm=np.where(np.arange(len(data)) % 2 == 0, "IPS", "SAU"))
    assert thin_meta_analyses(both, "o") == ""


def test_the_coordinator_refuses_two_stage_with_bundled_studies():
    mi = {"method": "two_stage", "iterations": 5, "seed": 1, "imputations": 5}
    assert "not possible with bundled studies" in bundle_refusal(mi, "EU1", None)
    stratified = {**mi, "method": "stratified"}
    assert "the same settings" in bundle_refusal(stratified, "EU1", None)
    assert bundle_refusal(stratified, "EU1", {"settings": imputation_settings(stratified)}) is None
