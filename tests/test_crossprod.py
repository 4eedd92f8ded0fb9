"""cross_products (per-group sufficient statistics from rows), checked against the plain
definition (each group's rows selected by a mask, centred on the reference, multiplied) over
generated inputs: whatever the layout of the rows (grouped and sorted, grouped in another
order, interleaved), the labels' type, a column repeated, or a shift of a column, the
products are those of the definition, and a shift gives the same centred values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipdpool.models import crossprod
from ipdpool.models.crossprod import cross_products, reference_of_rows
from ipdpool.models.lmm import fit_lmm

PROPERTY = settings(
    max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
GRID = 2.0**-10


def generate(seed: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X = [1 x w], y, integer groups) on the 2^-10 grid, rows grouped and sorted."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(k) * 7 - 3, rng.integers(1, 40, k))
    n = len(groups)
    x = np.round(rng.normal(5, 3, n) / GRID) * GRID
    w = rng.binomial(1, 0.5, n).astype(float)
    w[0] = 0.0  # not the column of ones
    y = np.round(rng.normal(0, 2, n) / GRID) * GRID
    return np.column_stack([np.ones(n), x, w]), y, groups


def by_definition(x, y, groups, reference) -> tuple[list, np.ndarray]:
    """(sorted labels, products of [1, x1 - r1, x2 - r2, y - r3] per group)."""
    w = np.column_stack([x, y]) - reference
    labels = sorted(set(groups.tolist()))
    return labels, np.array([w[groups == g].T @ w[groups == g] for g in labels])


def assert_products(cp, x, y, groups) -> None:
    labels, expected = by_definition(x, y, groups, cp.reference)
    assert list(cp.groups) == [str(label) for label in labels]
    scale = np.sqrt(np.einsum("kii,kjj->kij", np.abs(expected), np.abs(expected)))
    np.testing.assert_array_less(np.abs(cp.products - expected), 1e-12 * scale + 1e-300)


layouts = st.sampled_from(["sorted", "grouped", "shuffled"])


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), layouts, st.booleans())
def test_products_equal_the_definition_in_any_row_layout(seed, k, layout, string_labels):
    x, y, groups = generate(seed, k)
    rng = np.random.default_rng(seed)
    if layout == "grouped":  # each group in one run, runs not in label order
        runs = rng.permutation(np.unique(groups))
        order = np.concatenate([np.flatnonzero(groups == g) for g in runs])
    else:
        order = rng.permutation(len(y)) if layout == "shuffled" else np.arange(len(y))
    x, y, groups = x[order], y[order], groups[order]
    labels = np.array([f"g{g:+04d}" for g in groups]) if string_labels else groups
    cp = cross_products(x, x[:, :2], y, labels, ["1", "x", "w"], ["1", "x"])
    assert (cp.x_index, cp.z_index, cp.y_index) == ((0, 1, 2), (0, 1), 3)
    assert cp.reference[0] == 0.0 and all(r in column for r, column in zip(cp.reference[1:], [x[:, 1], x[:, 2], y]))
    assert_products(cp, x, y, labels)


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(-(10**9), 10**9))
def test_a_shifted_column_gives_the_same_centred_products(seed, k, shift):
    x, y, groups = generate(seed, k)
    moved = x.copy()
    moved[:, 1] += shift  # exact: the data need at most 10 + 31 + 4 bits
    before = cross_products(x, x[:, :1], y, groups, ["1", "x", "w"], ["1"])
    after = cross_products(moved, moved[:, :1], y, groups, ["1", "x", "w"], ["1"])
    assert after.reference[1] == before.reference[1] + shift
    np.testing.assert_array_equal(after.products, before.products)


@pytest.mark.parametrize("row", [-1, 150])
def test_a_column_equal_to_another_in_some_rows_only_is_stored_separately(row):
    x, y, groups = generate(5, 20)
    assert len(y) > 300
    copy = x[:, 1].copy()
    copy[row] += 1.0  # equal in the first 64 rows
    design = np.column_stack([x, x[:, 1].copy(), copy])
    cp = cross_products(design, design[:, [1, 4]], y, groups, list("abcde"), ["d", "e"])
    assert cp.x_index == (0, 1, 2, 1, 3) and cp.z_index == (1, 3)
    labels, expected = by_definition(np.column_stack([x, copy]), y, groups, cp.reference)
    np.testing.assert_allclose(cp.products, expected, rtol=1e-12, atol=1e-9)


def test_the_reference_is_a_middle_value_of_the_column():
    column = np.r_[np.arange(100.0), 1e12]  # an outlier does not move it
    assert reference_of_rows(column) in column and 30 <= reference_of_rows(column) <= 70
    assert reference_of_rows(np.array([])) == 0.0


def test_missing_group_labels_are_refused():
    x, y, groups = generate(1, 3)
    labels = np.array(["a"] * len(y), dtype=object)
    labels[2] = None
    try:
        cross_products(x, x[:, :1], y, labels, ["1", "x", "w"], ["1"])
    except ValueError as error:
        assert "missing" in str(error)
    else:
        raise AssertionError("missing labels were accepted")


# ------------------------------------------------------------------ the raw path and its decision
# Large groups of sorted rows take crossprod's raw path (products about 0 moved to the
# reference), a group where a column's cancellation ratio exceeds RAW_CANCELLATION the
# centred path again. The tests below force the raw path on small data (RAW_PATH_ROWS = 1)
# and watch which groups are taken again.


@pytest.fixture
def raw_path(monkeypatch):
    """Forces the raw path; gives the list of (start, end) row ranges taken again centred (one
    list for all of a test's examples: each example clears it first)."""
    monkeypatch.setattr(crossprod, "RAW_PATH_ROWS", 1)
    again: list[tuple[int, int]] = []
    centred = crossprod._group_products

    def watched(columns, reference, bounds):
        again.append((int(bounds[0]), int(bounds[-1])))
        return centred(columns, reference, bounds)

    monkeypatch.setattr(crossprod, "_group_products", watched)
    return again


def cancellation(x, y, groups, reference) -> np.ndarray:
    """(groups, columns) ratio (sum w^2 + n r^2) / sum (w - r)^2 of each data column."""
    w = np.column_stack([x[:, 1:], y])
    r = reference[1:]
    return np.array(
        [((w[groups == g] ** 2).sum(0) + (groups == g).sum() * r**2) / ((w[groups == g] - r) ** 2).sum(0)
         for g in sorted(set(groups.tolist()))]
    )  # fmt: skip


offsets = st.lists(st.sampled_from([0.0, 1e2, -1e3, 1e6, 1e9]), min_size=3, max_size=3)


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.integers(1, 8), offsets, st.booleans())
def test_the_raw_path_keeps_a_group_only_where_it_loses_no_digits(raw_path, seed, k, offset, spread_by_group):
    """Data off any grid (the raw products round), a column with an offset up to 1e9 beside one
    without: the products equal the definition's to 1e-12 of their scale, whichever path each
    group took, and a group is taken again exactly where a column cancels beyond the bound
    (between half and twice it either path is right)."""
    raw_path.clear()
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 30, k)
    groups = np.repeat(np.arange(k), sizes)
    n = len(groups)
    # Group-level spreads from 1e-4 to 1e2: some groups sit close to the reference.
    spread = 10.0 ** rng.uniform(-4, 2, (k, 3))[groups] if spread_by_group else np.ones((n, 3))
    values = rng.normal(0, 1, (n, 3)) * spread + offset
    x, y = np.column_stack([np.ones(n), values[:, :2]]), values[:, 2]
    cp = cross_products(x, x[:, :1], y, groups, ["1", "x", "w"], ["1"])
    assert_products(cp, x, y, groups)
    ratio = cancellation(x, y, groups, cp.reference)
    again = {int(np.searchsorted(np.cumsum(sizes), start, side="right")) for start, _ in raw_path}
    limit = crossprod.RAW_CANCELLATION
    if raw_path and raw_path[0] == (0, n) and k > 1:  # the rows' sample sent every group to the centred path
        return
    assert {g for g in range(k) if ratio[g].max() > 2 * limit} <= again
    assert again <= {g for g in range(k) if not ratio[g].max() < limit / 2}


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.integers(3, 8), st.data())
def test_a_group_near_the_reference_alone_is_taken_again(raw_path, seed, k, data):
    """One group whose column sits at the reference (a study-level covariate equal to it, say)
    cancels every digit by the raw path: that group, and only it, is taken again centred."""
    raw_path.clear()
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(k), rng.integers(20, 40, k))
    n = len(groups)
    x = np.column_stack([np.ones(n), rng.normal(1.0, 1.0, n), rng.normal(0, 1, n)])
    y = rng.normal(0, 1, n)
    chosen = data.draw(st.integers(0, k - 1))
    x[groups == chosen, 1] = reference_of_rows(x[:, 1])
    x[groups == chosen, 1] = reference_of_rows(x[:, 1])  # the sample may hold the group's rows
    cp = cross_products(x, x[:, :1], y, groups, ["1", "x", "w"], ["1"])
    assert cp.reference[1] == x[groups == chosen, 1][0]
    starts = np.r_[0, np.cumsum(np.bincount(groups))]
    assert raw_path == [(starts[chosen], starts[chosen + 1])]
    assert_products(cp, x, y, groups)


def test_a_column_of_ones_but_in_its_last_row_is_found_by_the_raw_path(raw_path):
    x, y, groups = generate(3, 12)
    almost = np.ones(len(y))
    almost[-1] = 1.0 + 2.0**-52  # the raw path takes X's column on its first rows and checks every group
    design = np.column_stack([almost, x[:, 1:]])
    cp = cross_products(design, design[:, :1], y, groups, ["1", "x", "w"], ["1"])
    assert cp.x_index == (1, 2, 3) and cp.z_index == (1,)
    labels, expected = by_definition(np.column_stack([np.ones(len(y)), design]), y, groups, cp.reference)
    np.testing.assert_allclose(cp.products, expected, rtol=1e-12, atol=1e-9)
    # A column of Z read from other memory is compared in full at once.
    cp = cross_products(x, almost[:, None], y, groups, ["1", "x", "w"], ["1"])
    assert cp.x_index == (0, 1, 2) and cp.z_index == (3,)
    labels, expected = by_definition(np.column_stack([x, almost]), y, groups, cp.reference)
    np.testing.assert_allclose(cp.products, expected, rtol=1e-12, atol=1e-9)


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.integers(3, 8), offsets, st.booleans())
def test_fits_from_the_raw_path_equal_those_from_the_centred_path(monkeypatch, seed, k, offset, reml):
    """The raw path's rounding (up to RAW_CANCELLATION times the centred path's) does not show
    in the fit: theta, beta, sigma2 and the criterion agree to 1e-8, on data off any grid with
    columns at offsets of up to 1e9 and without (random intercept: what large groups are fitted
    with; the random slope's fit starts from the same products)."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(k), rng.integers(3, 15, k))
    n = len(groups)
    x = np.column_stack([np.ones(n), rng.normal(0, 1, n) + offset[0], rng.binomial(1, 0.5, n) + offset[1]])
    y = x[:, 1] - x[:, 2] + rng.normal(0, rng.uniform(0, 1.5), k)[groups] + rng.normal(0, 1, n) + offset[2]
    fits = []
    for rows in (1, 10**12):  # the raw path, then the centred path
        monkeypatch.setattr(crossprod, "RAW_PATH_ROWS", rows)
        fits.append(fit_lmm(cross_products(x, x[:, :1], y, groups, ["1", "x", "w"], ["1"]), reml=reml))
    raw, centred = fits
    assert abs(raw.deviance - centred.deviance) <= 1e-8 * max(1.0, abs(centred.deviance))
    np.testing.assert_allclose(raw.sigma2, centred.sigma2, rtol=1e-8)
    np.testing.assert_allclose(raw.theta, centred.theta, rtol=1e-8, atol=1e-8)
    se = np.sqrt(np.diag(centred.vcov))
    assert np.all(np.abs(raw.beta - centred.beta) <= 1e-8 * (np.abs(centred.beta) + se))
