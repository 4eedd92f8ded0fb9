"""Numerical derivatives by Richardson extrapolation of central differences.

lmerTest takes the Jacobian of cov(beta) numerically with numDeriv's `jacobian` (relative
step 1e-4, four extrapolation levels, step halved at each; Gilbert & Varadhan, numDeriv).
Its Satterthwaite df are defined by those derivatives, boundary points included (a variance
parameter at 0 is stepped to both sides), so the same scheme is used here, also for the
Hessian as the Jacobian of the deviance's analytic gradient (lmerTest differences values
with numDeriv's `hessian`, which loses half the digits where theta is small): scipy has no
Richardson derivative, and numdifftools would bring another step rule.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ZERO_TOLERANCE = np.sqrt(np.finfo(float).eps / 7e-7)
LEVELS = 4


def _steps(x: np.ndarray, relative: float, absolute: float = 1e-4) -> np.ndarray:
    return np.abs(relative * x) + absolute * (np.abs(x) < ZERO_TOLERANCE)


def _extrapolate(approximations: list) -> np.ndarray:
    values = [np.asarray(a, float) for a in approximations]
    for m in range(1, LEVELS):
        values = [(values[j + 1] * 4**m - values[j]) / (4**m - 1) for j in range(LEVELS - m)]
    return values[0]


def _unit(n: int, i: int) -> np.ndarray:
    e = np.zeros(n)
    e[i] = 1.0
    return e


def jacobian(func: Callable[[np.ndarray], np.ndarray], x: np.ndarray, relative: float = 1e-4) -> list[np.ndarray]:
    """Derivative of an array-valued function along each coordinate (numDeriv::jacobian)."""
    x = np.asarray(x, float)
    n = len(x)
    h0 = _steps(x, relative)
    out = []
    for i in range(n):
        h, approximations = h0.copy(), []
        for _ in range(LEVELS):
            step = _unit(n, i) * h
            approximations.append((func(x + step) - func(x - step)) / (2 * h[i]))
            h = h / 2
        out.append(_extrapolate(approximations))
    return out
