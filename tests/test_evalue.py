"""E-values for SMDs against values computed by hand (bc -l, 15 digits) from the EValue R
package's evalues.MD (github.com/mayamathur/evalue_package, EValue/R/EValue.R: RR = exp(0.91 d),
limits exp(0.91 d -/+ 1.78 se), threshold(x) = x + sqrt(x (x - 1)) after inverting x < 1, the
limit closer to the null, 1 when the interval crosses it). The first case is the package's
documented example evalues.MD(.5, .25)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipdpool.evalue import evalue_smd

HAND = [
    # d, se, RR, E-value of the estimate, E-value of the interval
    (0.5, 0.25, 1.576173383033991, 2.529141981861268, 1.110803196530368),
    (-0.3, 0.1, 0.761092787628934, 1.956110185985548, 1.430703780372130),
    (0.1, 0.2, 1.095269005258465, 1.418294064071867, 1.0),
    (-0.8, 0.15, 0.482873772531229, 3.560174500037993, 2.549326398396146),
]


@pytest.mark.parametrize("d, se, rr, evalue, evalue_ci", HAND)
def test_evalue_equals_hand_computed_evalues_md(d, se, rr, evalue, evalue_ci):
    out = evalue_smd(d, se)
    assert out["rr"] == pytest.approx(rr, rel=1e-13)
    assert out["evalue"] == pytest.approx(evalue, rel=1e-13)
    assert out["evalue_ci"] == pytest.approx(evalue_ci, rel=1e-13)


@given(d=st.floats(-3, 3), se=st.floats(0, 2))
def test_evalue_is_symmetric_in_the_sign_and_at_least_the_ci_evalue(d, se):
    """Reversing the outcome's direction changes nothing; the interval never needs more confounding.
    (Near RR = 1 the square root turns a rounding error e in RR into sqrt(e): abs 1e-6.)"""
    a, b = evalue_smd(d, se), evalue_smd(-d, se)
    assert a["evalue"] == pytest.approx(b["evalue"], rel=1e-12, abs=1e-6)
    assert a["evalue_ci"] == pytest.approx(b["evalue_ci"], rel=1e-12, abs=1e-6)
    assert 1 <= a["evalue_ci"] <= a["evalue"] * (1 + 1e-12)


@pytest.mark.parametrize("d", [800.0, -800.0, 1e6, -1e6])
def test_a_huge_smd_gives_infinite_evalues_whatever_its_sign(d):
    """Attack 3, C12: exp(0.91 x 800) overflowed for +800 only."""
    out = evalue_smd(d, 1.0)
    assert out["evalue"] == out["evalue_ci"] == float("inf")


def test_a_nan_standard_error_is_refused_naming_the_outcome():
    import pandas as pd

    from ipdpool.causal import evalue_table

    one_stage = pd.DataFrame({"contrast": ["employed"], "model": ["random_intercept"], "outcome": ["qol"],
                              "estimate": [0.3], "se": [float("nan")]})  # fmt: skip
    with pytest.raises(ValueError, match="E-value of outcome qol: a standard error must be >= 0"):
        evalue_table(one_stage)
