"""Two-stage imputation draws (micemd's `2l.2stage.norm` and `2l.2stage.bin`; Resche-Rigon & White
2018, "Multiple imputation by chained equations for systematically and sporadically missing
multilevel data", Stat Methods Med Res 27(6)).

Every coefficient of the imputation model is study-specific and the studies' coefficient vectors
are multivariate normal, beta_j ~ N(beta, Psi). One draw, as micemd 1.10.1's
mice.impute.2l.2stage.norm.intern with its defaults (method_est = "mm", method_draw = "param"):

  1. per study with the variable observed: OLS (logistic regression for the binary version) of
     the observed rows; a study whose fit has aliased coefficients or (normal) 4 or fewer residual
     df, or (binary) a standard error above 1000, does not enter the meta-analyses;
  2. (normal only) the log residual variances, with within-study variances 2 / (df_j - 4), are
     meta-analysed by the method of moments (univariate: DerSimonian-Laird); their mean is drawn
     from N(estimate, its variance), the between-study variance is the estimate (micemd draws it
     only under REML), and each study's log variance is drawn from its conditional distribution
     given its own estimate, or, in a study without one, from N(mean*, between-study variance);
  3. the coefficient vectors, with within-study covariances sigma2_j* (X_j'X_j)^-1, are
     meta-analysed by mvmeta's multivariate method of moments (Jackson, White & Riley 2013);
     beta* ~ N(estimate, its covariance), Psi = the estimate; each study's beta_j* is drawn from
     N(beta_j | its estimate b_j with covariance V_j (lm's vcov), beta*, Psi), or, in a study
     that never observed the variable, from N(beta*, Psi);
  4. imputations x beta_j* + N(0, sigma2_j*) (binary: Bernoulli(plogis(x beta_j*))).

Three deliberate differences from micemd 1.10.1:
  - a study that observed the variable but whose own fit is unusable (a single-arm study, nobody
    employed, a tiny study, separation) keeps its own data: micemd draws it from N(beta*, Psi) as if
    it had never measured the variable, so a single-arm study with intercept +2 got the others'
    intercept. Here its coefficients are drawn from their posterior given its observed rows and the
    prior N(beta*, Psi): with beta = beta* + L z, L L' = Psi, z ~ N(0, I) (no inverse of Psi, which
    may be singular), normal: exact, z | rows ~ N(P^-1 L'X'(y - X beta*) / sigma2_j, P^-1) with
    P = I + L'X'X L / sigma2_j; binary: Laplace, the posterior mode by penalised Newton-Raphson
    (finite under separation) and the inverse Hessian there. Its log residual variance, when the
    fit on its independent columns has 5 or more residual df, is drawn given its own estimate;
  - its step 3 builds every study's within-study covariance from the cross-product of ALL studies'
    rows (`crossprod(temp[, fixe])`, temp being the whole data), which understates study j's
    covariance by about n_j / N and so overstates Psi; here each study's own observed rows are used;
  - its conditional draws use MASS::ginv(Psi), which drops eigenvalues below sqrt(eps) times the
    largest, so a direction in which Psi is (near) zero gets no shrinkage at all; here the conditional
    distribution is written as beta* + Psi (Psi + V_j)^-1 (b_j - beta*), covariance
    Psi - Psi (Psi + V_j)^-1 Psi, which equals micemd's where ginv inverts Psi and is the model's
    limit (full shrinkage) where Psi is singular.
The non-intercept predictors (and a normal variable itself) are centred and scaled by their pooled
means and SDs before all this and the draws scaled back: mvmeta's floor on Psi's eigenvalues is not
equivariant under a change of units, so without this the imputations would depend on a predictor's
units and offsets (and raw cross-products of offset columns lose digits).
Written here because micemd (R) is not installable in this environment and no Python package does it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .draws import independent_columns, logistic_fit

# mvmeta.control(set.negeigen = sqrt(.Machine$double.eps)): Psi's negative eigenvalues become this
NEGATIVE_EIGENVALUE_FLOOR = float(np.sqrt(np.finfo(float).eps))
MINIMUM_RESIDUAL_DF = 5  # micemd: df.residual <= 4 is "overfitting" (and 2 / (df - 4) must be > 0)
LARGEST_STANDARD_ERROR = 1000.0  # micemd's 2l.2stage.bin threshold for a usable study fit
# The method of moments estimates Psi from the studies' deviations around the pooled mean: with
# fewer than 2 fitted studies there is none (micemd has no check: mvmeta then fails)
MINIMUM_STUDIES = 2


class TooFewStudies(ValueError):
    """Fewer than MINIMUM_STUDIES studies have a usable fit of the variable's model; `unusable`:
    study code -> why its fit is not usable (the studies that observed the variable)."""

    def __init__(self, usable: int, unusable: dict[int, str]):
        super().__init__(f"{usable} studies with a usable fit")
        self.usable = usable
        self.unusable = unusable


@dataclass(frozen=True)
class Meta:
    """A random-effects meta-analysis of k-vectors: pooled mean, its covariance, between-study Psi
    (floored as mvmeta), and Psi before flooring (the method of moments' raw solution)."""

    mean: np.ndarray
    mean_covariance: np.ndarray
    psi: np.ndarray
    psi_raw: np.ndarray


def gls_mean(estimates: np.ndarray, covariances: np.ndarray, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pooled mean of the estimates (m x k) with within-study covariances (m x k x k) given Psi,
    and its covariance (sum of (S_j + Psi)^-1)^-1 (mvmeta's glsfit)."""
    weights = np.linalg.inv(covariances + psi)
    information = weights.sum(axis=0)
    covariance = np.linalg.inv(information)
    return covariance @ np.einsum("jkl,jl->k", weights, estimates), covariance


def method_of_moments(estimates: np.ndarray, covariances: np.ndarray) -> Meta:
    """mvmeta's method-of-moments estimator (mvmeta.mm, Jackson, White & Riley 2013) for an
    intercept-only model with every outcome observed in every study: with W_j = S_j^-1, the
    fixed-effect fit's hat matrix H and A = (I - H)'W, B = (I - H)', Psi solves
    sum_{r,c} (B_rc kron A_rc)' vec(Psi) = vec(blocktrace(W (I - H) y y' (I - H)') - blocktrace(B)),
    symmetrized, its negative eigenvalues set to sqrt(eps); then the GLS mean given Psi."""
    m, k = estimates.shape
    weights = np.linalg.inv(covariances)
    big_w = np.zeros((m * k, m * k))
    for j in range(m):
        big_w[j * k : (j + 1) * k, j * k : (j + 1) * k] = weights[j]
    x = np.tile(np.eye(k), (m, 1))
    hat = x @ np.linalg.solve(x.T @ big_w @ x, x.T @ big_w)
    residual_maker = np.eye(m * k) - hat
    residual = residual_maker @ estimates.reshape(-1)
    q = block_trace(big_w @ np.outer(residual, residual), k)
    a = residual_maker.T @ big_w
    b = residual_maker.T
    a_blocks = a.reshape(m, k, m, k).transpose(0, 2, 1, 3)  # [r, c] -> k x k block
    b_blocks = b.reshape(m, k, m, k).transpose(0, 2, 1, 3)
    # sum over block pairs of t(B_rc kron A_rc): (B kron A)[(i, j), (l, n)] = B[i, l] A[j, n]
    system = np.einsum("rcil,rcjn->ijln", b_blocks, a_blocks).reshape(k * k, k * k).T
    # vec() in R is column-major: vec(M)[i + k j] = M[i, j]
    right = (q - block_trace(b, k)).reshape(-1, order="F")
    solution = np.linalg.solve(system, right).reshape(k, k, order="F")
    psi_raw = (solution + solution.T) / 2
    values, vectors = np.linalg.eigh(psi_raw)
    psi = (vectors * np.maximum(values, NEGATIVE_EIGENVALUE_FLOOR)) @ vectors.T
    mean, mean_covariance = gls_mean(estimates, covariances, psi)
    return Meta(mean, mean_covariance, psi, psi_raw)


def general_method_of_moments(estimates: list, covariances: list, designs: list) -> Meta:
    """The method of moments when study j estimates C_j beta_j (designs C_j, r_j x k, r_j <= k): a
    study whose fit is aliased estimates only the combinations of beta_j its rows identify. With
    e = (I - H) y the fixed-effect GLS residuals, Q = sum_j C_j' W_j e_j e_j' C_j has expectation
    sum_j C_j' W_j [(I - H) S (I - H)']_jj C_j + sum_{j,l} A_jl Psi B_jl, A_jl = C_j' W_j (I - H)_jl C_l,
    B_jl = C_l' (I - H)_jl' C_j; Psi solves the k x k equations (symmetrized, floored as mvmeta).
    With every C_j = I this is Jackson, White & Riley's (2013) estimator (method_of_moments)."""
    k = designs[0].shape[1]
    sizes = [len(e) for e in estimates]
    edges = np.concatenate([[0], np.cumsum(sizes)])
    c = np.vstack(designs)
    big_w = block_diagonal([np.linalg.inv(s) for s in covariances])
    big_s = block_diagonal(covariances)
    hat = c @ np.linalg.solve(c.T @ big_w @ c, c.T @ big_w)
    residual_maker = np.eye(len(c)) - hat
    residual = residual_maker @ np.concatenate(estimates)
    noise = residual_maker @ big_s @ residual_maker.T
    system = np.zeros((k * k, k * k))
    right = np.zeros((k, k))
    for j, cj in enumerate(designs):
        rows = slice(edges[j], edges[j + 1])
        wj = big_w[rows, rows]
        right += cj.T @ wj @ (np.outer(residual[rows], residual[rows]) - noise[rows, rows]) @ cj
        for other, cl in enumerate(designs):
            block = residual_maker[rows, edges[other] : edges[other + 1]]
            a = cj.T @ wj @ block @ cl
            b = cl.T @ block.T @ cj
            system += np.kron(b.T, a)  # vec(A Psi B) = (B' kron A) vec(Psi), column-major
    solution = np.linalg.solve(system, right.reshape(-1, order="F")).reshape(k, k, order="F")
    psi_raw = (solution + solution.T) / 2
    values, vectors = np.linalg.eigh(psi_raw)
    psi = (vectors * np.maximum(values, NEGATIVE_EIGENVALUE_FLOOR)) @ vectors.T
    weights = [cj.T @ np.linalg.inv(s + cj @ psi @ cj.T) for cj, s in zip(designs, covariances)]
    information = sum(w @ cj for w, cj in zip(weights, designs))
    mean_covariance = np.linalg.inv(information)
    mean = mean_covariance @ sum(w @ e for w, e in zip(weights, estimates))
    return Meta(mean, mean_covariance, psi, psi_raw)


def block_diagonal(blocks: list) -> np.ndarray:
    size = sum(len(b) for b in blocks)
    out = np.zeros((size, size))
    start = 0
    for b in blocks:
        out[start : start + len(b), start : start + len(b)] = b
        start += len(b)
    return out


def block_trace(matrix: np.ndarray, k: int) -> np.ndarray:
    """mvmeta's fbtr: the sum of the k x k diagonal blocks."""
    m = matrix.shape[0] // k
    return sum(matrix[j * k : (j + 1) * k, j * k : (j + 1) * k] for j in range(m))


def normal_draw(rng: np.random.Generator, mean: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """One draw of N(mean, covariance) for a positive semi-definite covariance (as mvtnorm's
    rmvnorm(method = "svd"): a symmetric square root, so a singular covariance is fine)."""
    return mean + psi_root((covariance + covariance.T) / 2) @ rng.standard_normal(len(mean))


def conditional_moments(
    estimate: np.ndarray, covariance: np.ndarray, mean: np.ndarray, psi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a study's coefficients beta_j given its estimate ~ N(beta_j, covariance)
    and beta_j ~ N(mean, psi), in the form that stays defined when psi is singular."""
    gain = psi @ np.linalg.inv(psi + covariance)
    return mean + gain @ (estimate - mean), psi - gain @ psi


def conditional_draw(
    rng: np.random.Generator, estimate: np.ndarray, covariance: np.ndarray, mean: np.ndarray, psi: np.ndarray
) -> np.ndarray:
    return normal_draw(rng, *conditional_moments(estimate, covariance, mean, psi))


@dataclass(frozen=True)
class StudyFit:
    estimate: np.ndarray
    covariance: np.ndarray  # lm's vcov (residual mean square) or glm's
    crossproduct_inverse: np.ndarray | None  # (X'X)^-1 of the observed rows (normal model)
    residual_variance: float | None
    df: int | None


@dataclass(frozen=True)
class OwnRows:
    """A study that observed the variable but has no usable fit: its observed rows, why, and (normal)
    the fit on its independent columns: their estimate of `identified` @ beta_j (X = X_independent @
    identified), (X_independent'X_independent)^-1, and the residual variance and df when df >= 5."""

    x: np.ndarray
    y: np.ndarray
    reason: str
    estimate: np.ndarray | None = None
    identified: np.ndarray | None = None
    crossproduct_inverse: np.ndarray | None = None
    residual_variance: float | None = None
    df: int | None = None


def ols_fit(x: np.ndarray, y: np.ndarray) -> StudyFit | OwnRows:
    """micemd's ana1_imput: lm of the study's observed rows; OwnRows when a coefficient is aliased or
    the residual df are 4 or fewer."""
    independent = independent_columns(x)
    df = len(y) - len(independent)
    if len(independent) == x.shape[1] and df >= MINIMUM_RESIDUAL_DF:
        estimate, variance, crossproduct_inverse = least_squares(x, y)
        return StudyFit(estimate, variance * crossproduct_inverse, crossproduct_inverse, variance, df)
    if len(independent) < x.shape[1]:
        reason = f"aliased coefficients among its {len(y)} observed rows"
    else:
        reason = f"{df} residual df, fewer than {MINIMUM_RESIDUAL_DF}"
    if df < 1:
        return OwnRows(x, y, reason)
    kept = x[:, independent]
    estimate, variance, crossproduct_inverse = least_squares(kept, y)
    identified = np.linalg.lstsq(kept, x, rcond=None)[0]
    enough = df >= MINIMUM_RESIDUAL_DF
    return OwnRows(x, y, reason, estimate, identified, crossproduct_inverse, variance if enough else None,
                   df if enough else None)  # fmt: skip


def least_squares(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """OLS by QR of a full-rank x: estimate, residual mean square, (X'X)^-1."""
    q, r = np.linalg.qr(x)
    estimate = np.linalg.solve(r, q.T @ y)
    residual = y - x @ estimate
    r_inverse = np.linalg.inv(r)
    return estimate, float(residual @ residual) / (len(y) - x.shape[1]), r_inverse @ r_inverse.T


def logistic_study_fit(x: np.ndarray, y: np.ndarray) -> StudyFit | OwnRows:
    """micemd's ana1_imput_bin: glm(binomial) of the study's observed rows; OwnRows when a coefficient
    is aliased, the fit fails or a standard error exceeds 1000 (separation)."""
    if len(y) <= x.shape[1] or len(independent_columns(x)) < x.shape[1]:
        return OwnRows(x, y, f"aliased coefficients among its {len(y)} observed rows")
    try:
        with np.errstate(over="ignore"):  # separation: exp overflows on the way to a huge SE
            estimate, covariance = logistic_fit(x, y, np.ones(len(y)))
    except np.linalg.LinAlgError:
        return OwnRows(x, y, "its logistic regression failed (separation)")
    with np.errstate(invalid="ignore"):  # an ill-conditioned fit's negative variance: not usable
        errors = np.sqrt(np.diag(covariance))
    if not np.all(np.isfinite(errors)) or errors.max() > LARGEST_STANDARD_ERROR:
        return OwnRows(x, y, f"a standard error above {LARGEST_STANDARD_ERROR:.0f} (separation)")
    return StudyFit(estimate, covariance, None, None, None)


def study_fits(x: np.ndarray, y: np.ndarray, observed: np.ndarray, study: np.ndarray, studies: int, binary: bool):
    """Each study's fit of its observed rows (OwnRows: no usable fit; None: never observed)."""
    fit = logistic_study_fit if binary else ols_fit
    return [
        fit(x[(study == j) & observed], y[(study == j) & observed]) if ((study == j) & observed).any() else None
        for j in range(studies)
    ]


def is_usable(fit) -> bool:
    return isinstance(fit, StudyFit)


def residual_variances(rng: np.random.Generator, fits: list) -> np.ndarray:
    """Step 2: each study's residual variance sigma2_j* from the meta-analysis of the log variances
    (usable fits only); a study with a residual variance of its own is drawn given it."""
    fitted = [f for f in fits if is_usable(f)]
    logs = np.array([[np.log(f.residual_variance)] for f in fitted])
    within = np.array([[[2 / (f.df - 4)]] for f in fitted])
    meta = method_of_moments(logs, within)
    mean = normal_draw(rng, meta.mean, meta.mean_covariance)[0]
    tau2 = float(meta.psi[0, 0])
    out = np.empty(len(fits))
    for j, f in enumerate(fits):
        if f is None or f.residual_variance is None:
            out[j] = np.exp(mean + np.sqrt(tau2) * rng.standard_normal())
        else:
            log_variance = np.array([np.log(f.residual_variance)])
            out[j] = np.exp(conditional_draw(rng, log_variance, np.array([[2 / (f.df - 4)]]), np.array([mean]),
                                             np.array([[tau2]]))[0])  # fmt: skip
    return out


def psi_root(psi: np.ndarray) -> np.ndarray:
    """The symmetric square root of a positive semi-definite psi (negative rounding clipped): unlike
    V sqrt(D), it is continuous in psi where eigenvalues tie (mvmeta's floor makes them tie), so a
    change of units that moves psi by rounding does not rotate the draws."""
    values, vectors = np.linalg.eigh(psi)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def posterior_given_rows(
    x: np.ndarray, y: np.ndarray, mean: np.ndarray, root: np.ndarray, variance: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a study's coefficients beta = mean + root z, z ~ N(0, I) a priori, given
    its rows: normal (variance given) exactly, binary by Laplace's approximation at the posterior mode.
    In z the log posterior is strictly concave with Hessian -(I + ...), so the mode is finite even
    under separation and nothing needs Psi's inverse."""
    design = x @ root
    offset = x @ mean
    z = np.zeros(root.shape[1])
    if variance is not None:
        precision = np.eye(len(z)) + design.T @ design / variance
        z = np.linalg.solve(precision, design.T @ (y - offset) / variance)
    else:
        z, precision = penalised_logistic_mode(design, y, offset)
    covariance = np.linalg.inv(precision)
    return mean + root @ z, root @ covariance @ root.T


def penalised_logistic_mode(design: np.ndarray, y: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """argmax_z sum(y eta - log(1 + e^eta)) - z'z / 2 with eta = offset + design z, by Newton-Raphson
    with step halving; returns the mode and the negative Hessian there."""

    def objective(z):
        eta = offset + design @ z
        return float(y @ eta - np.logaddexp(0, eta).sum() - z @ z / 2)

    z = np.zeros(design.shape[1])
    for _ in range(100):
        p = 1 / (1 + np.exp(-(offset + design @ z)))
        hessian = np.eye(len(z)) + design.T @ ((p * (1 - p))[:, None] * design)
        step = np.linalg.solve(hessian, design.T @ (y - p) - z)
        current = objective(z)
        while objective(z + step) < current - 1e-12 and np.max(np.abs(step)) > 1e-12:
            step = step / 2
        z = z + step
        if np.max(np.abs(step)) < 1e-10:
            break
    p = 1 / (1 + np.exp(-(offset + design @ z)))
    return z, np.eye(len(z)) + design.T @ ((p * (1 - p))[:, None] * design)


def study_coefficients(rng: np.random.Generator, fits: list, within: list, variances=None) -> list[np.ndarray]:
    """Step 3: each study's coefficients beta_j* (within: the meta-analysis' within-study covariances;
    variances: the normal model's sigma2_j*, with which a study without a usable fit enters the
    meta-analysis through the combinations of its coefficients that its rows identify)."""
    k = len(next(f.estimate for f in fits if is_usable(f)))
    entering = [j for j, f in enumerate(fits) if is_usable(f) or (variances is not None and partly_identified(f))]
    meta = general_method_of_moments(
        [fits[j].estimate for j in entering],
        [within[j] if is_usable(fits[j]) else variances[j] * fits[j].crossproduct_inverse for j in entering],
        [np.eye(k) if is_usable(fits[j]) else fits[j].identified for j in entering],
    )
    mean = normal_draw(rng, meta.mean, meta.mean_covariance)
    root = psi_root(meta.psi)
    out = []
    for j, f in enumerate(fits):
        if f is None:
            out.append(normal_draw(rng, mean, meta.psi))
        elif is_usable(f):
            out.append(conditional_draw(rng, f.estimate, f.covariance, mean, meta.psi))
        else:
            variance = None if variances is None else variances[j]
            out.append(normal_draw(rng, *posterior_given_rows(f.x, f.y, mean, root, variance)))
    return out


def partly_identified(fit) -> bool:
    return isinstance(fit, OwnRows) and fit.identified is not None


def usable_studies(fits: list) -> int:
    return sum(is_usable(f) for f in fits)


def standardized(x: np.ndarray) -> np.ndarray:
    """x with its non-intercept columns centred and scaled by their means and SDs over all rows (a
    constant column only centred), so that units and offsets of the predictors do not matter."""
    centred = x[:, 1:] - x[:, 1:].mean(axis=0)
    scale = np.sqrt((centred**2).mean(axis=0))
    return np.column_stack([x[:, 0], centred / np.where(scale > 0, scale, 1)])


def two_stage_draw(
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    observed: np.ndarray,
    study: np.ndarray,
    studies: int,
    binary: bool = False,
) -> np.ndarray:
    """Imputations of the rows not `observed` (study codes 0..studies-1 in `study`; x's column 0 is
    the intercept). Raises TooFewStudies when fewer than MINIMUM_STUDIES studies have a usable fit."""
    x = standardized(x)
    if not binary:
        centre = y[observed].mean()
        scale = float(np.sqrt(((y[observed] - centre) ** 2).mean())) or 1.0
        return centre + scale * two_stage_normal(rng, x, (y - centre) / scale, observed, study, studies)
    fits = checked_fits(x, y, observed, study, studies, binary)
    coefficients = study_coefficients(rng, fits, [f.covariance if is_usable(f) else None for f in fits])
    missing = ~observed
    linear = np.einsum("ij,ij->i", x[missing], np.array(coefficients)[study[missing]])
    return (rng.random(missing.sum()) < 1 / (1 + np.exp(-linear))).astype(float)


def checked_fits(x, y, observed, study, studies, binary) -> list:
    fits = study_fits(x, y, observed, study, studies, binary)
    if usable_studies(fits) < MINIMUM_STUDIES:
        raise TooFewStudies(usable_studies(fits), {j: f.reason for j, f in enumerate(fits) if isinstance(f, OwnRows)})
    return fits


def two_stage_normal(rng, x, y, observed, study, studies) -> np.ndarray:
    fits = checked_fits(x, y, observed, study, studies, False)
    variances = residual_variances(rng, fits)
    within = [variances[j] * f.crossproduct_inverse if is_usable(f) else None for j, f in enumerate(fits)]
    coefficients = study_coefficients(rng, fits, within, variances)
    missing = ~observed
    linear = np.einsum("ij,ij->i", x[missing], np.array(coefficients)[study[missing]])
    return linear + np.sqrt(variances[study[missing]]) * rng.standard_normal(missing.sum())
