"""One-stage models checked against independent computations and simulated truth."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import optimize

from ipdpool.models.crossprod import cross_products
from ipdpool.models.lmm import fit_lmm
from ipdpool.models.onestage import ModelSpec, fit_outcome, primary, random_slope, study_fixed_effect
from ipdpool.models.statistics import statistics_by_study

EMPLOYED = ModelSpec("employed", ("employed",), ("baseline",), {"employed": {"employed": 1}})
INTERACTION = ModelSpec(
    "ips_x_employed",
    ("ips", "employed", "ips:employed"),
    ("baseline",),
    {
        "ips:employed": {"ips:employed": 1},
        "employed_in_SAU": {"employed": 1},
        "employed_in_IPS": {"employed": 1, "ips:employed": 1},
    },
)


def simulate(rng, k=5, n=120, tau=0.3, smd=0.5, ips_effect=0.0, interaction=0.0, stability=0.6, intercepts=None):
    """Harmonized-like data for one outcome ("o") from the random-intercept model."""
    study = np.repeat([f"S{i}" for i in range(k)], n)
    u = rng.normal(0, tau, k) if intercepts is None else np.asarray(intercepts)
    baseline = rng.normal(size=k * n)
    ips = rng.binomial(1, 0.5, k * n)
    employed = rng.binomial(1, 1 / (1 + np.exp(-(-0.5 + 0.8 * ips + 0.5 * baseline))))
    followup = (
        np.repeat(u, n)
        + stability * baseline
        + smd * employed
        + ips_effect * ips
        + interaction * ips * employed
        + rng.normal(0, 0.8, k * n)
    )
    return pd.DataFrame(
        {
            "study": study,
            "arm": np.where(ips == 1, "IPS", "SAU"),
            "employed": employed.astype(float),
            "o_bl_z": baseline,
            "o_fu_z": followup,
        }
    )


# ------------------------------------------------------------ independent REML (dense matrices, textbook formulas)


def dense_reml(x, y, groups):
    """REML by profiling sigma2 out and maximizing over gamma = tau2 / sigma2 with dense V.

    l_R(gamma) = -1/2 [(N - p) log s2 + log|H| + log|X' H^-1 X|] + const, H = I + gamma Z Z',
    s2 = r' H^-1 r / (N - p) (Harville 1977; Pinheiro & Bates 2000, sec. 2.2).
    """
    z = (groups[:, None] == np.unique(groups)[None, :]).astype(float)
    n, p = x.shape

    def pieces(gamma):
        h = np.eye(n) + gamma * z @ z.T
        h_inv = np.linalg.inv(h)
        xhx = x.T @ h_inv @ x
        beta = np.linalg.solve(xhx, x.T @ h_inv @ y)
        r = y - x @ beta
        s2 = r @ h_inv @ r / (n - p)
        loglik = -0.5 * ((n - p) * np.log(s2) + np.linalg.slogdet(h)[1] + np.linalg.slogdet(xhx)[1])
        return loglik, beta, s2, np.linalg.inv(xhx) * s2

    best = optimize.minimize_scalar(
        lambda u: -pieces(np.exp(u))[0], bounds=(-20, 5), method="bounded", options={"xatol": 1e-11}
    )
    gamma = np.exp(best.x)
    _, beta, s2, cov = pieces(gamma)
    return gamma * s2, s2, beta, cov


def test_reml_agrees_with_an_independent_dense_implementation():
    rng = np.random.default_rng(11)
    frame = simulate(rng, k=6, n=40)
    x = np.column_stack([np.ones(len(frame)), frame["employed"], frame["o_bl_z"]])
    y, groups = frame["o_fu_z"].to_numpy(), frame["study"].to_numpy()
    fit = random_intercept_fit(x, y, groups)
    tau2, sigma2, beta, cov = dense_reml(x, y, groups)
    assert not fit.is_singular
    assert fit.random_covariance[0, 0] == pytest.approx(tau2, abs=1e-6)
    assert fit.sigma2 == pytest.approx(sigma2, abs=1e-6)
    np.testing.assert_allclose(fit.beta, beta, atol=1e-6)
    np.testing.assert_allclose(fit.vcov, cov, atol=1e-6)


def random_intercept_fit(x, y, groups, reml=True):
    names = [f"x{j}" for j in range(x.shape[1])]
    return fit_lmm(cross_products(x, x[:, :1], y, groups, names, names[:1]), reml=reml)


def test_satterthwaite_df_for_a_study_level_covariate_in_a_balanced_design_is_k_minus_2():
    """Balanced random-intercept design: a covariate constant within studies has k - 2 df."""
    rng = np.random.default_rng(2)
    k, n = 8, 30
    groups = np.repeat(np.arange(k), n)
    study_level = np.repeat(np.array([0, 1] * (k // 2), dtype=float), n)
    x = np.column_stack([np.ones(k * n), study_level])
    y = 0.5 * study_level + np.repeat(rng.normal(0, 0.5, k), n) + rng.normal(size=k * n)
    fit = random_intercept_fit(x, y, groups)
    assert fit.contrast(np.array([0.0, 1.0]))["df"] == pytest.approx(k - 2, rel=1e-6)


# ------------------------------------------------------------ boundary safety


def zero_between_study_variance(rng, k=5, n=80):
    """Data with no between-study variation at all: every study's outcome has the same mean structure."""
    frame = simulate(rng, k=k, n=n, intercepts=np.zeros(k))
    # Remove the sampling variation of study means too, so REML puts tau2 exactly at 0.
    residual = frame["o_fu_z"] - 0.6 * frame["o_bl_z"] - 0.5 * frame["employed"]
    frame["o_fu_z"] -= residual.groupby(frame["study"]).transform("mean") - residual.mean()
    return frame


def test_zero_between_study_variance_is_detected_and_estimates_equal_ols():
    frame = zero_between_study_variance(np.random.default_rng(4))
    rows = primary(frame, "o", EMPLOYED)
    row = rows[0]
    assert row["singular"] is True and row["tau2"] == 0.0
    x = sm.add_constant(frame[["employed", "o_bl_z"]].to_numpy())
    ols = sm.OLS(frame["o_fu_z"].to_numpy(), x).fit()
    assert row["estimate"] == pytest.approx(ols.params[1], abs=1e-10)
    assert row["se"] == pytest.approx(ols.bse[1], abs=1e-10)
    assert "singular fit" in row["warnings"]


def test_boundary_fit_gives_the_ols_intercept_and_study_level_terms():
    """statsmodels issue 10239: at tau2 = 0 MixedLM may return 0.0 for the intercept and
    study-level terms. The engine must give the OLS values there."""
    rng = np.random.default_rng(9)
    frame = zero_between_study_variance(rng)
    frame["o_fu_z"] += 3.0  # a clearly non-zero intercept
    level = np.repeat(rng.normal(size=5), 80)  # a study-level covariate
    x = np.column_stack([np.ones(len(frame)), frame["employed"], frame["o_bl_z"], level])
    y, groups = frame["o_fu_z"].to_numpy(), frame["study"].to_numpy()
    fit = random_intercept_fit(x, y, groups)
    ols = np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(fit.beta, ols, atol=1e-10)
    assert fit.is_singular and abs(fit.beta[0] - 3.0) < 0.3


# ------------------------------------------------------------ edge cases


def test_a_study_where_everybody_worked_is_still_estimated():
    rng = np.random.default_rng(12)
    frame = simulate(rng)
    frame.loc[frame["study"] == "S0", "employed"] = 1.0
    row = primary(frame, "o", EMPLOYED)[0]
    assert row["status"] == "estimated" and row["n_studies"] == 5
    assert abs(row["estimate"] - 0.5) < 4 * row["se"]
    slope = random_slope(statistics_of(frame, EMPLOYED), "o", EMPLOYED)
    assert slope[0]["status"] == "estimated"


def test_an_outcome_present_in_one_study_gets_a_row_saying_why():
    frame = simulate(np.random.default_rng(13))
    frame.loc[frame["study"] != "S2", ["o_bl_z", "o_fu_z"]] = np.nan
    rows = primary(frame, "o", INTERACTION)
    assert [r["term"] for r in rows] == list(INTERACTION.report)
    assert all(r["status"] == "not estimated" for r in rows)
    assert "available in 1 studies" in rows[0]["warnings"] and "needs at least 2" in rows[0]["warnings"]


def test_a_term_without_variation_is_reported_not_crashed():
    frame = simulate(np.random.default_rng(14))
    frame["employed"] = 1.0
    row = primary(frame, "o", EMPLOYED)[0]
    assert row["status"] == "not estimated" and "no variation in employed" in row["warnings"]


def test_interaction_contrasts_are_the_right_combinations():
    frame = simulate(np.random.default_rng(15), k=6, n=300, smd=0.4, interaction=0.3)
    rows = {r["term"]: r for r in primary(frame, "o", INTERACTION)}
    sau, ips, both = rows["employed_in_SAU"], rows["employed_in_IPS"], rows["ips:employed"]
    assert ips["estimate"] == pytest.approx(sau["estimate"] + both["estimate"], abs=1e-12)
    assert abs(sau["estimate"] - 0.4) < 4 * sau["se"] and abs(ips["estimate"] - 0.7) < 4 * ips["se"]


def statistics_of(frame, model):
    spec = {"terms": list(model.terms), "adjust": list(model.adjust), "report": model.report}
    return statistics_by_study(frame, {"outcomes": ["o"], "models": {model.name: spec}})


@pytest.mark.parametrize("model", [EMPLOYED, INTERACTION], ids=["employed", "interaction"])
def test_study_fixed_effect_equals_linearmodels_panelols(model):
    """Estimates and cluster-robust SEs from statistics equal linearmodels' PanelOLS on the rows."""
    from linearmodels.panel import PanelOLS

    frame = simulate(np.random.default_rng(16), k=6, n=90, interaction=0.2)
    frame = frame[~((frame["study"] == "S2") & (np.arange(len(frame)) % 3 == 0))]  # unbalanced
    rows = {r["term"]: r for r in study_fixed_effect(statistics_of(frame, model), "o", model)}
    ips = (frame["arm"] == "IPS").to_numpy(float)
    columns = {
        "ips": ips,
        "employed": frame["employed"].to_numpy(float),
        "ips:employed": ips * frame["employed"].to_numpy(float),
        "baseline": frame["o_bl_z"].to_numpy(float),
    }
    names = list(model.terms + model.adjust)
    index = pd.MultiIndex.from_arrays([frame["study"], frame.groupby("study").cumcount()])
    exog = pd.DataFrame({name: columns[name] for name in names}, index=index)
    result = PanelOLS(pd.Series(frame["o_fu_z"].to_numpy(), index=index), exog, entity_effects=True).fit(
        cov_type="clustered", cluster_entity=True
    )
    for term, weights in model.report.items():
        vector = np.array([weights.get(name, 0.0) for name in names])
        assert rows[term]["estimate"] == pytest.approx(float(vector @ result.params.to_numpy()), rel=1e-10)
        assert rows[term]["se"] == pytest.approx(float(np.sqrt(vector @ result.cov.to_numpy() @ vector)), rel=1e-10)
        assert rows[term]["sigma2"] == pytest.approx(float(result.s2), rel=1e-10)
        assert "unreliable" in rows[term]["warnings"] and rows[term]["df"] == 5


def test_results_table_has_the_documented_columns(repo_root):
    import yaml

    analysis = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())["analysis"]
    frame = simulate(np.random.default_rng(17)).rename(
        columns={"o_bl_z": "functioning_bl_z", "o_fu_z": "functioning_fu_z"}
    )
    frame["age"], frame["sex"], frame["diagnosis"] = 35.0, "male", "bipolar"
    frame.loc[::3, "sex"], frame.loc[::4, "diagnosis"] = "female", "schizophrenia_spectrum"
    one_stage, sensitivity = fit_outcome(frame, "functioning", analysis)
    required = [
        "outcome",
        "contrast",
        "term",
        "model",
        "estimate",
        "se",
        "ci_low",
        "ci_high",
        "df",
        "p_value",
        "n_participants",
        "n_studies",
        "studies",
        "tau2",
        "sigma2",
        "icc",
        "loglik",
        "method",
        "singular",
        "warnings",
    ]
    assert set(required) <= set(one_stage.columns) and "variant" in sensitivity.columns
    assert set(one_stage["contrast"]) == {"employed", "ips", "ips_x_employed"}
    assert {
        "study_fixed_effect",
        "within_between",
        "random_slope_employed",
        "ml",
        "unadjusted",
        "covariates",
        "leave_out_S0",
    } <= set(sensitivity["variant"])


# ------------------------------------------------------------ recovery of known effects


@pytest.mark.slow
def test_bias_and_coverage_over_repeated_simulations():
    """Mean estimate within 4 Monte Carlo SEs of the truth; t (Satterthwaite) 95% CI
    coverage within 4 Monte Carlo SEs of 0.95 (binomial SE at 0.95)."""
    rng = np.random.default_rng(2021)
    replicates, truth = 300, {"employed_in_SAU": 0.5, "employed_in_IPS": 0.5, "ips:employed": 0.0}
    estimates = {t: [] for t in truth}
    covered = {t: 0 for t in truth}
    for _ in range(replicates):
        frame = simulate(rng, k=5, n=100, tau=0.3, smd=0.5)
        for row in primary(frame, "o", INTERACTION):
            estimates[row["term"]].append(row["estimate"])
            covered[row["term"]] += row["ci_low"] <= truth[row["term"]] <= row["ci_high"]
    coverage_se = np.sqrt(0.95 * 0.05 / replicates)
    for term, value in truth.items():
        draws = np.array(estimates[term])
        assert abs(draws.mean() - value) < 4 * draws.std(ddof=1) / np.sqrt(replicates), term
        assert abs(covered[term] / replicates - 0.95) < 4 * coverage_se, (term, covered[term] / replicates)
