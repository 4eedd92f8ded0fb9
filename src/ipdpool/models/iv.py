"""The effect of working on an outcome, with randomization to IPS as its instrument (2SLS).

Per outcome (SD units: the harmonized z-scores), with E = employed during follow-up and
Z = randomized to IPS:
    y = beta E + gamma baseline + study fixed effects + e,   E instrumented by Z.
beta is the effect of working for those whom IPS got into work (compliers), under the
assumptions stated in the report: randomization (Z independent of potential outcomes),
relevance (Z moves E: the first stage), exclusion (IPS acts on the outcome only through
work; the demo's truth has no direct IPS effect) and monotonicity (no one works because they
were NOT offered IPS).

Everything classical is a function of the cross-products of [y, E, Z, baseline, study
dummies], which are sums over studies, so the federated fit from per-study sums equals the
pooled run exactly (`crossproducts`, `two_sls`). Heteroskedasticity-robust SEs (HC1 here:
AER/sandwich's vcovHC type "HC1", linearmodels' cov_type="robust" with debiased=True) sum
u_i^2 xhat_i xhat_i' with u_i = y_i - W_i beta: a polynomial of degree 4 in each row's
variables, so they too are exact from per-study fourth-order moment sums, which are not
released here: the robust figures need participant data.

Instruments: IPS arm; and, in a second pooled row, IPS within each study (IPS and its
interactions with study) when every study's own first stage is strong (classical first-stage
F >= `interaction_min_f`, default 10: the documented rule, on the classical F because site
bundles give it too; with weak per-study first stages the
extra instruments would bias 2SLS towards OLS). Within a study, ips:study[S] is ips, so the
interacted fit needs no further cross-products.

Diagnostics:
- first-stage F (classical: AER's "Weak instruments" test, the joint F of the instruments) and
  the effective F of Montiel Olea & Pflueger (2013, J Bus Econ Stat 31(3):358-369),
  pi' Q pi / tr(V_pi Q) with Q the instruments' cross-products after partialling out the
  controls and V_pi the HC1 covariance of the first-stage coefficients; with one instrument
  it is the robust first-stage Wald statistic (Andrews, Stock & Sun 2019, Annu Rev Econ
  11:727-753, section 5);
- the Anderson-Rubin (1949) confidence set: the beta0 for which the instruments have no (HC1)
  effect in the regression of y - beta0 E on them and the controls. With one instrument the
  test statistic is (rho - beta0 pi)^2 / (v_rr - 2 beta0 v_rp + beta0^2 v_pp), from the
  reduced-form and first-stage coefficients and their joint HC1 covariance, so the set is where
  a quadratic is <= 0: an interval, the line outside an interval, or everything (weak
  instrument); with several, the same Wald form in vectors, solved numerically;
- Durbin-Wu-Hausman (AER's "Wu-Hausman"): the F test of the first-stage residual added to the
  OLS regression (control function);
- Sargan's test of the over-identifying restrictions (IPS x study rows only).

A study (or pool) where the model cannot be fitted (nobody or everybody working, one arm, a
baseline or the outcome constant within a study, a perfect first stage, too few rows) gets a
row whose `status` names the study, the outcome and the variable, instead of an error
(attacker findings F7, C2, C10); the other rows are computed. Input the IV would misread
(non-finite values, arms other than IPS/SAU, employed not 0/1) is refused (`check_iv_input`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ..probabilities import chi2_quantile, chi2_sf, norm_quantile, t_quantile, t_sf

Y, E, Z = "y", "employed", "ips"
# The pooled fit adds IPS x study instruments when every study's own first stage has at least
# this classical first-stage F (config causal.interaction_min_f): with weaker ones the extra instruments
# pull 2SLS towards OLS (many-weak-instrument bias) and one pooled instrument is kept.
INTERACTION_MIN_F = 10.0
AR_GRID = 4001  # points on arctan(beta) where the Anderson-Rubin test is evaluated (then refined)


def instruments_of(names) -> list[str]:
    return [c for c in names if c == Z or c.startswith(f"{Z}:")]


def controls_of(names) -> list[str]:
    instruments = set(instruments_of(names))
    return [c for c in names if c not in (Y, E) and c not in instruments]


def design(frame: pd.DataFrame, outcome: str, by_study: bool = True, interactions: bool = False) -> pd.DataFrame:
    """Rows complete for the outcome: columns y, employed, the instrument(s), baseline and one
    dummy per study (or an intercept when the frame holds one study). With `interactions`, the
    instruments are IPS within each study (`ips:study[S]`): IPS and its interactions with study."""
    used = frame[["study", "arm", "employed", f"{outcome}_fu_z", f"{outcome}_bl_z"]].dropna()
    ips = (used["arm"] == "IPS").to_numpy(float)
    out = pd.DataFrame({Y: used[f"{outcome}_fu_z"].to_numpy(float), E: used["employed"].to_numpy(float)})
    studies = sorted(used["study"].unique())
    several = by_study and len(studies) > 1
    if several and interactions:
        for study in studies:
            out[f"{Z}:study[{study}]"] = ips * (used["study"] == study).to_numpy(float)
    else:
        out[Z] = ips
    out["baseline"] = used[f"{outcome}_bl_z"].to_numpy(float)
    if several:
        for study in studies:
            out[f"study[{study}]"] = (used["study"] == study).to_numpy(float)
    else:
        out["intercept"] = 1.0
    return out


# eigenvalues of the cross-products scaled to unit diagonal below this fraction of the largest
# count as zero: a singular-value ratio of 1e-6, far beyond what rounding gives on centred columns
RANK_TOLERANCE = 1e-12


def full_rank(cp: np.ndarray, names: list[str], columns: list[str]) -> bool:
    index = indices(names, columns)
    gram = cp[np.ix_(index, index)]
    scale = np.sqrt(np.diag(gram))
    if (scale == 0).any():
        return False
    eigenvalues = np.linalg.eigvalsh(gram / np.outer(scale, scale))
    return eigenvalues[0] > RANK_TOLERANCE * eigenvalues[-1]


def estimability_problem(cp: np.ndarray, n: int, names: list[str]) -> str | None:
    """Why 2SLS cannot be fitted (None when it can), from the cross-products of the design (so
    the same check serves participant data and site bundles): the variable that is constant
    within the study (or within every study) or collinear, named."""
    instruments, controls = instruments_of(names), controls_of(names)
    dummies = [c for c in controls if c != "baseline"]
    if n <= len(controls) + 2:  # the control-function regression (Wu-Hausman) has one more
        return f"{n} complete rows: too few for the {len(controls) + 2} coefficients of 2SLS's diagnostics"
    if not full_rank(cp, names, [Y] + dummies):
        return "the outcome is constant within the study (no variation to explain)"
    if not full_rank(cp, names, [E] + dummies):
        return "employed is constant (nobody or everybody worked during follow-up): no first stage"
    if not full_rank(cp, names, instruments + dummies):
        return "the instrument is constant (one arm only)"
    if not full_rank(cp, names, dummies + ["baseline"]):
        return "baseline is constant within a study (collinear with its intercept)"
    if not full_rank(cp, names, instruments + controls):
        return "the instrument is collinear with the controls"
    if not full_rank(cp, names, [E] + controls):
        return "employed is collinear with the controls"
    if not full_rank(cp, names, [E] + instruments + controls):
        return "the first stage is perfect (employed is determined by the arm): 2SLS equals OLS, no IV diagnostics"
    return None


def centred(matrix: pd.DataFrame) -> pd.DataFrame:
    """y, employed, the instruments and baseline centred at their means. A constant shift of a
    column lies in the span of the intercept (or the study dummies), so the 2SLS coefficients of
    employed and baseline, the residuals and every test are unchanged (only the intercepts
    move), and no digits cancel in the cross-products when a column carries a large offset."""
    shifted = [c for c in matrix.columns if c == "baseline" or c in (Y, E) or c.startswith(Z)]
    return matrix.assign(**{c: matrix[c] - matrix[c].mean() for c in shifted})


def crossproducts(matrix: pd.DataFrame) -> tuple[np.ndarray, int, list[str]]:
    values = matrix.to_numpy(float)
    return values.T @ values, len(values), list(matrix.columns)


@dataclass
class ClassicalFit:
    beta: np.ndarray  # over W = [employed, controls]
    vcov: np.ndarray
    rss: float
    n: int
    k: int
    names: list[str]


def indices(names: list[str], wanted: list[str]) -> list[int]:
    return [names.index(c) for c in wanted]


def two_sls(cp: np.ndarray, n: int, names: list[str]) -> ClassicalFit:
    """2SLS with classical covariance (sigma^2 = RSS / (n - k), as AER's ivreg) from the
    cross-products of the columns [y, employed, instruments..., controls...]."""
    controls = controls_of(names)
    iy = names.index(Y)
    iw, iz = indices(names, [E] + controls), indices(names, instruments_of(names) + controls)
    zz, zw, zy = cp[np.ix_(iz, iz)], cp[np.ix_(iz, iw)], cp[iz, iy]
    projected = zw.T @ np.linalg.solve(zz, zw)
    beta = np.linalg.solve(projected, zw.T @ np.linalg.solve(zz, zy))
    ww, wy = cp[np.ix_(iw, iw)], cp[iw, iy]
    rss = float(cp[iy, iy] - 2 * beta @ wy + beta @ ww @ beta)
    k = len(iw)
    return ClassicalFit(beta, rss / (n - k) * np.linalg.inv(projected), rss, n, k, [names[i] for i in iw])


def ols_crossproducts(cp: np.ndarray, names: list[str], response: str, regressors: list[str]):
    """OLS of `response` on `regressors` from cross-products: coefficients, (X'X)^-1 and RSS."""
    ix, iy = indices(names, regressors), names.index(response)
    xtx_inv = np.linalg.inv(cp[np.ix_(ix, ix)])
    coef = xtx_inv @ cp[ix, iy]
    return coef, xtx_inv, float(cp[iy, iy] - coef @ cp[ix, iy])


def classical_diagnostics(cp: np.ndarray, n: int, names: list[str]) -> dict:
    """What needs only the cross-products (so is exact across sites): the first stage's
    coefficients and classical F for the instruments, the observational OLS and the
    Durbin-Wu-Hausman F (the first-stage residual v = E - X pi added to the OLS; its
    cross-products are linear in the others')."""
    instruments, controls = instruments_of(names), controls_of(names)
    first_x = instruments + controls
    pi, pi_inv, pi_rss = ols_crossproducts(cp, names, E, first_x)
    m = len(instruments)
    pi_vcov = pi_rss / (n - len(first_x)) * pi_inv[:m, :m]
    first_f = float(pi[:m] @ np.linalg.solve(pi_vcov, pi[:m]) / m)
    obs, obs_inv, obs_rss = ols_crossproducts(cp, names, Y, [E] + controls)
    obs_df = n - len(controls) - 1
    # v = E - first_x @ pi: append v as a linear combination of the columns
    combination = np.zeros(len(names))
    combination[names.index(E)] = 1.0
    combination[indices(names, first_x)] -= pi
    basis = np.eye(len(names))
    transform = np.column_stack([basis, combination])
    augmented = transform.T @ cp @ transform
    cf, cf_inv, cf_rss = ols_crossproducts(augmented, names + ["v"], Y, [E] + controls + ["v"])
    cf_df = n - len(controls) - 2
    wu = float(cf[-1] ** 2 / (cf_rss / cf_df * cf_inv[-1, -1]))
    return {
        "pi": pi[:m],
        "first_stage_f": first_f,
        "ols_estimate": float(obs[0]),
        "ols_se": float(np.sqrt(obs_rss / obs_df * obs_inv[0, 0])),
        "ols_df": obs_df,
        "wu_hausman_f": wu,
        "wu_hausman_p": float(2 * t_sf(np.sqrt(wu), cf_df)),
    }


def hc1_2sls(matrix: pd.DataFrame, fit: ClassicalFit) -> np.ndarray:
    w = matrix[fit.names].to_numpy(float)
    z = matrix[instruments_of(matrix.columns) + fit.names[1:]].to_numpy(float)
    xhat = z @ np.linalg.lstsq(z, w, rcond=None)[0]
    resid = matrix[Y].to_numpy(float) - w @ fit.beta
    bread = np.linalg.inv(xhat.T @ xhat)
    meat = (xhat * resid[:, None] ** 2).T @ xhat
    return fit.n / (fit.n - fit.k) * bread @ meat @ bread


@dataclass
class ReducedForm:
    """The reduced form (y on instruments and controls) and the first stage (E on the same),
    with their joint HC1 covariance blocks for the m instruments' coefficients."""

    rho: np.ndarray
    pi: np.ndarray
    v_rr: np.ndarray
    v_pp: np.ndarray
    v_rp: np.ndarray
    partialled: np.ndarray  # the instruments with the controls partialled out (Z~'Z~)


def reduced_form(matrix: pd.DataFrame) -> ReducedForm:
    instruments = instruments_of(matrix.columns)
    x = matrix[instruments + controls_of(matrix.columns)].to_numpy(float)
    n, k = x.shape
    m = len(instruments)
    xtx_inv = np.linalg.inv(x.T @ x)
    rows = (xtx_inv @ x.T)[:m]  # the instruments' coefficients are rows @ response
    y, e = matrix[Y].to_numpy(float), matrix[E].to_numpy(float)
    rho, pi = rows @ y, rows @ e
    e_r = y - x @ (xtx_inv @ (x.T @ y))
    e_p = e - x @ (xtx_inv @ (x.T @ e))
    scale = n / (n - k)
    v_rr, v_pp, v_rp = (scale * (rows * (a * b)) @ rows.T for a, b in ((e_r, e_r), (e_p, e_p), (e_r, e_p)))
    return ReducedForm(rho, pi, v_rr, v_pp, v_rp, np.linalg.inv(xtx_inv[:m, :m]))


def effective_f(form: ReducedForm) -> float:
    """Montiel Olea & Pflueger's effective F, pi' Q pi / tr(V_pi Q) with Q = Z~'Z~ (the
    instruments after partialling out the controls) and V_pi the HC1 covariance of pi; with one
    instrument the robust first-stage Wald statistic, with homoskedastic V_pi the classical F."""
    q = form.partialled
    return float(form.pi @ q @ form.pi / np.trace(form.v_pp @ q))


def ar_statistic(form: ReducedForm, beta0: float) -> float:
    """The HC1 Wald statistic of the instruments in the regression of y - beta0 E on them and
    the controls: its coefficients are rho - beta0 pi, its residuals e_r - beta0 e_p."""
    gap = form.rho - beta0 * form.pi
    covariance = form.v_rr - beta0 * (form.v_rp + form.v_rp.T) + beta0**2 * form.v_pp
    return float(gap @ np.linalg.solve(covariance, gap))


def anderson_rubin_one(form: ReducedForm, level: float) -> list[tuple[float, float]]:
    """One instrument: (rho - b pi)^2 - c (v_rr - 2 b v_rp + b^2 v_pp) <= 0 is a quadratic."""
    rho, pi = form.rho[0], form.pi[0]
    v_rr, v_pp, v_rp = form.v_rr[0, 0], form.v_pp[0, 0], form.v_rp[0, 0]
    c = chi2_quantile(level, 1)
    qa, qb, qc = pi**2 - c * v_pp, -2 * (rho * pi - c * v_rp), rho**2 - c * v_rr
    disc = qb**2 - 4 * qa * qc
    if disc >= 0 and qa != 0:
        low, high = sorted(((-qb - np.sqrt(disc)) / (2 * qa), (-qb + np.sqrt(disc)) / (2 * qa)))
        if qa > 0:
            return [(low, high)]
        if disc > 0:
            return [(-np.inf, low), (high, np.inf)]
    return [(-np.inf, np.inf)] if qa < 0 or (qa == 0 and qc <= 0) else []


def anderson_rubin_many(form: ReducedForm, level: float) -> list[tuple[float, float]]:
    """Several instruments: the set {b: AR(b) <= chi2_m quantile} is no longer a quadratic's; it
    is found by evaluating AR on a grid in arctan(b) and out to |b| = 1e12 (the line, for the
    purpose), then each change of sign refined by brentq. A piece narrower than the grid's step
    can be missed."""
    from scipy.optimize import brentq

    critical = chi2_quantile(level, len(form.rho))

    def excess(beta: float) -> float:
        return ar_statistic(form, beta) - critical

    far = np.logspace(3, 12, 46)
    points = np.concatenate([-far[::-1], np.tan(np.linspace(-np.pi / 2, np.pi / 2, AR_GRID)[1:-1]), far])
    values = np.array([excess(b) for b in points])
    start = -np.inf if values[0] <= 0 else None
    pieces = []
    for j in np.flatnonzero(np.sign(values[:-1]) != np.sign(values[1:])):
        root = brentq(excess, points[j], points[j + 1], xtol=1e-14, rtol=1e-13)
        if values[j + 1] <= 0:
            start = root
        else:
            pieces.append((start, root))
            start = None
    if start is not None:
        pieces.append((start, np.inf))
    return pieces


def ar_summary(pieces: list[tuple[float, float]]) -> tuple[float, float, str, str]:
    """(low, high, kind, text): an interval, the line outside an interval (low, high are the
    gap's edges), everything, nothing (the instruments disagree), or a union (text only)."""
    text = " U ".join(f"[{a:.6g}, {b:.6g}]" for a, b in pieces) or "empty"
    if not pieces:
        return np.nan, np.nan, "empty", text
    if len(pieces) == 1 and np.isinf(pieces[0]).all():
        return -np.inf, np.inf, "unbounded", text
    if len(pieces) == 1 and np.isfinite(pieces[0]).all():
        return pieces[0][0], pieces[0][1], "interval", text
    if len(pieces) == 2 and pieces[0][0] == -np.inf and pieces[1][1] == np.inf:
        return pieces[0][1], pieces[1][0], "outside", text
    return np.nan, np.nan, "union", text


def sargan(matrix: pd.DataFrame, fit: ClassicalFit) -> tuple[float, float]:
    """Sargan's test of the overidentifying restrictions (AER's "Sargan"): n R^2 of the 2SLS
    residuals on instruments and controls, chi2 with (instruments - 1) df; NaN if just identified."""
    instruments = instruments_of(matrix.columns)
    if len(instruments) < 2:
        return np.nan, np.nan
    resid = matrix[Y].to_numpy(float) - matrix[fit.names].to_numpy(float) @ fit.beta
    x = matrix[instruments + fit.names[1:]].to_numpy(float)
    fitted = x @ np.linalg.lstsq(x, resid, rcond=None)[0]
    statistic = len(resid) * (1 - np.sum((resid - fitted) ** 2) / np.sum((resid - resid.mean()) ** 2))
    return float(statistic), float(chi2_sf(statistic, len(instruments) - 1))


@dataclass
class IvResult:
    outcome: str
    scope: str  # "pooled" or the study
    instruments: str  # "ips", or "ips x study" (IPS within each study)
    n: int
    status: str  # "estimated", or "not estimable: <why>"
    estimate: float = np.nan
    se: float = np.nan
    ci_low: float = np.nan
    ci_high: float = np.nan
    se_robust: float = np.nan
    ci_low_robust: float = np.nan
    ci_high_robust: float = np.nan
    first_stage: float = np.nan  # IPS -> employment, risk difference adjusted for the controls
    first_stage_f: float = np.nan
    effective_f: float = np.nan
    ar_low: float = np.nan
    ar_high: float = np.nan
    ar_kind: str = ""
    ar_set: str = ""
    wu_hausman_f: float = np.nan
    wu_hausman_p: float = np.nan
    sargan: float = np.nan
    sargan_p: float = np.nan
    kitagawa_stat: float = np.nan  # the never-taker/always-taker implication (models.instrument_check)
    kitagawa_p: float = np.nan
    ols_estimate: float = np.nan
    ols_ci_low: float = np.nan
    ols_ci_high: float = np.nan
    notes: list[str] = field(default_factory=list)

    def as_row(self) -> dict:
        row = asdict(self)
        row["notes"] = "; ".join(self.notes)
        return row


def instruments_label(names) -> str:
    return Z if instruments_of(names) == [Z] else f"{Z} x study"


def classical_result(cp: np.ndarray, n: int, names: list[str], outcome: str, scope: str, level: float) -> IvResult:
    """Everything that the cross-products give (estimate, classical SE and t interval, first-stage
    F, OLS, Wu-Hausman): the federated fit and the start of the participant-data fit. A design
    that cannot be fitted gives a row that says why (`estimability_problem`) instead of an error."""
    problem = estimability_problem(cp, n, names)
    if problem:
        where = "pooled" if scope == "pooled" else f"study {scope}"
        return IvResult(
            outcome, scope, instruments_label(names), n, f"not estimable: {where}, outcome {outcome}: {problem}"
        )
    fit = two_sls(cp, n, names)
    diagnostics = classical_diagnostics(cp, n, names)
    t_crit = t_quantile(0.5 + level / 2, n - fit.k)
    ols_crit = t_quantile(0.5 + level / 2, diagnostics["ols_df"])
    estimate, se = float(fit.beta[0]), float(np.sqrt(fit.vcov[0, 0]))
    notes = []
    first_f = diagnostics["first_stage_f"]
    if first_f < 10:
        notes.append(f"weak first stage (F = {first_f:.1f} < 10): read the Anderson-Rubin interval")
    return IvResult(
        outcome=outcome,
        scope=scope,
        instruments=instruments_label(names),
        n=n,
        status="estimated",
        estimate=estimate,
        se=se,
        ci_low=estimate - t_crit * se,
        ci_high=estimate + t_crit * se,
        first_stage=float(diagnostics["pi"][0]) if len(diagnostics["pi"]) == 1 else np.nan,
        first_stage_f=first_f,
        wu_hausman_f=diagnostics["wu_hausman_f"],
        wu_hausman_p=diagnostics["wu_hausman_p"],
        ols_estimate=diagnostics["ols_estimate"],
        ols_ci_low=diagnostics["ols_estimate"] - ols_crit * diagnostics["ols_se"],
        ols_ci_high=diagnostics["ols_estimate"] + ols_crit * diagnostics["ols_se"],
        notes=notes,
    )


def iv_analysis(
    matrix: pd.DataFrame, outcome: str, scope: str, level: float = 0.95, implication: bool = False
) -> IvResult:
    """2SLS of one design (see `design`) with every diagnostic; with `implication`, also the
    bootstrap test of the never-taker implication (off in simulations: it is the slow part)."""
    raw = matrix
    matrix = centred(matrix)
    cp, n, names = crossproducts(matrix)
    result = classical_result(cp, n, names, outcome, scope, level)
    if result.status != "estimated":
        return result
    if implication:
        result.kitagawa_stat, result.kitagawa_p = never_taker_check(raw)
    fit = two_sls(cp, n, names)
    result.se_robust = float(np.sqrt(hc1_2sls(matrix, fit)[0, 0]))
    z_crit = norm_quantile(0.5 + level / 2)
    result.ci_low_robust = result.estimate - z_crit * result.se_robust
    result.ci_high_robust = result.estimate + z_crit * result.se_robust
    form = reduced_form(matrix)
    result.effective_f = effective_f(form)
    pieces = anderson_rubin_one(form, level) if len(form.rho) == 1 else anderson_rubin_many(form, level)
    result.ar_low, result.ar_high, result.ar_kind, result.ar_set = ar_summary(pieces)
    result.sargan, result.sargan_p = sargan(matrix, fit)
    return result


def never_taker_check(matrix: pd.DataFrame) -> tuple[float, float]:
    """Kitagawa's test of the IV assumptions' testable implication on the design's rows, within
    study strata (models.instrument_check)."""
    from .instrument_check import kitagawa_test

    dummies = [c for c in controls_of(matrix.columns) if c != "baseline"]
    strata = matrix[dummies].to_numpy().argmax(axis=1)
    ips = matrix[instruments_of(matrix.columns)].to_numpy().sum(axis=1)
    return kitagawa_test(matrix[Y].to_numpy(float), matrix[E].to_numpy(float), ips, strata)


def guarded_analysis(
    matrix: pd.DataFrame, outcome: str, scope: str, level: float = 0.95, implication: bool = False
) -> IvResult:
    """`iv_analysis`, with a numerical failure that `estimability_problem` did not foresee turned
    into a row that names the study: one study's failure must not abort the pooled fit."""
    try:
        return iv_analysis(matrix, outcome, scope, level, implication)
    except (np.linalg.LinAlgError, ValueError, ZeroDivisionError) as error:
        where = "pooled" if scope == "pooled" else f"study {scope}"
        reason = f"the design is numerically singular ({type(error).__name__})"
        status = f"not estimable: {where}, outcome {outcome}: {reason}"
        return IvResult(outcome, scope, instruments_label(matrix.columns), len(matrix), status)


def check_iv_input(frame: pd.DataFrame, outcome: str, arms: tuple[str, str] = ("IPS", "SAU")) -> None:
    """Refuse what the IV would silently misread, naming study, variable and row (from 1) but
    never the value: a non-finite number, an arm other than IPS or SAU, employed not 0 or 1."""
    columns = {"employed": "employed", f"{outcome}_fu_z": "outcome follow-up", f"{outcome}_bl_z": "baseline"}
    bad_arm = frame["arm"].notna() & ~frame["arm"].isin(arms)
    problems = [("arm", bad_arm, f"an arm other than {' or '.join(arms)}")]
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        given = frame[column].notna()
        problems.append((column, given & ~np.isfinite(values.to_numpy(float)), "a value that is not a finite number"))
        if column == "employed":
            problems.append((column, given & ~values.isin([0, 1]), "a value other than 0 or 1"))
    for column, bad, what in problems:
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"IV input: study {frame['study'].iloc[row]}, variable {column}: {what} in row {row + 1} "
                f"({int(bad.sum())} rows)"
            )


def interactions_allowed(per_study: list[IvResult], min_f: float) -> bool:
    """The documented rule for IPS x study instruments: at least two studies, each estimated with
    its own first stage's classical F >= min_f."""
    return len(per_study) >= 2 and all(r.status == "estimated" and r.first_stage_f >= min_f for r in per_study)


def iv_by_study_and_pooled(
    pooled: pd.DataFrame,
    outcome: str,
    level: float = 0.95,
    interaction_min_f: float = INTERACTION_MIN_F,
    implication: bool = True,
) -> list[IvResult]:
    """One result per study with the outcome, then the pooled fit with study fixed effects and
    IPS as the instrument, then (when `interactions_allowed`) the pooled fit with IPS x study;
    `implication`: with the never-taker check (`iv_analysis`)."""
    results = []
    studies = sorted(pooled.loc[pooled[f"{outcome}_fu_z"].notna(), "study"].unique())
    check_iv_input(pooled, outcome)
    for study in studies:
        part = design(pooled[pooled["study"] == study], outcome)
        results.append(guarded_analysis(part, outcome, study, level, implication))
    results.append(guarded_analysis(design(pooled, outcome), outcome, "pooled", level, implication))
    if interactions_allowed(results[:-1], interaction_min_f):
        interacted = guarded_analysis(design(pooled, outcome, interactions=True), outcome, "pooled", level)
        # the same rows as the one-instrument pooled fit: the same test
        interacted.kitagawa_stat, interacted.kitagawa_p = results[-1].kitagawa_stat, results[-1].kitagawa_p
        results.append(interacted)
    return results


def pooled_crossproducts(study_crossproducts: dict[str, tuple[np.ndarray, int]], interactions: bool = False):
    """The pooled cross-product matrix of [y, employed, instrument(s), baseline, study dummies]
    from each study's cross-products of [y, employed, ips, baseline, 1], exactly (sums); with
    `interactions`, each study's ips becomes its own instrument ips:study[S]."""
    studies = sorted(study_crossproducts)
    instruments = [f"{Z}:study[{s}]" for s in studies] if interactions else [Z]
    names = [Y, E] + instruments + ["baseline"] + [f"study[{s}]" for s in studies]
    total, n = np.zeros((len(names), len(names))), 0
    for j, study in enumerate(studies):
        cp, count = study_crossproducts[study]
        instrument = 2 + (j if interactions else 0)
        index = [0, 1, instrument, 2 + len(instruments), 3 + len(instruments) + j]
        total[np.ix_(index, index)] += cp
        n += count
    return total, n, names


def federated_two_sls(study_crossproducts: dict[str, tuple[np.ndarray, int]], interactions: bool = False):
    """The pooled 2SLS with study fixed effects from each study's cross-products alone."""
    return two_sls(*pooled_crossproducts(study_crossproducts, interactions))
