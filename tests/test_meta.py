"""Meta-analysis functions against published worked examples and limiting cases."""

import numpy as np
import pytest
from scipy import stats

from ipdpool.meta import METHODS, generalized_q, hedges_g, leave_one_out, meta_analysis

# BCG vaccine trials (Colditz et al. 1994), as dat.bcg in R's metafor: tpos, tneg, cpos, cneg.
BCG = np.array(
    [
        [4, 119, 11, 128], [6, 300, 29, 274], [3, 228, 11, 209], [62, 13536, 248, 12619], [33, 5036, 47, 5761],
        [180, 1361, 372, 1079], [8, 2537, 10, 619], [505, 87886, 499, 87892], [29, 7470, 45, 7232],
        [17, 1699, 65, 1600], [186, 50448, 141, 27197], [5, 2493, 3, 2338], [27, 16886, 29, 17825],
    ],
    dtype=float,
)  # fmt: skip


@pytest.fixture(scope="module")
def bcg_log_rr():
    a, b, c, d = BCG.T
    return np.log((a / (a + b)) / (c / (c + d))), 1 / a - 1 / (a + b) + 1 / c - 1 / (c + d)


def test_fixed_effect_matches_stata_metan(bcg_log_rr):
    # metafor's test against Stata metan (test_misc_rma_vs_metan_with_dat.bcg): -0.4303 (-0.5097, -0.3509), Q = 152.2330
    result = meta_analysis(*bcg_log_rr, method="FE")
    assert (round(result.estimate, 4), round(result.ci_low, 4), round(result.ci_high, 4)) == (-0.4303, -0.5097, -0.3509)
    assert round(result.q, 4) == 152.2330 and result.q_p < 1e-20


def test_dersimonian_laird_matches_stata_metan(bcg_log_rr):
    # same source: -0.7141 (-1.0644, -0.3638), tau^2 = 0.3088, I^2 = 92.1173%
    result = meta_analysis(*bcg_log_rr, method="DL")
    assert (round(result.estimate, 4), round(result.ci_low, 4), round(result.ci_high, 4)) == (-0.7141, -1.0644, -0.3638)
    assert round(result.tau2, 4) == 0.3088 and round(result.i2, 4) == 92.1173


def test_reml_matches_metafor_worked_example(bcg_log_rr):
    # Viechtbauer (2010), J Stat Softw 36(3): rma(yi, vi, data=dat) and confint(res):
    # tau^2 = 0.3132 (Q-profile 0.1197 to 1.1115), I^2 = 92.22%, H^2 = 12.86,
    # estimate -0.7145, SE 0.1798, 95% CI -1.0669 to -0.3622; predict(res, transf=exp):
    # prediction interval 0.15 to 1.55 on the risk-ratio scale (normal quantile).
    result = meta_analysis(*bcg_log_rr, method="REML", prediction="metafor")
    assert round(result.tau2, 4) == 0.3132
    assert (round(result.tau2_ci_low, 4), round(result.tau2_ci_high, 4)) == (0.1197, 1.1115)
    assert round(result.i2, 2) == 92.22 and round(result.h2, 2) == 12.86
    assert (round(result.estimate, 4), round(result.se, 4)) == (-0.7145, 0.1798)
    assert (round(result.ci_low, 4), round(result.ci_high, 4)) == (-1.0669, -0.3622)
    assert (round(np.exp(result.pi_low), 2), round(np.exp(result.pi_high), 2)) == (0.15, 1.55)


def test_paule_mandel_solves_its_estimating_equation(bcg_log_rr):
    # Paule & Mandel (1982): generalized Q(tau^2) = k - 1; metafor gives tau^2 = 0.3181 here.
    result = meta_analysis(*bcg_log_rr, method="PM")
    assert generalized_q(*bcg_log_rr, result.tau2) == pytest.approx(12, rel=1e-12)
    assert round(result.tau2, 4) == 0.3181


def test_knapp_hartung_follows_its_definition(bcg_log_rr):
    y, v = bcg_log_rr
    plain, adjusted = meta_analysis(y, v, "REML"), meta_analysis(y, v, "REML", hksj=True)
    w = 1 / (v + plain.tau2)
    expected_se = np.sqrt(np.sum(w * (y - plain.estimate) ** 2) / (12 * np.sum(w)))
    assert adjusted.se == pytest.approx(expected_se, rel=1e-12) and adjusted.df == 12
    assert adjusted.estimate == plain.estimate and adjusted.ci_high - adjusted.ci_low > 0


def test_homogeneous_studies_give_tau2_zero_for_every_estimator():
    y, v = np.array([0.30, 0.32, 0.29, 0.31]), np.array([0.04, 0.05, 0.03, 0.06])  # Q far below k - 1
    for method in ("REML", "DL", "PM"):
        result = meta_analysis(y, v, method)
        assert result.tau2 == 0.0 and result.i2 == 0.0
        fixed = meta_analysis(y, v, "FE")
        assert result.estimate == pytest.approx(fixed.estimate) and result.se == pytest.approx(fixed.se)
    assert meta_analysis(y, v, "REML").tau2_ci_low == 0.0


def test_identical_estimates():
    result = meta_analysis([0.5] * 5, [0.01, 0.02, 0.03, 0.04, 0.05])
    assert result.estimate == pytest.approx(0.5) and result.q == pytest.approx(0) and result.tau2 == 0
    assert (result.tau2_ci_low, result.tau2_ci_high) == (0.0, 0.0)


def test_one_study_returns_that_study_and_says_so():
    # metafor 3.8-1, rma(0.4, 0.04, test="knha"): falls back to the normal interval ("Setting argument
    # test="z" since k=1"), SE 0.2, Q = 0 with p = 1, I^2 = 0, H^2 = 1; confint() stops (no tau^2 CI)
    result = meta_analysis([0.4], [0.04], "REML", hksj=True)
    assert result.estimate == 0.4 and result.k == 1 and result.se == pytest.approx(0.2) and result.df == np.inf
    assert any("Knapp-Hartung needs two studies" in w for w in result.warnings)
    assert (result.q, result.q_p, result.i2, result.h2) == (0.0, 1.0, 0.0, 1.0) and np.isnan(result.tau2_ci_low)
    plain = meta_analysis([0.4], [0.04])
    assert plain.se == pytest.approx(0.2) and any("one study" in w for w in plain.warnings)
    assert np.isnan(plain.pi_low)
    # metafor's predict(): with tau^2 = 0 and the normal quantile the prediction interval is the CI
    metafor = meta_analysis([0.4], [0.04], prediction="metafor")
    assert (metafor.pi_low, metafor.pi_high) == (metafor.ci_low, metafor.ci_high)


def test_two_studies_have_no_t_prediction_interval():
    result = meta_analysis([0.1, 0.5], [0.01, 0.02])
    assert np.isnan(result.pi_low) and any("three studies" in w for w in result.warnings)
    assert meta_analysis([0.1, 0.5], [0.01, 0.02], hksj=True).df == 1


def test_a_study_with_a_huge_variance_has_no_weight():
    y, v = np.array([0.2, 0.25, 0.3, 5.0]), np.array([0.01, 0.01, 0.01, 1e8])
    result = meta_analysis(y, v, "REML")
    assert result.weights[3] < 1e-6 and result.estimate == pytest.approx(0.25, abs=1e-6)


def test_leave_one_out_omits_each_study(bcg_log_rr):
    y, v = bcg_log_rr
    labels = [f"t{i}" for i in range(len(y))]
    results = leave_one_out(y, v, labels)
    assert [label for label, _ in results] == labels
    assert results[0][1].k == 12
    assert results[3][1].estimate == pytest.approx(meta_analysis(np.delete(y, 3), np.delete(v, 3)).estimate)


def test_hedges_g_matches_borenstein_worked_example():
    # Borenstein et al. (2009), Introduction to Meta-Analysis, ch. 4: means 103 vs 100, SD 5.5 and 4.5,
    # n = 50 each: d = 0.5970, V_d = 0.0418; J = 0.9923, g = 0.5924, V_g = 0.0411.
    g, variance = hedges_g(50, 103, 5.5, 50, 100, 4.5)
    assert round(g, 4) == 0.5924 and round(variance, 4) == 0.0411


def test_identical_estimates_with_knapp_hartung_give_se_zero_as_metafor():
    # metafor 3.8-1, rma(c(.2, .2, .2), c(.01, .02, .03), test="knha") for FE, DL, REML, PM: SE 0,
    # CI 0.2 to 0.2, p 0 (z = 0.2 / 0 is infinite), predict(): 0.2 to 0.2
    for method in METHODS:
        result = meta_analysis([0.2, 0.2, 0.2], [0.01, 0.02, 0.03], method, True, prediction="metafor")
        assert (result.se, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.2, 0.2, 0.0)
        assert any("identical estimates give SE 0" in w for w in result.warnings)
        if method != "FE":
            assert (result.pi_low, result.pi_high) == (0.2, 0.2)


def test_leave_one_out_down_to_one_study_reports_no_heterogeneity_as_metafor():
    # metafor's rma with one study: Q = 0, p = 1, I^2 = 0, H^2 = 1 (not missing values)
    for label, result in leave_one_out([0.1, 0.5], [0.01, 0.02], ["a", "b"]):
        assert result.k == 1 and (result.q, result.q_p, result.i2, result.h2) == (0.0, 1.0, 0.0, 1.0), label


def test_prediction_interval_conventions(bcg_log_rr):
    y, v = bcg_log_rr
    for hksj, metafor_df in ((False, np.inf), (True, 12.0)):
        higgins = meta_analysis(y, v, "REML", hksj, prediction="higgins")
        metafor = meta_analysis(y, v, "REML", hksj, prediction="metafor")
        assert (higgins.pi_df, metafor.pi_df) == (11.0, metafor_df)
        spread = np.sqrt(higgins.tau2 + higgins.se**2)
        quantile = stats.norm.ppf(0.975) if metafor_df == np.inf else stats.t.ppf(0.975, metafor_df)
        assert higgins.pi_high - higgins.estimate == pytest.approx(stats.t.ppf(0.975, 11) * spread, rel=1e-12)
        assert metafor.pi_high - metafor.estimate == pytest.approx(quantile * spread, rel=1e-12)
    assert np.isnan(meta_analysis(y, v, "FE", prediction="metafor").pi_low)
    with pytest.raises(ValueError, match="prediction interval 't' not in"):
        meta_analysis(y, v, prediction="t")


SCALED = ("estimate", "se", "ci_low", "ci_high", "pi_low", "pi_high")
SQUARED = ("tau2", "tau2_ci_low", "tau2_ci_high")
INVARIANT = ("df", "p_value", "pi_df", "i2", "h2", "q", "q_p", "k")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("hksj", [False, True])
@pytest.mark.parametrize("prediction", ["higgins", "metafor"])
def test_results_are_scale_equivariant(bcg_log_rr, method, hksj, prediction):
    # y * c with v * c^2: c-scaled estimates and intervals, c^2-scaled tau^2, the rest unchanged; the old
    # REML stopped on an absolute change of 1e-12 and failed once tau^2 was in raw units (thousands)
    datasets = {
        "bcg": bcg_log_rr,
        "homogeneous": (np.array([0.30, 0.32, 0.29, 0.31]), np.array([0.04, 0.05, 0.03, 0.06])),
        "two studies": (np.array([0.1, 0.5]), np.array([0.01, 0.02])),
        "three studies": (np.array([0.1, 0.5, 0.9]), np.array([0.01, 0.02, 0.015])),
    }
    for name, (y, v) in datasets.items():
        unit = meta_analysis(y, v, method, hksj, prediction=prediction)
        for c in (1e-6, 1e-3, 1e3, 1e6):
            scaled = meta_analysis(y * c, v * c**2, method, hksj, prediction=prediction)
            for fields, factor in ((SCALED, c), (SQUARED, c**2), (INVARIANT, 1.0)):
                for key in fields:
                    expected = factor * getattr(unit, key)
                    assert getattr(scaled, key) == pytest.approx(expected, rel=1e-9, abs=0, nan_ok=True), (name, c, key)
            assert scaled.weights == pytest.approx(unit.weights, rel=1e-9)
