"""E-values (VanderWeele & Ding 2017, Ann Intern Med 167(4):268-274) for a standardized mean
difference, as the EValue R package's evalues.MD (Mathur, Ding, Riddell & VanderWeele):

- the SMD d converts to an approximate risk ratio RR = exp(0.91 d), and its interval to
  exp(0.91 d -/+ 1.78 se) (1.78 = 0.91 x 1.96; VanderWeele 2017, Epidemiology 28(6):e58;
  Chinn 2000, Stat Med 19(22):3127-3131);
- E-value of a risk ratio RR >= 1: RR + sqrt(RR (RR - 1)); a ratio below 1 is inverted first;
- the interval's E-value is that of the limit closer to the null, and 1 if the interval
  includes the null.

The E-value is the minimum strength of association, on the risk-ratio scale, that an
unmeasured confounder would need with both working and the outcome to explain the estimate
(or move its interval to include the null), beyond the measured covariates.
"""

from __future__ import annotations

import math

CONVERSION = 0.91
CONVERSION_CI = 1.78


def evalue_rr(rr: float) -> float:
    if not rr > 0:
        raise ValueError(f"a risk ratio must be positive, got {rr}")
    return evalue_log_rr(math.log(rr))


def evalue_log_rr(log_rr: float) -> float:
    """The E-value from log RR: a ratio below 1 is inverted first, so +-x give the same value
    (on the log scale, so that a huge SMD of either sign gives inf rather than an overflow)."""
    ratio = _exp(abs(log_rr))
    return ratio + math.sqrt(ratio * (ratio - 1))


def _exp(x: float) -> float:
    return math.exp(x) if x < 709.0 else math.inf


def evalue_smd(estimate: float, se: float) -> dict:
    """RR scale estimate and limits, and the E-values of the estimate and of the interval (the
    interval is evalues.MD's normal one, d -/+ 1.96 se, whatever interval the SMD was published
    with: with few degrees of freedom a t interval is wider and may include the null where this
    one does not)."""
    if not se >= 0:
        raise ValueError(f"a standard error must be >= 0, got {se}")
    log_rr = CONVERSION * estimate
    log_low, log_high = log_rr - CONVERSION_CI * se, log_rr + CONVERSION_CI * se
    if log_low <= 0 <= log_high:
        ci_evalue = 1.0
    else:
        ci_evalue = evalue_log_rr(log_low if estimate > 0 else log_high)
    return {"rr": _exp(log_rr), "rr_low": _exp(log_low), "rr_high": _exp(log_high), "evalue": evalue_log_rr(log_rr),
            "evalue_ci": ci_evalue}  # fmt: skip
