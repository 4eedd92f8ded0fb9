"""Linear mixed models with centre nested in study, fitted exactly from per-centre cross-products.

Model (lme4's `(1 | study/centre)`, or `(terms | study) + (1 | study:centre)`):
y = X beta + Z_s u_study + v_centre + e, u_study ~ N(0, sigma2 Lambda_s Lambda_s'),
v_centre ~ N(0, sigma2 theta_c^2), e ~ N(0, sigma2 I). Studies are the independent blocks:
study i has random effects b_i = [u_i, v_i1, ..., v_iJ] with Z_i = [Z_s, centre indicators]
and Lambda_i = blockdiag(Lambda_s, theta_c I_J), so L_i L_i' = Lambda_i' Z_i'Z_i Lambda_i + I.
Z_i'Z_i, Z_i'X_i and Z_i'y_i are sums of per-centre cross-products of [1 X Z_s y] and their
first rows (an indicator times a column is the centre's sum of it), so the centre blocks that
a site releases are all the fit needs, and blocks of the same centre from two files add.

Each study is padded to the largest number of centres with empty centres (zero columns:
they add log|I| = 0 and nothing else), so the study-level model is the one-factor model of
lmm.py with a q_s + J-column Z and the centre's theta repeated on J diagonal elements. The
profiled deviance, its analytic gradient, the scaled coordinates, Satterthwaite and
Kenward-Roger are therefore lmm.py's, applied to that padded model through the linear map
theta (lme4's) -> the padded Lambda's free elements (`expand`): the gradient in theta is the
map's transpose times the padded gradient (chain rule, exact). The search (`_minimize_nested`)
follows lmm's, with extra care at the faces where a variance is 0. Padding costs
O(studies x (q_s + J)^3) per evaluation, J the most centres in one study.

theta is in lme4's order: the term whose grouping factor has more levels first (mkReTrms's
reorder.terms), i.e. the centre's theta first whenever there are more centres than studies; with as
many centres as studies (one centre each) mkReTrms keeps the written order (it reorders only when a
later term has more levels), which `centre_first_on_tie` carries.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from scipy import optimize

from . import NotEstimable, numderiv
from .crossprod import CrossProducts, cross_products
from .lmm import (
    NEAR_BOUNDARY,
    SINGULAR_TOLERANCE,
    LmmFit,
    Scaled,
    _criterion,
    _indicators,
    _objective,
    _off_the_face,
    covariance_from_hessian,
    deviance_at_gradient,
    diagonal_positions,
    evaluate,
    free_pattern,
    kenward_roger_parts,
    lme4_theta,
    relative_factor,
    scaled_problem,
    theta_positions,
)


@dataclass(frozen=True)
class NestedLayout:
    """Where each centre block sits: its study, its slot among the study's centres, and the
    compact (lme4) and padded parametrizations of Lambda."""

    studies: tuple[str, ...]  # sorted
    centres: tuple[tuple[str, str], ...]  # (study, centre) per block, sorted
    study_of: np.ndarray  # per block: index into studies
    slot: np.ndarray  # per block: position among its study's centres
    width: int  # the most centres in one study
    q_study: int
    study_pattern: np.ndarray
    centre_first: bool

    @property
    def centre_position(self) -> int:
        """The centre's row/column in the compact Lambda."""
        return 0 if self.centre_first else self.q_study

    @property
    def study_positions(self) -> list[int]:
        start = 1 if self.centre_first else 0
        return list(range(start, start + self.q_study))

    @cached_property
    def compact_pattern(self) -> np.ndarray:
        """Free elements of the compact Lambda = blockdiag over the two terms in lme4's order."""
        size = self.q_study + 1
        pattern = np.zeros((size, size), bool)
        pattern[np.ix_(self.study_positions, self.study_positions)] = self.study_pattern
        pattern[self.centre_position, self.centre_position] = True
        return pattern

    @cached_property
    def padded_pattern(self) -> np.ndarray:
        """Free elements of a study's Lambda: Lambda_s, then theta_c on each centre slot."""
        size = self.q_study + self.width
        pattern = np.zeros((size, size), bool)
        pattern[: self.q_study, : self.q_study] = self.study_pattern
        pattern[range(self.q_study, size), range(self.q_study, size)] = True
        return pattern

    @cached_property
    def expand(self) -> np.ndarray:
        """(padded theta x compact theta) 0/1 matrix: padded theta = expand @ theta."""
        compact_rows, compact_columns = theta_positions(self.compact_pattern)
        index = {(r, c): i for i, (r, c) in enumerate(zip(compact_rows, compact_columns))}
        study = self.study_positions
        out = np.zeros((int(self.padded_pattern.sum()), len(compact_rows)))
        for i, (r, c) in enumerate(zip(*theta_positions(self.padded_pattern))):
            if r < self.q_study:
                out[i, index[study[r], study[c]]] = 1.0
            else:
                out[i, index[self.centre_position, self.centre_position]] = 1.0
        return out

    def padded_lambda(self, theta: np.ndarray) -> np.ndarray:
        return relative_factor(self.expand @ theta, self.padded_pattern)


def nested_layout(cp: CrossProducts, studies, centre_first_on_tie: bool = False) -> NestedLayout:
    """The layout of centre blocks `cp` (one per (study, centre); groups are the centres' labels)."""
    pairs = list(zip((str(s) for s in studies), cp.groups))
    if len(set(pairs)) != len(pairs):
        raise ValueError("each (study, centre) must have one block: merge the blocks of a centre first")
    study_labels = tuple(sorted(set(s for s, _ in pairs)))
    order = sorted(range(len(pairs)), key=lambda i: pairs[i])
    study_of = np.array([study_labels.index(pairs[i][0]) for i in order])
    slot = np.array([int(np.sum(study_of[:j] == study_of[j])) for j in range(len(order))])
    return NestedLayout(
        study_labels, tuple(pairs[i] for i in order), study_of, slot, int(slot.max()) + 1, cp.q,
        free_pattern(cp.q, cp.random_terms),
        len(pairs) > len(study_labels) or (len(pairs) == len(study_labels) and centre_first_on_tie),
    )  # fmt: skip


def merge_centres(cp: CrossProducts, studies) -> tuple[CrossProducts, tuple[str, ...]]:
    """Blocks of the same (study, centre) added (they share cp's reference), in sorted order."""
    pairs = [(str(s), g) for s, g in zip(studies, cp.groups)]
    distinct = sorted(set(pairs))
    code = np.array([distinct.index(pair) for pair in pairs])
    products = np.zeros((len(distinct),) + cp.products.shape[1:])
    np.add.at(products, code, cp.products)
    merged = replace(cp, groups=tuple(c for _, c in distinct), products=products)
    return merged, tuple(s for s, _ in distinct)


def study_blocks(cp: CrossProducts, layout: NestedLayout) -> CrossProducts:
    """Per-study cross-products of [1 X Z_s (centre indicators) y] from the centre blocks of
    `cp` (columns [1 X Z_s y] as scaled_problem leaves them): the columns without indicators add
    over centres; an indicator with a column is the centre's sum of it; indicators are disjoint."""
    m = cp.products.shape[1]
    size = m + layout.width
    plain = list(range(m - 1)) + [size - 1]  # every column but the indicators
    products = np.zeros((len(layout.studies), size, size))
    for block in range(cp.k):
        study, indicator = layout.study_of[block], m - 1 + layout.slot[block]
        own = cp.products[block]
        products[study][np.ix_(plain, plain)] += own
        products[study, indicator, plain] = products[study, plain, indicator] = own[0]
        products[study, indicator, indicator] = own[0, 0]
    z_index = tuple(cp.z_index) + tuple(range(m - 1, m - 1 + layout.width))
    return CrossProducts(
        layout.studies, products, np.zeros(size), tuple(cp.x_index), z_index, size - 1, cp.x_names,
        cp.z_names + tuple(f"centre slot {j + 1}" for j in range(layout.width)),
    )  # fmt: skip


def _minimize_nested(objective, pattern: np.ndarray, resolution: float) -> np.ndarray:
    """lmm._minimize_many's search over an objective that is not lmm._objective's (this model's
    theta is mapped first): quasi-Newton from Lambda = I; only when that optimum is on or near
    the boundary, the faces where the diagonal elements near 0 are 0, and starts just off them
    (lme4 itself makes one local search); Newton to finish."""
    size, diagonal = int(pattern.sum()), diagonal_positions(pattern)
    bounds = [(0.0, None) if i in diagonal else (None, None) for i in range(size)]

    def search(start: np.ndarray, fixed_zero: tuple[int, ...] = ()) -> tuple[float, np.ndarray]:
        box = [(0.0, 0.0) if i in fixed_zero else bounds[i] for i in range(size)]
        start = np.where(np.isin(np.arange(size), fixed_zero), 0.0, start)
        found = optimize.minimize(
            objective, start, jac=True, method="L-BFGS-B", bounds=box,
            options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 2000},
        )  # fmt: skip
        return float(found.fun), found.x

    identity = np.zeros(size)
    identity[diagonal] = 1.0
    best = search(identity)
    near = [i for i in diagonal if best[1][i] < NEAR_BOUNDARY]
    if near or not np.isfinite(best[0]):
        candidates = [best]
        faces = near if np.isfinite(best[0]) else diagonal  # the faces next to the optimum found
        for count in range(1, len(faces) + 1):
            candidates += [search(identity, zero) for zero in itertools.combinations(faces, count)]
        best = min(candidates, key=lambda c: c[0])
        candidates = [best] + [search(start) for start in _off_the_face(best[1], pattern, diagonal)]
        lifted = _lifted(objective, best, diagonal)
        candidates += lifted + [search(start) for _, start in lifted]
        best = min(candidates, key=lambda c: c[0])
    return _gradient_newton(objective, best[1], diagonal, resolution)


LIFT_GRID = np.exp(np.linspace(-9.0, 2.0, 12))  # 1.2e-4 to 7.4, a factor 2.7 apart


def _lifted(objective, best: tuple[float, np.ndarray], diagonal: list[int]) -> list[tuple[float, np.ndarray]]:
    """For each diagonal element of Lambda at 0, the best point along it (the others fixed) on a
    log grid. The deviance is even in each diagonal element, so its derivative is 0 on the face:
    quasi-Newton that reaches the face stays there, and one started off it takes a first step of
    length 1 back onto it when the optimum is much closer (seen with a centre's theta of 0.03 and a
    lower REML criterion than on the face). Newton refines the grid point."""
    value, theta = best
    out = []
    for position in diagonal:
        if theta[position] < NEAR_BOUNDARY:
            trials = []
            for lifted in LIFT_GRID:
                start = theta.copy()
                start[position] = lifted
                trials.append((objective(start)[0], start))
            out.append(min(trials, key=lambda c: c[0]))
    return out


def _gradient_newton(objective, theta: np.ndarray, diagonal: list[int], resolution: float) -> np.ndarray:
    """lmm._newton_finish's Newton steps (off the bounds; the Hessian from central differences of
    the analytic gradient), going on while the gradient shrinks and the deviance stays within its
    rounding, `resolution`: about 1e-13 of the size of its terms (n log r2), not of the criterion
    itself, which can be orders of magnitude smaller (_newton_finish measures against the latter
    and stopped short of the optimum in a property test)."""
    value, gradient = objective(theta)
    for _ in range(6):
        free = [i for i in range(len(theta)) if i not in diagonal or theta[i] > 0]
        if not free or np.linalg.norm(gradient[free]) == 0:
            break
        hessian = np.empty((len(free), len(free)))
        for column, i in enumerate(free):
            h = 1e-5 * max(abs(theta[i]), 1e-2)
            up, down = theta.copy(), theta.copy()
            up[i] += h
            down[i] = max(theta[i] - h, 0.0) if i in diagonal else theta[i] - h
            hessian[:, column] = (objective(up)[1][free] - objective(down)[1][free]) / (up[i] - down[i])
        hessian = (hessian + hessian.T) / 2
        if not np.all(np.isfinite(hessian)) or np.linalg.eigvalsh(hessian).min() <= 0:
            break
        trial = theta.copy()
        trial[free] -= np.linalg.solve(hessian, gradient[free])
        trial[diagonal] = np.maximum(trial[diagonal], 0.0)
        trial_value, trial_gradient = objective(trial)
        if not (
            np.linalg.norm(trial_gradient[free]) < np.linalg.norm(gradient[free]) and trial_value <= value + resolution
        ):
            break
        theta, value, gradient = trial, min(value, trial_value), trial_gradient
    return theta


@dataclass
class NestedFit(LmmFit):
    """A fitted nested model. As LmmFit, with theta, `pattern` and `random_covariance` over the
    compact Lambda (the two terms in lme4's order) and inference on the padded study blocks."""

    layout: NestedLayout | None = None
    padded: CrossProducts | None = None  # per-study blocks in the scaled coordinates
    compact_map: np.ndarray | None = None  # z_map of the compact Lambda's rows
    theta_internal: np.ndarray | None = None

    @property
    def pattern(self) -> np.ndarray:
        return self.layout.compact_pattern

    @property
    def k(self) -> int:
        return len(self.layout.studies)

    @property
    def n_centres(self) -> int:
        return len(self.layout.centres)

    @property
    def compact_internal(self) -> np.ndarray:
        return relative_factor(self.theta_internal, self.pattern)

    @property
    def random_covariance(self) -> np.ndarray:
        """sigma2 Lambda Lambda' over the compact terms (lme4's order): the centre's variance and
        the study term's covariance."""
        factor = np.linalg.solve(self.compact_map, self.compact_internal)
        return self.sigma2 * factor @ factor.T

    @property
    def centre_variance(self) -> float:
        position = self.layout.centre_position
        return float(self.random_covariance[position, position])

    @property
    def study_covariance(self) -> np.ndarray:
        positions = self.layout.study_positions
        return self.random_covariance[np.ix_(positions, positions)]

    @cached_property
    def _satterthwaite_parts(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """As LmmFit's (lmerTest's 2 H^-1 of the deviance in (theta, sigma) and d cov(beta)),
        with theta lme4's compact parameters and the gradient mapped by the chain rule."""
        layout, padded = self.layout, self.padded
        expand = layout.expand
        point = np.concatenate([self.theta_internal, [np.sqrt(self.sigma2_internal)]])

        def gradient(v: np.ndarray) -> np.ndarray:
            full = deviance_at_gradient(padded, layout.padded_pattern, np.append(expand @ v[:-1], v[-1]), self.reml)
            return np.append(expand.T @ full[:-1], full[-1])

        covariance = covariance_from_hessian(np.column_stack(numderiv.jacobian(gradient, point)), self.warnings)

        def covbeta(v: np.ndarray) -> np.ndarray:
            return v[-1] ** 2 * np.linalg.inv(evaluate(padded, layout.padded_lambda(v[:-1])).xvx)

        return covariance, numderiv.jacobian(covbeta, point)

    @cached_property
    def _kenward_roger_parts(self) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """pbkrtest's vcovAdj on the padded blocks, with one covariance parameter per element of
        D_s and one for the centre variance (dD/dgamma: the identity on the centre slots)."""
        padded_indicators = _indicators(self.layout.padded_pattern)
        indicators = [
            sum(e for e, weight in zip(padded_indicators, column) if weight) for column in self.layout.expand.T
        ]
        return kenward_roger_parts(
            self.padded, self.layout.padded_lambda(self.theta_internal), self.layout.padded_pattern,
            self.sigma2_internal, self.vcov_internal, indicators,
        )  # fmt: skip


def fit_nested(
    blocks: CrossProducts,
    studies,
    reml: bool = True,
    singular_tolerance: float = SINGULAR_TOLERANCE,
    centre_first_on_tie: bool = False,
) -> NestedFit:
    """Fit `(terms | study) + (1 | study:centre)` from per-centre blocks.

    `blocks`: a CrossProducts whose groups are the centres (labels need only be unique within a
    study; blocks of the same (study, centre) are added), whose Z columns and random_terms are the
    study's terms (Z's intercept for `(1 | study/centre)`); `studies`: the study of each block;
    `centre_first_on_tie`: the centre term was written first (lme4's order when every study has
    one centre)."""
    if len(studies) != blocks.k:
        raise ValueError(f"{len(studies)} study labels for {blocks.k} centre blocks")
    blocks, studies = merge_centres(blocks, studies)
    layout = nested_layout(blocks, studies, centre_first_on_tie)
    if len(layout.studies) < 2:
        raise NotEstimable("a nested model needs more than one study")
    if blocks.n_total <= blocks.p:
        raise NotEstimable(f"{blocks.n_total} observations for {blocks.p} fixed effects")
    scaled = scaled_problem(blocks)  # merge_centres left the blocks in the layout's (sorted) order
    if np.linalg.matrix_rank(scaled.cp.xtx.sum(axis=0)) < blocks.p:
        raise NotEstimable("fixed-effects design is not of full rank")
    padded = study_blocks(scaled.cp, layout)
    padded_objective = _objective(padded, layout.padded_pattern, reml)
    expand = layout.expand

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = padded_objective(expand @ theta)
        return value, expand.T @ gradient

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # trial points with a non-finite deviance are rejected
        theta = _minimize_nested(objective, layout.compact_pattern, 1e-13 * (blocks.n_total + len(layout.centres)))
    return _nested_fit(blocks, scaled, layout, padded, theta, reml, singular_tolerance)


def _compact_map(scaled: Scaled, layout: NestedLayout) -> np.ndarray:
    """The z_map of the compact Lambda's rows: the study's columns' map, 1 for the centre's intercept."""
    out = np.eye(layout.q_study + 1)
    out[np.ix_(layout.study_positions, layout.study_positions)] = scaled.z_map
    return out


def _nested_fit(blocks, scaled, layout, padded, theta, reml, singular_tolerance) -> NestedFit:
    pieces = evaluate(padded, layout.padded_lambda(theta))
    dof = blocks.n_total - blocks.p if reml else blocks.n_total
    sigma2_internal = pieces.r2 / dof
    vcov_internal = sigma2_internal * np.linalg.inv(pieces.xvx)
    compact_map = _compact_map(scaled, layout)
    factor = np.linalg.solve(compact_map, relative_factor(theta, layout.compact_pattern))
    fit = NestedFit(
        blocks, reml, lme4_theta(factor, layout.compact_pattern), scaled.beta(pieces.beta),
        scaled.y_scale**2 * sigma2_internal, scaled.fixed_covariance(vcov_internal),
        scaled.deviance(_criterion(padded, pieces, reml), reml), scaled, layout.padded_lambda(theta),
        sigma2_internal, vcov_internal, [], singular_tolerance, layout, padded, compact_map, theta,
    )  # fmt: skip
    if fit.is_singular:
        fit.warnings.append(
            "singular fit: a random-effect variance is estimated at 0 or a correlation at +-1 (lme4 isSingular)"
        )
    return fit


def nested_cross_products(
    x, z, y, studies, centres, x_names, z_names, random_terms=()
) -> tuple[CrossProducts, tuple[str, ...]]:
    """Per-centre blocks from rows (z: the study term's columns) and the study of each block."""
    import pandas as pd

    pairs = pd.MultiIndex.from_arrays([pd.Series(studies).astype(str), pd.Series(centres).astype(str)])
    codes, labels = pd.factorize(pairs, sort=True)
    cp = cross_products(x, z, y, codes, x_names, z_names, random_terms)
    chosen = [labels[int(code)] for code in cp.groups]
    return replace(cp, groups=tuple(c for _, c in chosen)), tuple(s for s, _ in chosen)


def conditional_modes(fit: NestedFit) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """lme4's ranef(condVar = TRUE) from the blocks: (study modes (studies, q_s), their conditional
    covariances, centre modes (centres,), their conditional variances) in the data's units, in the
    order of fit.layout.studies and fit.layout.centres. Per study b = A Z'(y - X beta) and
    cov(b | y) = sigma2 A with A = Lambda M^-1 Lambda' (M = Lambda'Z'Z Lambda + I); studies are
    independent, so these are the blocks of lme4's joint conditional covariance."""
    padded, layout, scaled = fit.padded, fit.layout, fit.scaled
    pieces = evaluate(padded, fit.lam_internal)
    modes = np.einsum("kqr,kr->kq", pieces.a, padded.zty - padded.ztx @ pieces.beta)
    covariance = fit.sigma2_internal * pieces.a
    q, inverse, unit = layout.q_study, np.linalg.inv(scaled.z_map), scaled.y_scale
    study = unit * modes[:, :q] @ inverse.T
    study_covariance = unit**2 * inverse @ covariance[:, :q, :q] @ inverse.T
    slots = q + layout.slot
    centre = unit * modes[layout.study_of, slots]
    centre_variance = unit**2 * covariance[layout.study_of, slots, slots]
    return study, study_covariance, centre, centre_variance


# ------------------------------------------------------------------ from statistics entries (sites, bundles)


def centre_blocks(parts, random_slope: str | None = None) -> tuple[CrossProducts, tuple[str, ...]]:
    """Per-centre blocks from statistics entries: `parts` is a list of (study, centre, entry), each
    entry in models.statistics' format ({"names", "n", "reference", "products"}, the products of
    [X y] about the reference, X's first column the intercept); entries of the same (study, centre)
    (a centre's rows in two files or at two sites) are merged exactly (statistics.merge_entries),
    then every block is moved to one reference (statistics.combine). Returns the blocks (groups:
    the centres) and the study of each block."""
    from .statistics import combine, merge_entries

    grouped: dict[tuple[str, str], list[dict]] = {}
    for study, centre, entry in parts:
        grouped.setdefault((str(study), str(centre)), []).append(entry)
    keys = sorted(grouped)
    entries = [grouped[key][0] if len(grouped[key]) == 1 else merge_entries(grouped[key]) for key in keys]
    blocks = combine([(centre, entry) for (_, centre), entry in zip(keys, entries)], random_slope)
    return blocks, tuple(study for study, _ in keys)


def fit_nested_entries(
    parts, random_slope: str | None = None, reml: bool = True, singular_tolerance: float = SINGULAR_TOLERANCE
) -> NestedFit:
    """`(1 | study/centre)` (or with `(1 + random_slope | study)`) from per-centre statistics
    entries (see centre_blocks): the federated route's entry point for nested models."""
    blocks, studies = centre_blocks(parts, random_slope)
    return fit_nested(blocks, studies, reml=reml, singular_tolerance=singular_tolerance)
