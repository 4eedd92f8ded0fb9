"""Per-group sufficient statistics of a linear mixed model with one grouping factor.

For y = X beta + Z b + e with b_g ~ N(0, D) independently per group and e ~ N(0, sigma2 I),
the (RE)ML likelihood depends on the data only through, per group g, the cross-products of
[1 X Z y]. They are kept as one (k, m, m) array over the m distinct columns (column 0 is
always the column of ones, so products[:, 0, 0] are the group sizes and products[:, 0, j]
the column sums), with indices saying which columns are X, Z and y, so that a column used
twice is stored once. Fitting, inference and federated bundles (a site sends these arrays,
never rows) all start from this object.

The products are taken about a reference value per column (0 for the column of ones), not
about 0: raw X'X and y'y of a column carrying a large offset (a calendar year, a Unix time,
a currency amount) cancel most of their digits when the model centres them again. From
rows (`cross_products`) the reference is a value of the column from the middle of a sample
of its rows (`reference_of_rows`); in statistics entries that are
released (models.statistics) it is the mean rounded to a power-of-two grid no finer than
the SD (`reference_value`): few significant bits, so w - r is exact for data near it and
the products keep every digit the data have. Products about one reference move to
another exactly by the parallel-axis formula (`move_reference`), which is how studies and
sites with their own references are combined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

# A random term: the positions (in z_index) of its columns and whether their covariance is
# unstructured (correlated, `(1 + x | g)`) or diagonal (`(1 + x || g)`).
RandomTerm = tuple[tuple[int, ...], bool]


def reference_value(mean: float, sd: float) -> float:
    """The mean rounded to the power-of-two grid of step 2^floor(log2 sd): close to the data
    (within one SD) and with few significant bits, so that data minus it is exact."""
    if not math.isfinite(mean) or mean == 0:
        return 0.0
    if sd > 0 and math.isfinite(sd):
        step = 2.0 ** math.floor(math.log2(sd))
    else:  # a constant column: 24 bits of its value
        step = 2.0 ** (math.floor(math.log2(abs(mean))) - 24)
    return round(mean / step) * step


def move_reference(products: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Products of [1, w - old] as products of [1, w - new] (parallel-axis formula):
    T' P T with T = I + e_0 d', d = old - new (exact when both lie on the data's grid).
    `products` may be one (m, m) matrix or (k, m, m) with `old` (k, m)."""
    d = np.asarray(old, float) - np.asarray(new, float)
    if not np.any(d):
        return products
    s = products[..., 0, :]
    n = products[..., 0, 0][..., None, None]
    outer = d[..., :, None] * d[..., None, :]
    return products + s[..., :, None] * d[..., None, :] + d[..., :, None] * s[..., None, :] + n * outer


def common_reference(products: np.ndarray, references: np.ndarray) -> np.ndarray:
    """The reference of the union of groups (order-invariant): reference_value of the pooled
    mean and SD, computed from each group's sums about its own reference."""
    n = products[:, 0, 0]
    total = float(n.sum())
    out = np.zeros(products.shape[1])
    for j in range(1, products.shape[1]):
        sums = products[:, 0, j]
        mean = math.fsum(np.concatenate([sums, n * references[:, j]])) / total
        offset = references[:, j] - mean
        squares = math.fsum(np.concatenate([products[:, j, j], 2 * offset * sums, n * offset**2]))
        out[j] = reference_value(mean, math.sqrt(max(squares, 0.0) / total))
    return out


@dataclass(frozen=True)
class CrossProducts:
    groups: tuple[str, ...]
    products: np.ndarray  # (k, m, m): [1, columns - reference]' [1, columns - reference] per group
    reference: np.ndarray  # (m,): column 0 (the ones) has reference 0
    x_index: tuple[int, ...]
    z_index: tuple[int, ...]
    y_index: int
    x_names: tuple[str, ...]
    z_names: tuple[str, ...]
    random_terms: tuple[RandomTerm, ...] = field(default=())

    def __post_init__(self):
        if not self.random_terms:  # default: one correlated term over every random column
            object.__setattr__(self, "random_terms", ((tuple(range(len(self.z_index))), True),))

    @property
    def k(self) -> int:
        return len(self.groups)

    @property
    def p(self) -> int:
        return len(self.x_index)

    @property
    def q(self) -> int:
        return len(self.z_index)

    @property
    def n(self) -> np.ndarray:
        return self.products[:, 0, 0]

    @property
    def n_total(self) -> int:
        return int(round(self.n.sum()))

    def block(self, rows: tuple[int, ...], columns: tuple[int, ...]) -> np.ndarray:
        return self.products[:, rows, :][:, :, columns]

    @cached_property
    def xtx(self) -> np.ndarray:
        return self.block(self.x_index, self.x_index)

    @cached_property
    def ztx(self) -> np.ndarray:
        return self.block(self.z_index, self.x_index)

    @cached_property
    def ztz(self) -> np.ndarray:
        return self.block(self.z_index, self.z_index)

    @cached_property
    def xty(self) -> np.ndarray:
        return self.products[:, self.x_index, self.y_index]

    @cached_property
    def zty(self) -> np.ndarray:
        return self.products[:, self.z_index, self.y_index]

    @cached_property
    def yty(self) -> np.ndarray:
        return self.products[:, self.y_index, self.y_index]

    @cached_property
    def totals(self) -> tuple[np.ndarray, np.ndarray, float]:
        """X'X, X'y and y'y summed over groups."""
        return self.xtx.sum(axis=0), self.xty.sum(axis=0), float(self.yty.sum())

    def subset(self, keep: np.ndarray) -> CrossProducts:
        """The same statistics for a subset of the groups (boolean mask or indices)."""
        keep = np.asarray(keep)
        labels = np.asarray(self.groups, dtype=object)[keep]
        return CrossProducts(
            tuple(labels), self.products[keep], self.reference, self.x_index, self.z_index, self.y_index,
            self.x_names, self.z_names, self.random_terms,
        )  # fmt: skip


def _distinct_columns(x: np.ndarray, z: np.ndarray) -> tuple[list[np.ndarray], tuple[int, ...], tuple[int, ...]]:
    """Columns of [1 X Z] with a column equal to an earlier one stored once (the ones as a
    broadcast view: nothing to allocate)."""
    columns = [np.broadcast_to(np.float64(1.0), (len(x),))]
    seen: dict[str, int] = {}  # the memory a column was read from -> its position

    def position(column: np.ndarray) -> int:
        memory = str(column.__array_interface__)
        if memory in seen:  # the same memory (z = x[:, :q]): no pass over it
            return seen[memory]
        # Most columns that differ do so in their first rows.
        candidates = (i for i, c in enumerate(columns) if np.array_equal(c[:64], column[:64]))
        same = next((i for i in candidates if np.array_equal(columns[i], column)), None)
        if same is None:
            columns.append(column)
            same = len(columns) - 1
        seen[memory] = same
        return same

    x_index = tuple(position(x[:, j]) for j in range(x.shape[1]))
    z_index = tuple(position(z[:, j]) for j in range(z.shape[1]))
    return columns, x_index, z_index


def _group_runs(groups) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray | None]:
    """(order, bounds, labels, arrangement): rows taken in `order` (None: as they are) hold
    each group in one run, run g in rows bounds[g]:bounds[g + 1], with label labels[g];
    `arrangement` (None: already so) puts the runs in sorted label order. Rows that already
    come group by group, the usual layout, cost one comparison per row and no sort. Integer
    labels by numpy alone: pandas (imported only for other labels) costs a fit on a few
    thousand rows more than the fit itself."""
    values = np.asarray(groups)
    if values.dtype.kind not in "iub":
        import pandas as pd

        codes, levels = pd.factorize(pd.Series(groups), sort=True)
        if (codes < 0).any():
            raise ValueError("group labels must not be missing")
        order, bounds, run_codes, arrangement = _group_runs(codes)
        return order, bounds, np.asarray(levels)[run_codes], arrangement
    if len(values) == 0:
        return None, np.zeros(1, np.intp), values, None
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    labels = values[np.r_[0, change]]
    bounds = np.r_[0, change, len(values)]
    if np.all(labels[1:] > labels[:-1]):
        return None, bounds, labels, None
    arrangement = np.argsort(labels, kind="stable")
    if np.all(labels[arrangement][1:] > labels[arrangement][:-1]):  # one run per group
        return None, bounds, labels[arrangement], arrangement
    order = np.argsort(values, kind="stable")
    _, bounds, labels, _ = _group_runs(values[order])
    return order, bounds, labels, None


def reference_of_rows(column: np.ndarray) -> float:
    """A reference for products taken from rows: the middle value of up to 65 evenly spaced
    rows. A value of the column itself is on the data's grid, so w - r is exact for data near
    it and data shifted by c get reference r + c and the same centred values; the middle of a
    sample stays within a few SDs of the mean (an outlier cannot move it), which is all that
    precision needs, and it costs no pass over the data as the mean does."""
    if len(column) == 0:
        return 0.0
    sample = np.sort(column[:: max(1, len(column) // 64)])
    return float(sample[(len(sample) - 1) // 2])


ROWS_PER_BLOCK = 16_384  # centred rows held at once: a block stays in the processor's cache


def _group_products(columns: list[np.ndarray], reference: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """[1, w - reference]'[1, w - reference] per run of rows: the centred columns of a block of
    consecutive runs are written into one small buffer (column by column, contiguous) and each
    run's product taken from it, so the data are read once and no centred copy of all rows is
    made."""
    m, lengths = len(columns), np.diff(bounds)
    k = len(lengths)
    products = np.empty((k, m, m))
    if k == 0:
        return products
    size = max(int(lengths.max()), min(ROWS_PER_BLOCK, int(bounds[-1])))
    buffer = np.empty((m, size))
    buffer[0] = 1.0
    group = 0
    while group < k:
        start = bounds[group]
        last = max(group + 1, int(np.searchsorted(bounds, start + size, side="right")) - 1)
        block = buffer[:, : bounds[last] - start]
        for j in range(1, m):
            np.subtract(columns[j][start : bounds[last]], reference[j], out=block[j])
        for g in range(group, last):
            part = block[:, bounds[g] - start : bounds[g + 1] - start]
            products[g] = part @ part.T
        group = last
    return products


def cross_products(
    x: np.ndarray, z: np.ndarray, y: np.ndarray, groups, x_names, z_names, random_terms: tuple[RandomTerm, ...] = ()
) -> CrossProducts:
    """Per-group cross-products about the columns' references (`reference_of_rows`): one pass
    over rows in group order (sorted first when they are not), one small matrix product per
    group, which is the one-pass floor of this computation."""
    x, z, y = np.asarray(x, float), np.asarray(z, float), np.asarray(y, float)
    order, bounds, labels, arrangement = _group_runs(groups)
    columns, x_index, z_index = _distinct_columns(x, z)
    columns.append(y)
    reference = np.array([0.0] + [reference_of_rows(c) for c in columns[1:]])
    if order is not None:
        columns = [c[order] for c in columns]
    products = _group_products(columns, reference, bounds)
    if arrangement is not None:
        products = products[arrangement]
    return CrossProducts(
        tuple(str(label) for label in labels), products, reference, x_index, z_index, len(columns) - 1,
        tuple(x_names), tuple(z_names), tuple(random_terms),
    )  # fmt: skip
