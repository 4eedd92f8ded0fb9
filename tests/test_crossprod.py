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

from ipdpool.models.crossprod import cross_products, reference_of_rows

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
