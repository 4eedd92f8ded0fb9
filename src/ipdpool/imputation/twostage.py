"""Two-stage imputation draws (micemd's `2l.2stage.norm` and `2l.2stage.bin`; Resche-Rigon & White
2018, "Multiple imputation by chained equations for systematically and sporadically missing
multilevel data", Stat Methods Med Res 27(6)).

Every coefficient of the imputation model is study-specific and the studies' coefficient vectors
are multivariate normal, beta_j ~ N(beta, Psi). One draw, as micemd 1.10.1's
mice.impute.2l.2stage.norm.intern with its defaults (method_est = "mm", method_draw = "param"):

  1. per study with the variable observed: OLS (logistic regression for the binary version) of
     the observed rows; a study whose fit has aliased coefficients or (normal) 4 or fewer residual
     df, or (binary) a standard error above 1000, is treated as if it had not measured the variable;
  2. (normal only) the log residual variances, with within-study variances 2 / (df_j - 4), are
     meta-analysed by the method of moments (univariate: DerSimonian-Laird); their mean is drawn
     from N(estimate, its variance), the between-study variance is the estimate (micemd draws it
     only under REML), and each study's log variance is drawn from its conditional distribution
     given its own estimate, or, in a study without a fit, from N(mean*, between-study variance);
  3. the coefficient vectors, with within-study covariances sigma2_j* (X_j'X_j)^-1, are
     meta-analysed by mvmeta's multivariate method of moments (Jackson, White & Riley 2013);
     beta* ~ N(estimate, its covariance), Psi = the estimate; each study's beta_j* is drawn from
     N(beta_j | its estimate b_j with covariance V_j (lm's vcov), beta*, Psi), or, in a study
     without a fit, from N(beta*, Psi);
  4. imputations x beta_j* + N(0, sigma2_j*) (binary: Bernoulli(plogis(x beta_j*))).

Two deliberate differences from micemd 1.10.1, both where its code departs from its paper:
  - its step 3 builds every study's within-study covariance from the cross-product of ALL studies'
    rows (`crossprod(temp[, fixe])`, temp being the whole data), which understates study j's
    covariance by about n_j / N and so overstates Psi; here each study's own observed rows are used;
  - its conditional draws use MASS::ginv(Psi), which drops eigenvalues below sqrt(eps) times the
    largest, so a direction in which Psi is (near) zero gets no shrinkage at all; here the conditional
    distribution is written as beta* + Psi (Psi + V_j)^-1 (b_j - beta*), covariance
    Psi - Psi (Psi + V_j)^-1 Psi, which equals micemd's where ginv inverts Psi and is the model's
    limit (full shrinkage) where Psi is singular.
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
    """Fewer than MINIMUM_STUDIES studies have a usable fit of the variable's model."""

    def __init__(self, usable: int):
        super().__init__(f"{usable} studies with a usable fit")
        self.usable = usable


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


def block_trace(matrix: np.ndarray, k: int) -> np.ndarray:
    """mvmeta's fbtr: the sum of the k x k diagonal blocks."""
    m = matrix.shape[0] // k
    return sum(matrix[j * k : (j + 1) * k, j * k : (j + 1) * k] for j in range(m))


def normal_draw(rng: np.random.Generator, mean: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """One draw of N(mean, covariance) for a positive semi-definite covariance (as mvtnorm's
    rmvnorm(method = "svd"): a symmetric square root, so a singular covariance is fine)."""
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    return mean + vectors @ (np.sqrt(np.clip(values, 0, None)) * rng.standard_normal(len(mean)))


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


def ols_fit(x: np.ndarray, y: np.ndarray) -> StudyFit | None:
    """micemd's ana1_imput: lm of the study's observed rows, None when a coefficient is aliased or
    the residual df are 4 or fewer."""
    df = len(y) - x.shape[1]
    if df < MINIMUM_RESIDUAL_DF or len(independent_columns(x)) < x.shape[1]:
        return None
    q, r = np.linalg.qr(x)
    estimate = np.linalg.solve(r, q.T @ y)
    residual = y - x @ estimate
    variance = float(residual @ residual) / df
    r_inverse = np.linalg.inv(r)
    crossproduct_inverse = r_inverse @ r_inverse.T
    return StudyFit(estimate, variance * crossproduct_inverse, crossproduct_inverse, variance, df)


def logistic_study_fit(x: np.ndarray, y: np.ndarray) -> StudyFit | None:
    """micemd's ana1_imput_bin: glm(binomial) of the study's observed rows, None when a coefficient
    is aliased, the fit fails or a standard error exceeds 1000 (separation)."""
    if len(y) <= x.shape[1] or len(independent_columns(x)) < x.shape[1]:
        return None
    try:
        with np.errstate(over="ignore"):  # separation: exp overflows on the way to a huge SE
            estimate, covariance = logistic_fit(x, y, np.ones(len(y)))
    except np.linalg.LinAlgError:
        return None
    errors = np.sqrt(np.diag(covariance))
    if not np.all(np.isfinite(errors)) or errors.max() > LARGEST_STANDARD_ERROR:
        return None
    return StudyFit(estimate, covariance, None, None, None)


def study_fits(x: np.ndarray, y: np.ndarray, observed: np.ndarray, study: np.ndarray, studies: int, binary: bool):
    """Each study's fit of its observed rows (None: no usable fit, imputed as systematically missing)."""
    fit = logistic_study_fit if binary else ols_fit
    return [
        fit(x[(study == j) & observed], y[(study == j) & observed]) if ((study == j) & observed).any() else None
        for j in range(studies)
    ]


def residual_variances(rng: np.random.Generator, fits: list) -> np.ndarray:
    """Step 2: each study's residual variance sigma2_j* from the meta-analysis of the log variances."""
    fitted = [f for f in fits if f is not None]
    logs = np.array([[np.log(f.residual_variance)] for f in fitted])
    within = np.array([[[2 / (f.df - 4)]] for f in fitted])
    meta = method_of_moments(logs, within)
    mean = normal_draw(rng, meta.mean, meta.mean_covariance)[0]
    tau2 = float(meta.psi[0, 0])
    out = np.empty(len(fits))
    for j, f in enumerate(fits):
        if f is None:
            out[j] = np.exp(mean + np.sqrt(tau2) * rng.standard_normal())
        else:
            log_variance = np.array([np.log(f.residual_variance)])
            out[j] = np.exp(conditional_draw(rng, log_variance, np.array([[2 / (f.df - 4)]]), np.array([mean]),
                                             np.array([[tau2]]))[0])  # fmt: skip
    return out


def study_coefficients(rng: np.random.Generator, fits: list, within: list) -> list[np.ndarray]:
    """Step 3: each study's coefficients beta_j* (within: the meta-analysis' within-study covariances)."""
    fitted = [j for j, f in enumerate(fits) if f is not None]
    meta = method_of_moments(np.array([fits[j].estimate for j in fitted]), np.array([within[j] for j in fitted]))
    mean = normal_draw(rng, meta.mean, meta.mean_covariance)
    return [
        normal_draw(rng, mean, meta.psi)
        if f is None
        else conditional_draw(rng, f.estimate, f.covariance, mean, meta.psi)
        for f in fits
    ]


def usable_studies(fits: list) -> int:
    return sum(f is not None for f in fits)


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
    fits = study_fits(x, y, observed, study, studies, binary)
    if usable_studies(fits) < MINIMUM_STUDIES:
        raise TooFewStudies(usable_studies(fits))
    if binary:
        coefficients = study_coefficients(rng, fits, [f.covariance if f else None for f in fits])
        variances = None
    else:
        variances = residual_variances(rng, fits)
        within = [variances[j] * f.crossproduct_inverse if f else None for j, f in enumerate(fits)]
        coefficients = study_coefficients(rng, fits, within)
    missing = ~observed
    linear = np.einsum("ij,ij->i", x[missing], np.array(coefficients)[study[missing]])
    if binary:
        return (rng.random(missing.sum()) < 1 / (1 + np.exp(-linear))).astype(float)
    return linear + np.sqrt(variances[study[missing]]) * rng.standard_normal(missing.sum())
