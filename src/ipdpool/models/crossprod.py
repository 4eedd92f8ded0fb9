"""Per-group sufficient statistics of a linear mixed model with one grouping factor.

For y = X beta + Z b + e with b_g ~ N(0, D) independently per group and e ~ N(0, sigma2 I),
the (RE)ML likelihood depends on the data only through, per group g, the cross-products of
[X Z y]: n_g, X'X, X'Z, Z'Z, X'y, Z'y and y'y. They are kept as one (k, m, m) array over the
m distinct columns of [X Z y], with indices saying which columns are X, Z and y, so that a
random-effect column that is also a fixed-effect column is stored once. Fitting, inference and
federated bundles (a site sends these arrays, never rows) all start from this object.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class CrossProducts:
    groups: tuple[str, ...]
    n: np.ndarray  # (k,) rows per group
    products: np.ndarray  # (k, m, m): [columns]' [columns] per group
    x_index: tuple[int, ...]
    z_index: tuple[int, ...]
    y_index: int
    x_names: tuple[str, ...]
    z_names: tuple[str, ...]

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
    def n_total(self) -> int:
        return int(self.n.sum())

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
            tuple(labels), self.n[keep], self.products[keep], self.x_index, self.z_index, self.y_index,
            self.x_names, self.z_names,
        )  # fmt: skip


def _distinct_columns(x: np.ndarray, z: np.ndarray) -> tuple[list[np.ndarray], tuple[int, ...], tuple[int, ...]]:
    """Columns of [X Z] with Z columns equal to an X column stored once."""
    columns = [x[:, j] for j in range(x.shape[1])]
    z_index = []
    for j in range(z.shape[1]):
        same = next((i for i, c in enumerate(columns) if np.array_equal(c, z[:, j])), None)
        if same is None:
            columns.append(z[:, j])
            same = len(columns) - 1
        z_index.append(same)
    return columns, tuple(range(x.shape[1])), tuple(z_index)


def cross_products(x: np.ndarray, z: np.ndarray, y: np.ndarray, groups, x_names, z_names) -> CrossProducts:
    """Per-group cross-products, linear in rows: one weighted bincount per pair of columns.

    No (rows x m x m) intermediate and no sorted copy of the data are made, so the extra
    memory is a few columns whatever the number of groups.
    """
    x, z, y = np.asarray(x, float), np.asarray(z, float), np.asarray(y, float)
    codes, labels = pd.factorize(pd.Series(groups), sort=True)
    if (codes < 0).any():
        raise ValueError("group labels must not be missing")
    k = len(labels)
    columns, x_index, z_index = _distinct_columns(x, z)
    columns.append(y)
    m = len(columns)
    products = np.empty((k, m, m))
    for a in range(m):
        for b in range(a, m):
            products[:, a, b] = products[:, b, a] = np.bincount(codes, weights=columns[a] * columns[b], minlength=k)
    n = np.bincount(codes, minlength=k).astype(float)
    return CrossProducts(
        tuple(str(label) for label in labels), n, products, x_index, z_index, m - 1, tuple(x_names), tuple(z_names)
    )
