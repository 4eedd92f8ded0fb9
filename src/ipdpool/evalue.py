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
    ratio = rr if rr >= 1 else 1 / rr
    return ratio + math.sqrt(ratio * (ratio - 1))


def evalue_smd(estimate: float, se: float) -> dict:
    """RR scale estimate and limits, and the E-values of the estimate and of the interval."""
    if not se >= 0:
        raise ValueError(f"a standard error must be >= 0, got {se}")
    rr = math.exp(CONVERSION * estimate)
    low = math.exp(CONVERSION * estimate - CONVERSION_CI * se)
    high = math.exp(CONVERSION * estimate + CONVERSION_CI * se)
    if low <= 1 <= high:
        ci_evalue = 1.0
    else:
        ci_evalue = evalue_rr(low if estimate > 0 else high)
    return {"rr": rr, "rr_low": low, "rr_high": high, "evalue": evalue_rr(rr), "evalue_ci": ci_evalue}
