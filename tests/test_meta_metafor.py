"""ipdpool.meta against metafor's rma, confint, predict and leave1out, computed live in R.

One Rscript call (a module fixture) fits every dataset below with FE, DL, REML and PM, each
with and without Knapp-Hartung (test="knha"). The datasets are public (R package metadat,
effect sizes from metafor's escalc) and cover k = 1 to 160, tau^2 = 0, identical estimates,
raw units (days; correlations x 1000) and a tiny scale (x 0.001). metafor stops Fisher
scoring on an absolute change of 1e-5 and its root searches at 1.2e-4; both are tightened
relative to each dataset's scale, so that the estimators are compared rather than stopping
rules, and confint's search range is widened so that every upper limit is found.
"""

import numpy as np
import pytest
from rscript import run_r

from ipdpool.meta import METHODS, leave_one_out, meta_analysis

# name -> R expression for list(yi, vi), with the helpers of R_HELPERS
DATASETS = {
    "bcg_rr": "bcg",
    "bcg_trial_1": "pick(bcg, 1)",
    "bcg_trials_1_2": "pick(bcg, 1:2)",
    "bcg_trials_7_12": "pick(bcg, c(7, 12))",
    "bcg_trials_1_3": "pick(bcg, 1:3)",
    "bcg_trials_4_7_12": "pick(bcg, c(4, 7, 12))",
    "identical_estimates": "given(c(0.2, 0.2, 0.2), c(0.01, 0.02, 0.03))",
    "normand1999_md_days": 'means("MD", dat.normand1999)',
    "normand1999_smd": 'means("SMD", dat.normand1999)',
    "hackshaw1998": "given(dat.hackshaw1998$yi, dat.hackshaw1998$vi)",
    "raudenbush1985": "raudenbush",
    "raudenbush1985_x0.001": "rescale(raudenbush, 1e-3)",
    "cohen1981_zcor": "correlations(dat.cohen1981)",
    "cohen1981_zcor_x1000": "rescale(correlations(dat.cohen1981), 1000)",
    "molloy2014": "correlations(dat.molloy2014)",
    "pritz1997": 'es(escalc("PLO", xi = xi, ni = ni, data = dat.pritz1997))',
    "li2007": 'counts("OR", dat.li2007)',
    "yusuf1985_table6": 'counts("OR", dat.yusuf1985[dat.yusuf1985$table == "6", ])',
    "collins1985a": 'es(escalc("OR", ai = b.xti, n1i = nti, ci = b.xci, n2i = nci, data = dat.collins1985a))',
    "hart1999": 'es(escalc("IRR", x1i = x1i, t1i = t1i, x2i = x2i, t2i = t2i, data = dat.hart1999))',
    "linde2005": 'counts("RR", dat.linde2005)',
    "curtis1998": 'means("ROM", dat.curtis1998)',
    "bangertdrowns2004": "given(dat.bangertdrowns2004$yi, dat.bangertdrowns2004$vi)",
    "mcdaniel1994": "correlations(dat.mcdaniel1994)",
    "konstantopoulos2011": "given(dat.konstantopoulos2011$yi, dat.konstantopoulos2011$vi)",
    "hine1989": 'counts("RD", dat.hine1989)',
    "cannon2006": 'es(escalc("OR", ai = ep1t, n1i = nt, ci = ep1c, n2i = nc, data = dat.cannon2006))',
    "gibson2002_md": 'means("MD", dat.gibson2002)',
    "nielweise2007": 'counts("OR", dat.nielweise2007)',
    "egger2001": 'counts("OR", dat.egger2001)',
    "lee2004": 'counts("RR", dat.lee2004)',
    "dorn2007": 'es(escalc("RR", ai = x.a, n1i = n.a, ci = x.p, n2i = n.p, data = dat.dorn2007))',
    "baskerville2012": "given(dat.baskerville2012$smd, dat.baskerville2012$se^2)",
    "lau1992": 'counts("OR", dat.lau1992)',
}
# leave1out() as well: k = 2 leaves one study, k = 3 two; raw units; tau^2 = 0
LEAVE_ONE_OUT = [
    "bcg_rr", "bcg_trials_7_12", "bcg_trials_4_7_12", "normand1999_md_days", "hine1989", "cohen1981_zcor_x1000",
]  # fmt: skip
FITS = [(method, knha) for method in METHODS for knha in (False, True)]

R_HELPERS = r"""
suppressPackageStartupMessages(library(metafor))
es <- function(d) {
  keep <- !is.na(d$yi) & !is.na(d$vi)
  list(yi = as.numeric(d$yi[keep]), vi = as.numeric(d$vi[keep]))
}
given <- function(yi, vi) list(yi = as.numeric(yi), vi = as.numeric(vi))
means <- function(measure, data) {
  es(escalc(measure, m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = data))
}
counts <- function(measure, data) es(escalc(measure, ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = data))
correlations <- function(data) es(escalc("ZCOR", ri = ri, ni = ni, data = data))
pick <- function(d, rows) list(yi = d$yi[rows], vi = d$vi[rows])
rescale <- function(d, c) list(yi = d$yi * c, vi = d$vi * c^2)
bcg <- es(escalc("RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg))
raudenbush <- given(dat.raudenbush1985$yi, dat.raudenbush1985$vi)
"""

R_FITS = r"""
fit <- function(d, method, test, loo) {
  unit <- 1 / mean(1 / d$vi)
  control <- list(threshold = 1e-12 * unit, tol = 1e-12 * unit, maxiter = 10000)
  res <- suppressWarnings(rma(d$yi, d$vi, method = method, test = test, control = control))
  out <- list(estimate = res$b[1], se = res$se, ci_low = res$ci.lb, ci_high = res$ci.ub, p_value = res$pval,
              tau2 = res$tau2, q = res$QE, q_p = res$QEp, i2 = res$I2, h2 = res$H2)
  if (method != "FE") {
    pred <- predict(res)
    out[c("pi_low", "pi_high")] <- list(pred$pi.lb, pred$pi.ub)
    if (res$k >= 3) {
      higgins <- predict(res, pi.type = "riley")  # t(k - 2) with sqrt(tau^2 + SE^2): Higgins et al. (2009)
      out[c("higgins_low", "higgins_high")] <- list(higgins$pi.lb, higgins$pi.ub)
    }
    if (res$k >= 2) {
      tau2_max <- 1e4 * (var(d$yi) + unit)
      ci <- confint(res, control = list(tol = 1e-12 * unit, tau2.max = tau2_max))$random
      stopifnot(ci["tau^2", "ci.ub"] < tau2_max)
      out[c("tau2_ci_low", "tau2_ci_high")] <- list(ci["tau^2", "ci.lb"], ci["tau^2", "ci.ub"])
    }
  }
  if (loo) {
    l <- suppressWarnings(leave1out(res))
    l <- list(estimate = l$estimate, se = l$se, ci_low = l$ci.lb, ci_high = l$ci.ub, tau2 = l$tau2,
              q = l$Q, q_p = l$Qp, i2 = l$I2, h2 = l$H2)
    out$leave1out <- Filter(Negate(is.null), l)  # FE has no tau2
  }
  out
}
out <- list()
for (name in names(datasets)) {
  d <- datasets[[name]]
  fits <- list()
  for (method in c("FE", "DL", "REML", "PM")) for (test in c("z", "knha")) {
    fits[[paste(method, test)]] <- fit(d, method, test, name %in% leave_one_out)
  }
  # the inputs in full: jsonlite writes 15 significant digits
  out[[name]] <- list(yi = sprintf("%.17g", d$yi), vi = sprintf("%.17g", d$vi), fits = fits)
}
"""

# quantity -> (relative tolerance, absolute floor, unit of the floor: "y" = sqrt(typical variance),
# "v" = typical variance, None = unitless); the floor matters only where metafor's value is ~0
TOLERANCES = {
    "estimate": (1e-6, 1e-8, "y"),
    "se": (1e-4, 1e-8, "y"),
    "ci_low": (1e-6, 1e-8, "y"),
    "ci_high": (1e-6, 1e-8, "y"),
    "p_value": (1e-6, 1e-12, None),
    "tau2": (1e-6, 1e-10, "v"),
    "tau2_ci_low": (1e-6, 1e-10, "v"),
    "tau2_ci_high": (1e-6, 1e-10, "v"),
    "q": (1e-8, 1e-10, None),
    "q_p": (1e-6, 1e-12, None),
    "i2": (1e-6, 1e-8, None),
    "h2": (1e-6, 1e-10, None),
    "pi_low": (1e-6, 1e-8, "y"),
    "pi_high": (1e-6, 1e-8, "y"),
    "higgins_low": (1e-6, 1e-8, "y"),
    "higgins_high": (1e-6, 1e-8, "y"),
}


def r_script() -> str:
    datasets = ",\n".join(f'  "{name}" = {expression}' for name, expression in DATASETS.items())
    loo = ", ".join(f'"{name}"' for name in LEAVE_ONE_OUT)
    return f"{R_HELPERS}\ndatasets <- list(\n{datasets}\n)\nleave_one_out <- c({loo})\n{R_FITS}"


@pytest.fixture(scope="module")
def metafor():
    return run_r(r_script())


def inputs(case: dict) -> tuple[np.ndarray, np.ndarray]:
    # one study comes back as a scalar (jsonlite unboxes length-1 vectors)
    return np.atleast_1d(np.array(case["yi"], dtype=float)), np.atleast_1d(np.array(case["vi"], dtype=float))


def ours(y: np.ndarray, v: np.ndarray, method: str, knha: bool) -> dict:
    """Our values under metafor's names; higgins_* is our default prediction interval."""
    result = meta_analysis(y, v, method, knha, prediction="metafor")
    higgins = meta_analysis(y, v, method, knha, prediction="higgins")
    return {**result.row(), "higgins_low": higgins.pi_low, "higgins_high": higgins.pi_high}


def assert_matches(mine: float, theirs, quantity: str, unit: float, where: str) -> None:
    rel, floor, floor_unit = TOLERANCES[quantity]
    floor *= {"y": np.sqrt(unit), "v": unit, None: 1.0}[floor_unit]
    assert mine == pytest.approx(theirs, rel=rel, abs=floor), f"{where} {quantity}: ours {mine!r}, metafor {theirs!r}"


@pytest.mark.parametrize("method,knha", FITS, ids=[f"{m}-{'knha' if k else 'z'}" for m, k in FITS])
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_meta_analysis_matches_metafor(metafor, dataset, method, knha):
    case = metafor[dataset]
    y, v = inputs(case)
    reference = case["fits"][f"{method} {'knha' if knha else 'z'}"]
    mine, unit = ours(y, v, method, knha), 1 / np.mean(1 / v)
    for quantity in TOLERANCES:
        if quantity in reference:
            assert_matches(mine[quantity], reference[quantity], quantity, unit, f"{dataset} {method} knha={knha}")
        else:  # metafor gives none: no prediction interval for FE, none of t(k-2) below k = 3, no tau^2 CI for k = 1
            assert np.isnan(mine[quantity]), f"{dataset} {method} knha={knha} {quantity}: metafor has none"


@pytest.mark.parametrize("method,knha", FITS, ids=[f"{m}-{'knha' if k else 'z'}" for m, k in FITS])
@pytest.mark.parametrize("dataset", LEAVE_ONE_OUT)
def test_leave_one_out_matches_metafor(metafor, dataset, method, knha):
    case = metafor[dataset]
    y, v = inputs(case)
    reference = case["fits"][f"{method} {'knha' if knha else 'z'}"]["leave1out"]
    labels = [str(i) for i in range(len(y))]
    for i, (_, result) in enumerate(leave_one_out(y, v, labels, method, knha)):
        unit = 1 / np.mean(1 / np.delete(v, i))
        for quantity, values in reference.items():
            assert_matches(getattr(result, quantity), values[i], quantity, unit, f"{dataset} without study {i + 1}")


def test_the_comparison_covers_the_range_asked_for(metafor):
    sizes = [len(inputs(case)[0]) for case in metafor.values()]
    reml = [case["fits"]["REML z"]["tau2"] for case in metafor.values()]
    assert len(DATASETS) >= 20 and min(sizes) == 1 and max(sizes) >= 100
    assert sum(tau2 == 0 for tau2 in reml) >= 3 and max(reml) > 1000  # homogeneous sets; raw units
