"""Logistic mixed models (binomial, logit link) with one grouping factor, fitted as lme4's glmer.

Model: logit P(y_i = 1) = x_i'beta + z_i'Lambda u_g(i), u_g ~ N(0, I_q) for each group g, with
Lambda lower triangular with parameter theta (lmm.relative_factor: the lower triangle column by
column, diagonal >= 0), so b_g = Lambda u_g ~ N(0, Lambda Lambda'). The response is a share y_i
of t_i trials (t_i = 1 for a 0/1 response; cbind(successes, failures) gives t_i = their sum).

The criterion is lme4's (Bates, Maechler, Bolker & Walker 2015, J Stat Softw 67(1); lme4's
src/external.cpp and src/respModule.cpp), so the optimum, the log-likelihood and the Hessian are
the same numbers:
- PIRLS: at fixed (theta, beta), the conditional modes u maximize log p(y | u) - |u|^2 / 2. With
  one grouping factor the groups decouple, so Newton's method runs batched over groups (q x q
  systems; logit is canonical, so Newton is Fisher scoring), halving a group's step when its
  penalized deviance does not fall.
- Laplace (nAGQ = 1; glmResp::Laplace): log|L|^2 + |u|^2 - 2 log p(y | u), L_g L_g' =
  Lambda'Z_g'W Z_g Lambda + I with the IRLS weights W at the modes.
- Adaptive Gauss-Hermite (nAGQ > 1, scalar random effect only; glmerAGQ):
  sum_g devc_g + log|L|^2 - 2 sum_g log sum_k w_k exp(-(devc_g(u_g + z_k s_g) - devc_g) / 2 + z_k^2 / 2),
  devc_g = the group's deviance residuals plus u_g^2, s_g = 1 / L_g, (z_k, w_k) the Gauss-Hermite
  rule for the standard normal (lme4's GHrule). lme4 uses deviance residuals here and -2 log p
  under Laplace, so with binomial counts the two criteria differ by a constant; as in lme4, the
  log-likelihood reported is minus half the criterion.
- The criterion is minimized over (theta, beta) jointly (lme4's second stage). lme4 starts from a
  first stage with beta inside PIRLS (nAGQ = 0); here the start is the GLM without random effects
  and theta = 1 on the diagonal (lme4's default theta), and a gradient optimizer with central
  differences is polished by Newton steps: the reference tests check the optimum against lme4's.
- Covariance of beta (lme4's vcov, use.hessian): 2 [H^-1]_beta,beta with H the Hessian of the
  criterion in (theta, beta) from lme4's deriv12 stencil (central differences, step 1e-4),
  taken in the standardized parametrization the optimizer uses (standardizing_map) and mapped back. At a
  singular fit lme4 computes no Hessian and uses R_X: [sum_g X_g'W X_g - X_g'W A_g L_g^-T L_g^-1 A_g'W X_g]^-1.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import optimize, sparse, special

from . import NotEstimable

SINGULAR_TOLERANCE = 1e-4  # lme4's isSingular default, on theta
PIRLS_TOLERANCE = 1e-11
PIRLS_MAX_ITERATIONS = 200
HESSIAN_STEP = 1e-4  # lme4's deriv12 default
MAX_AGQ = 100  # lme4's GHrule accepts orders below 101


# Lambda for q <= 2 correlated terms, as lme4 (the lower triangle column by column). Kept here
# rather than shared with lmm.py, whose parametrization (patterns of free elements) serves
# the linear engine's wider random parts.
def theta_size(q: int) -> int:
    return q * (q + 1) // 2


def diagonal_positions(q: int) -> list[int]:
    """Positions of Lambda's diagonal in theta."""
    positions, index = [], 0
    for column in range(q):
        positions.append(index)
        index += q - column
    return positions


def relative_factor(theta: np.ndarray, q: int) -> np.ndarray:
    lam = np.zeros((q, q))
    index = 0
    for column in range(q):
        for row in range(column, q):
            lam[row, column] = theta[index]
            index += 1
    return lam


@dataclass(frozen=True)
class BinomialData:
    """A logistic mixed model's data: the share of successes y of `trials` per row."""

    x: np.ndarray  # (n, p) fixed-effects design
    z: np.ndarray  # (n, q) random-effects design
    group: np.ndarray  # (n,) group codes 0..k-1
    k: int
    y: np.ndarray  # (n,) share of successes
    trials: np.ndarray  # (n,) prior weights (number of trials)
    names: list[str]
    random_names: list[str]

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.x.shape[1]

    @property
    def q(self) -> int:
        return self.z.shape[1]

    @property
    def indicator(self) -> sparse.csr_matrix:
        """(k, n) group membership: sums over each group's rows by one sparse product."""
        return sparse.csr_matrix((np.ones(self.n), (self.group, np.arange(self.n))), shape=(self.k, self.n))


def gauss_hermite_rule(order: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for the standard normal density (weights sum to 1), as lme4's GHrule
    (symmetrized the same way: nodes odd and weights even in position)."""
    if not 1 <= order <= MAX_AGQ:
        raise ValueError(f"nAGQ must be between 1 and {MAX_AGQ}, not {order}")
    nodes, weights = np.polynomial.hermite_e.hermegauss(order)
    weights = weights / weights.sum()
    return (nodes - nodes[::-1]) / 2, (weights + weights[::-1]) / 2


def log_binomial(data: BinomialData, eta: np.ndarray) -> np.ndarray:
    """Each row's log-likelihood (R's binomial()$aic term: dbinom of the counts)."""
    successes, trials = np.round(data.y * data.trials), np.round(data.trials)
    log_choose = special.gammaln(trials + 1) - special.gammaln(successes + 1) - special.gammaln(trials - successes + 1)
    return log_choose + successes * special.log_expit(eta) + (trials - successes) * special.log_expit(-eta)


def deviance_residuals(data: BinomialData, eta: np.ndarray) -> np.ndarray:
    """Squared deviance residuals, 2 t [y log(y / mu) + (1 - y) log((1 - y) / (1 - mu))]."""
    y = data.y
    saturated = special.xlogy(y, y) + special.xlogy(1 - y, 1 - y)
    return 2 * data.trials * (saturated - y * special.log_expit(eta) - (1 - y) * special.log_expit(-eta))


@dataclass(frozen=True)
class Modes:
    """The conditional modes at one (theta, beta) and what the criteria need there."""

    u: np.ndarray  # (k, q)
    eta: np.ndarray  # (n,)
    info: np.ndarray  # (k, q, q): L_g L_g' = Lambda'Z_g'W Z_g Lambda + I at the modes
    a: np.ndarray  # (n, q): rows of Z Lambda
    converged: bool

    @property
    def log_det_l2(self) -> float:
        return float(np.linalg.slogdet(self.info)[1].sum())


def _group_deviance(data, indicator, xb, a, u) -> np.ndarray:
    eta = xb + np.einsum("nq,nq->n", a, u[data.group])
    return indicator @ deviance_residuals(data, eta) + (u**2).sum(axis=1)


def _newton_pieces(data, indicator, xb, a, u):
    eta = xb + np.einsum("nq,nq->n", a, u[data.group])
    mu = special.expit(eta)
    w = data.trials * mu * (1 - mu)
    score = indicator @ (a * (data.trials * (data.y - mu))[:, None]) - u
    outer = (a[:, :, None] * a[:, None, :] * w[:, None, None]).reshape(data.n, -1)
    info = np.asarray(indicator @ outer).reshape(data.k, data.q, data.q) + np.eye(data.q)
    return eta, score, info


def conditional_modes(data: BinomialData, theta: np.ndarray, beta: np.ndarray, indicator=None) -> Modes:
    """PIRLS for u at fixed (theta, beta), from u = 0 (so the result is a function of its inputs)."""
    indicator = data.indicator if indicator is None else indicator
    a = data.z @ relative_factor(np.asarray(theta, float), data.q)
    xb = data.x @ beta
    u = np.zeros((data.k, data.q))
    current = _group_deviance(data, indicator, xb, a, u)
    converged = False
    for _ in range(PIRLS_MAX_ITERATIONS):
        _, score, info = _newton_pieces(data, indicator, xb, a, u)
        step = np.linalg.solve(info, score[:, :, None])[:, :, 0]
        if np.abs(step).max() < PIRLS_TOLERANCE * (1 + np.abs(u).max()):
            converged = True
            break
        factor = np.ones(data.k)
        for _ in range(40):  # halve the step of each group whose penalized deviance rose
            trial = u + factor[:, None] * step
            value = _group_deviance(data, indicator, xb, a, trial)
            worse = value > current + 1e-12 * (1 + np.abs(current))
            if not worse.any():
                break
            factor[worse] /= 2
        u, current = trial, value
    eta, _, info = _newton_pieces(data, indicator, xb, a, u)
    return Modes(u, eta, info, a, converged)


def laplace_criterion(data: BinomialData, modes: Modes) -> float:
    return modes.log_det_l2 + float((modes.u**2).sum()) - 2 * float(log_binomial(data, modes.eta).sum())


def agq_criterion(data: BinomialData, modes: Modes, order: int, indicator=None) -> float:
    indicator = data.indicator if indicator is None else indicator
    nodes, weights = gauss_hermite_rule(order)
    u0, a = modes.u[:, 0], modes.a[:, 0]
    xb = modes.eta - a * u0[data.group]
    sd = 1 / np.sqrt(modes.info[:, 0, 0])
    devc0 = _group_deviance(data, indicator, xb, modes.a, modes.u)
    terms = []
    for node, weight in zip(nodes, weights):
        u = (u0 + node * sd)[:, None]
        change = _group_deviance(data, indicator, xb, modes.a, u) - devc0
        terms.append(np.log(weight) - change / 2 + node**2 / 2)
    log_mult = special.logsumexp(np.array(terms), axis=0)
    return float(devc0.sum() + modes.log_det_l2 - 2 * log_mult.sum())


def criterion(data: BinomialData, params: np.ndarray, n_agq: int, indicator=None) -> float:
    """lme4's glmer deviance at params = (theta, beta)."""
    nt = theta_size(data.q)
    try:
        modes = conditional_modes(data, params[:nt], params[nt:], indicator)
    except np.linalg.LinAlgError:
        return np.inf
    if n_agq == 1:
        return laplace_criterion(data, modes)
    return agq_criterion(data, modes, n_agq, indicator)


def deriv12_hessian(func, x: np.ndarray, fx: float, delta: float = HESSIAN_STEP) -> np.ndarray:
    """lme4's deriv12 Hessian: central differences with absolute step delta, no bounds."""
    n = len(x)
    hessian = np.zeros((n, n))
    unit = np.eye(n) * delta
    for j in range(n):
        hessian[j, j] = (func(x + unit[j]) - 2 * fx + func(x - unit[j])) / delta**2
        for i in range(j):
            hessian[i, j] = hessian[j, i] = (
                func(x + unit[i] + unit[j])
                - func(x + unit[i] - unit[j])
                - func(x - unit[i] + unit[j])
                + func(x - unit[i] - unit[j])
            ) / (2 * delta) ** 2
    return hessian


def _central_gradient(func, x: np.ndarray, step: float = 1e-5) -> np.ndarray:
    gradient = np.zeros_like(x)
    for i in range(len(x)):
        h = step * max(1.0, abs(x[i]))
        e = np.zeros_like(x)
        e[i] = h
        gradient[i] = (func(x + e) - func(x - e)) / (2 * h)
    return gradient


def glm_start(data: BinomialData) -> np.ndarray:
    """Beta of the logistic GLM without random effects (IRLS), the optimizer's starting point.

    Stops when the deviance settles, as R's glm does: under (quasi-)complete separation beta
    grows without end and the weighted cross-product turns singular (least squares then)."""
    beta = np.zeros(data.p)
    deviance = np.inf
    for _ in range(100):
        eta = data.x @ beta
        mu = special.expit(eta)
        w = data.trials * mu * (1 - mu)
        step = np.linalg.lstsq(data.x.T @ (data.x * w[:, None]), data.x.T @ (data.trials * (data.y - mu)), rcond=None)[
            0
        ]
        beta = beta + step
        previous, deviance = deviance, -2 * log_binomial(data, data.x @ beta).sum()
        if abs(previous - deviance) < 1e-10 * (abs(deviance) + 0.1):
            break
    return beta


def _newton_polish(func, params: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Newton steps on the parameters away from their bounds (the optimum's last digits)."""
    best, best_value = params, func(params)
    for _ in range(8):
        free = ~((best <= lower + 1e-10) & np.isfinite(lower))
        gradient = _central_gradient(func, best)
        hessian = deriv12_hessian(func, best, best_value, delta=1e-4)
        try:
            step = -np.linalg.solve(hessian[np.ix_(free, free)], gradient[free])
        except np.linalg.LinAlgError:
            break
        candidate = best.copy()
        candidate[free] += step
        candidate = np.maximum(candidate, lower)
        value = func(candidate)
        if not value < best_value:
            break
        best, best_value = candidate, value
        if np.abs(step).max() < 1e-10:
            break
    return best


INTERIOR_STARTS = (0.05, 0.2, 0.5)


def _minimize_from(func, start: np.ndarray, lower: np.ndarray):
    bounds = [(0.0 if np.isfinite(low) else None, None) for low in lower]
    return optimize.minimize(
        func,
        start,
        jac=lambda params: _central_gradient(func, params),
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 2000},
    )


def optimize_criterion(data: BinomialData, n_agq: int) -> np.ndarray:
    """Minimize the criterion over (theta, beta) from lme4's start (theta 1, the GLM's beta).

    The criterion is even in each diagonal theta, so theta = 0 is always a stationary point:
    a line search that overshoots onto the bound stops there although the optimum may be
    interior. When the first run ends on the boundary, it is restarted from interior thetas
    and the lowest criterion is kept (the boundary point stays if nothing beats it)."""
    nt = theta_size(data.q)
    indicator = data.indicator
    diagonal = diagonal_positions(data.q)
    theta0 = np.zeros(nt)
    theta0[diagonal] = 1.0
    start = np.concatenate([theta0, glm_start(data)])
    lower = np.full(len(start), -np.inf)
    lower[diagonal] = 0.0

    def func(params):
        return criterion(data, params, n_agq, indicator)

    found = _minimize_from(func, start, lower)
    best, best_value = found.x, func(found.x)
    on_boundary = best[diagonal] < SINGULAR_TOLERANCE
    for value in INTERIOR_STARTS if on_boundary.any() else ():
        restart = best.copy()
        restart[np.asarray(diagonal)[on_boundary]] = value
        candidate = _minimize_from(func, restart, lower).x
        candidate_value = func(candidate)
        if candidate_value < best_value:
            best, best_value = candidate, candidate_value
    return _newton_polish(func, best, lower)


@dataclass
class GlmmFit:
    data: BinomialData
    n_agq: int
    theta: np.ndarray
    beta: np.ndarray
    objective: float  # lme4's criterion (-2 log-likelihood as lme4 reports it)
    vcov: np.ndarray
    vcov_source: str  # "hessian" or "RX"
    modes: Modes
    warnings: list[str] = field(default_factory=list)

    @property
    def is_singular(self) -> bool:
        return bool((self.theta[diagonal_positions(self.data.q)] < SINGULAR_TOLERANCE).any())

    @property
    def loglik(self) -> float:
        return -self.objective / 2

    @property
    def n_parameters(self) -> int:
        return len(self.theta) + len(self.beta)

    @property
    def random_covariance(self) -> np.ndarray:
        lam = relative_factor(self.theta, self.data.q)
        return lam @ lam.T

    @property
    def random_effects(self) -> np.ndarray:
        """Conditional modes on the scale of b (Lambda u), one row per group (lme4's ranef)."""
        return self.modes.u @ relative_factor(self.theta, self.data.q).T


def rx_covariance(data: BinomialData, modes: Modes) -> np.ndarray:
    """lme4's RX-based covariance of beta (its fallback at singular fits)."""
    mu = special.expit(modes.eta)
    w = data.trials * mu * (1 - mu)
    xwx = data.x.T @ (data.x * w[:, None])
    awx = np.asarray(data.indicator @ (modes.a[:, :, None] * (data.x * w[:, None])[:, None, :]).reshape(data.n, -1))
    awx = awx.reshape(data.k, data.q, data.p)
    schur = xwx - np.einsum("kqp,kqr->pr", awx, np.linalg.solve(modes.info, awx))
    return np.linalg.inv(schur)


def standardizing_map(x: np.ndarray) -> np.ndarray:
    """A (p x p) with x @ A centred (when there is an intercept column) and scaled columns.

    The optimizer works on gamma with beta = A gamma: the criterion's level sets are then as
    round as the data allow, so the fit does not depend on a covariate's units or offset
    (lme4 instead warns about predictors on very different scales)."""
    p = x.shape[1]
    intercept = [j for j in range(p) if np.all(x[:, j] == 1.0)]
    a = np.eye(p)
    for j in range(p):
        if j in intercept:
            continue
        centre = x[:, j].mean() if intercept else 0.0
        spread = np.sqrt(np.mean((x[:, j] - centre) ** 2))
        scale = 1 / spread if spread > 0 else 1.0
        a[j, j] = scale
        if intercept:
            a[intercept[0], j] = -centre * scale
    return a


SEPARATED_ETA = 15.0  # fitted probability within 3e-7 of 0 or 1


def separation_notes(data: BinomialData, eta: np.ndarray) -> list[str]:
    """lme4 and glm fit a separated design with a warning: the estimate of a term whose rows all
    have fitted probabilities at 0 or 1 grows without end and its SE is meaningless. Named here."""
    extreme = np.abs(eta) > SEPARATED_ETA
    separating = [
        name for j, name in enumerate(data.names) if (data.x[:, j] != 0).any() and extreme[data.x[:, j] != 0].all()
    ]
    if not separating:
        return []
    return [
        f"complete or quasi-complete separation: every row with {', '.join(separating)} has a fitted probability "
        "of 0 or 1; its estimate is not finite (shown: where the optimizer stopped) and its SE is meaningless"
    ]


def fit_glmm(data: BinomialData, n_agq: int = 1) -> GlmmFit:
    if n_agq < 1:
        raise ValueError(f"nAGQ must be at least 1 (lme4's nAGQ = 0 stage is not offered), not {n_agq}")
    if n_agq > 1 and data.q != 1:
        raise ValueError("nAGQ > 1 needs a single scalar random effect (as lme4's glmer)")
    gauss_hermite_rule(n_agq)  # validates the order
    to_beta = standardizing_map(data.x)
    # judged on the centred and scaled columns: an offset of 1e8 does not make x aliased
    if data.n <= data.p or np.linalg.matrix_rank(data.x @ to_beta) < data.p:
        raise NotEstimable("fixed-effects design is not of full rank")
    work = replace(data, x=data.x @ to_beta)
    with np.errstate(over="ignore", invalid="ignore"):
        params = optimize_criterion(work, n_agq)
    nt = theta_size(data.q)
    theta, beta = params[:nt], to_beta @ params[nt:]
    modes = conditional_modes(work, theta, params[nt:])
    indicator = data.indicator

    def func(point):
        return criterion(work, point, n_agq, indicator)

    objective = func(params)
    notes = [] if modes.converged else ["PIRLS did not converge at the optimum"]
    notes += separation_notes(data, modes.eta)
    singular = bool((theta[diagonal_positions(data.q)] < SINGULAR_TOLERANCE).any())
    vcov, source = None, "RX"
    if not singular:  # lme4 takes the Hessian only away from the boundary
        hessian = deriv12_hessian(func, params, objective)
        try:
            inverse = to_beta @ np.linalg.inv(hessian)[nt:, nt:] @ to_beta.T
            candidate = inverse + inverse.T
            if np.all(np.isfinite(candidate)) and np.linalg.eigvalsh(candidate).min() > 0:
                vcov, source = candidate, "hessian"
        except np.linalg.LinAlgError:
            pass
        if vcov is None:
            notes.append("Hessian of the criterion is not positive definite: covariance of beta from RX")
    if vcov is None:
        vcov = to_beta @ rx_covariance(work, modes) @ to_beta.T
    return GlmmFit(data, n_agq, theta, beta, objective, vcov, source, modes, notes)
