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
sites with their own references are combined. Large groups of rows that come group by group
are multiplied as they lie (about 0) and moved to the reference by that formula, which is
exact only where little cancels: a group where it would cost more than 6 bits is taken
again centred (RAW_CANCELLATION).
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


def _distinct_columns(
    x: np.ndarray, z: np.ndarray, ones_proved_later: bool = False
) -> tuple[list[np.ndarray], tuple[int, ...], tuple[int, ...]]:
    """Columns of [1 X Z] with a column equal to an earlier one stored once (the ones as a
    broadcast view: nothing to allocate). With `ones_proved_later`, a column of X whose first
    64 rows are ones is taken for the column of ones unread beyond them: the caller proves the
    rest (`_raw_group_products` compares it group by group while the group is in cache)."""
    columns = [np.broadcast_to(np.float64(1.0), (len(x),))]
    seen: dict[str, int] = {}  # the memory a column was read from -> its position

    def position(column: np.ndarray, unproved_ones: bool) -> int:
        memory = str(column.__array_interface__)
        if memory in seen:  # the same memory (z = x[:, :q]): no pass over it
            return seen[memory]
        # Most columns that differ do so in their first rows.
        candidates = (i for i, c in enumerate(columns) if np.array_equal(c[:64], column[:64]))
        same = next((i for i in candidates if (i == 0 and unproved_ones) or np.array_equal(columns[i], column)), None)
        if same is None:
            columns.append(column)
            same = len(columns) - 1
        seen[memory] = same
        return same

    x_index = tuple(position(x[:, j], ones_proved_later) for j in range(x.shape[1]))
    z_index = tuple(position(z[:, j], False) for j in range(z.shape[1]))
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


def _row_sample(column: np.ndarray) -> np.ndarray:
    """Up to 65 evenly spaced rows of the column, sorted."""
    return np.sort(column[:: max(1, len(column) // 64)])


def reference_of_rows(column: np.ndarray) -> float:
    """A reference for products taken from rows: the middle value of up to 65 evenly spaced
    rows. A value of the column itself is on the data's grid, so w - r is exact for data near
    it and data shifted by c get reference r + c and the same centred values; the middle of a
    sample stays within a few SDs of the mean (an outlier cannot move it), which is all that
    precision needs, and it costs no pass over the data as the mean does."""
    if len(column) == 0:
        return 0.0
    sample = _row_sample(column)
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


# The raw path (`_raw_group_products`) forms products about 0 and moves them to the reference
# (parallel-axis formula). That loses digits where a column's values are large beside their
# spread about the reference: the products about r come out with a relative error of up to
# about 2 eps rho, rho = (sum w^2 + n r^2) / sum (w - r)^2 (the rounding of the raw products,
# of size eps sum w^2, and of the shift's terms r sum w and n r^2, against what remains), and
# the off-diagonal products with 2 eps sqrt(rho_i rho_j) of sqrt(P_ii P_jj) (Cauchy-Schwarz).
# A group is kept only where every column has rho <= RAW_CANCELLATION, i.e. at most 6 of the
# 53 bits lost: its products then differ from the centred path's by rounding (fits from the two
# paths, which the property tests compare to 1e-8, differed by at most 3e-14 on 400 generated
# data sets); any other group is taken again by the centred path, so a column with a large
# offset (a year, a Unix time) costs no accuracy.
RAW_CANCELLATION = 64.0
# Mean rows per group from which the raw path pays: it calls BLAS a few times per group, the
# centred path once per group after a copy of each block of rows (measured: the raw path takes
# 3x the time at 100 rows per group, 1.15x at 2,000, 0.9x at 4,000, 0.6x at 20,000).
RAW_PATH_ROWS = 3072


def _raw_group_products(
    x: np.ndarray, columns: list[np.ndarray], x_index: tuple[int, ...], bounds: np.ndarray
) -> np.ndarray | None:
    """[1, w]'[1, w] per run of rows, read from the rows as they lie (no centred copy): for each
    stored column, one matrix-vector product with the group's rows of X gives its products with
    every column of X, the column of ones among them (its sums); the columns outside X (y, Z's
    own) are multiplied with each other directly. The column of ones, which _distinct_columns
    took on its first rows, is compared in full here, group by group; None if it is not ones."""
    m, k, p = len(columns), len(bounds) - 1, x.shape[1]
    rows_of_x = slice(0, p) if x_index == tuple(range(p)) else np.asarray(x_index)
    # Compared as bit patterns (1.0 has one; faster than comparing floats).
    bits = [x.view(np.int64)[:, j] for j, position in enumerate(x_index) if position == 0]
    one = np.float64(1.0).view(np.int64)
    outside = [d for d in range(1, m) if d not in x_index]
    products = np.empty((k, m, m))
    pairs = [(d, e) for i, d in enumerate(outside) for e in outside[i:]]
    for g, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        rows = x[a:b]
        for d in range(1, m):
            products[g, rows_of_x, d] = rows.T @ columns[d][a:b]
        for column in bits:  # the rows are in cache now
            if not (column[a:b] == one).all():
                return None
        for d, e in pairs:
            products[g, d, e] = columns[d][a:b] @ columns[e][a:b]
    products[:, 0, 0] = np.diff(bounds)
    # Each pair was formed once: in the column of a product of X's rows, or among the others.
    formed = np.zeros((m, m), bool)
    formed[np.ix_(x_index, np.arange(1, m))] = True
    formed[np.ix_(outside, outside)] = np.triu(np.ones((len(outside), len(outside)), bool))
    return np.where(formed, products, np.swapaxes(products, 1, 2))


def _fast_enough(columns: list[np.ndarray], reference: np.ndarray) -> bool:
    """Whether the raw path is likely to keep every group: the cancellation ratio of each column
    on the rows that gave its reference (a column with a large offset goes to the centred path
    at once instead of group by group)."""
    for column, r in zip(columns[1:], reference[1:]):
        sample = _row_sample(column)
        spread = float(np.sum((sample - r) ** 2))
        if not spread * RAW_CANCELLATION >= 4 * float(np.sum(sample**2) + len(sample) * r**2):
            return False
    return True


def _products_about(
    x: np.ndarray, columns: list[np.ndarray], x_index: tuple[int, ...], reference: np.ndarray, bounds: np.ndarray
) -> np.ndarray | None:
    """Products about the reference by the raw path, groups that cancel too much (see
    RAW_CANCELLATION) taken again by the centred path; None if the column of ones is not."""
    raw = _raw_group_products(x, columns, x_index, bounds)
    if raw is None:
        return None
    products = move_reference(raw, np.zeros_like(reference), reference)
    n = raw[:, 0, :1]
    kept = (
        np.diagonal(products, axis1=1, axis2=2) * RAW_CANCELLATION
        >= np.diagonal(raw, axis1=1, axis2=2) + n * reference**2
    )
    for g in np.flatnonzero(~np.all(kept, axis=1)):
        products[g] = _group_products(columns, reference, bounds[g : g + 2])[0]
    return products


def cross_products(
    x: np.ndarray, z: np.ndarray, y: np.ndarray, groups, x_names, z_names, random_terms: tuple[RandomTerm, ...] = ()
) -> CrossProducts:
    """Per-group cross-products about the columns' references (`reference_of_rows`): one pass
    over rows in group order (sorted first when they are not), a few small matrix products per
    group, which is the one-pass floor of this computation. Large groups of rows that come
    group by group take the raw path where it loses nothing (RAW_CANCELLATION), the others the
    centred path (`_group_products`)."""
    x, z, y = np.asarray(x, float), np.asarray(z, float), np.asarray(y, float)
    order, bounds, labels, arrangement = _group_runs(groups)
    raw_path = order is None and len(bounds) > 1 and bounds[-1] >= RAW_PATH_ROWS * (len(bounds) - 1)
    columns, x_index, z_index = _distinct_columns(x, z, ones_proved_later=raw_path)
    columns.append(y)
    reference = np.array([0.0] + [reference_of_rows(c) for c in columns[1:]])
    products = None
    if raw_path and 0 in x_index and _fast_enough(columns, reference):
        products = _products_about(x, columns, x_index, reference, bounds)
    if products is None:
        if raw_path:  # the centred path compares a column with the ones in full before taking it for them
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
