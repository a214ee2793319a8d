r"""Reusable residual types: linear models, curve fits, 2-D geometry and the classic test functions.

Every type but ``BARD`` is written as a residual function of one instance (:func:`sparselm.residual`):
its kernels and exact Jacobian are generated and cached on disk. Residuals are raw model -
observation values, in the units of the observation; Sigma weighting and robust losses are the
evaluator's business.

================== ===== ======== ==== ======================================================== =====
type               m     blocks   data residual                                                 J
================== ===== ======== ==== ======================================================== =====
``linear(m, k)``   m     (k,)     mk+m r = A x - b; data row = [A row-major (m*k), b (m)]       yes
``LINEAR``         1     (2,)     3    ``linear(1, 2)``: straight line r = x0 + x1 t - y,       yes
                                       data row ``(1, t, y)`` (see :func:`linear_data`)
``EXPONENTIAL``    1     (2,)     2    r = a exp(-b t) - y; x = (a, b), data (t, y)             yes
``GAUSSIAN``       1     (3,)     2    r = A exp(-(t - mu)^2 / (2 s^2)) - y; x = (A, mu, s)     yes
``DISTANCE_2D``    1     (2, 2)   1    r = |p - q| - d; two 2-D points p, q, data (d,)          yes
``OFFSET_2D``      2     (2, 2)   2    r = q - p - d; measured displacement d of q from p       yes
``prior(k)``       k     (k,)     k    r = x - x_prior; data row = x_prior                      yes
``ROSENBROCK``     2     (2,)     0    r = (10 (x1 - x0^2), 1 - x0)                             yes
``POWELL``         4     (4,)     0    Powell's singular function (below)                       yes
``FREUDENSTEIN``   2     (2,)     0    Freudenstein and Roth (below)                            yes
``BARD``           1     (3,)     4    r = x0 + u / (v x1 + w x2) - y; data (u, v, w, y)        no
``MEYER``          1     (3,)     2    r = x0 exp(x1 / (t + x2)) - y; data (t, y)               yes
================== ===== ======== ==== ======================================================== =====

The classic functions are those of Moré, Garbow and Hillstrom, "Testing unconstrained optimization
software", ACM TOMS 7 (1981) (problems 1, 13, 2, 8 and 10); cost = 1/2 sum r^2, so the minima
below are half the sums of squares quoted there:

* Rosenbrock, x0 = (-1.2, 1): minimum 0 at (1, 1). One instance over one block of 2; n
  instances over n blocks give the extended Rosenbrock function.
* Powell singular, x0 = (3, -1, 0, 1): r = (x0 + 10 x1, sqrt5 (x2 - x3), (x1 - 2 x2)^2,
  sqrt10 (x0 - x3)^2); minimum 0 at 0, where J is singular (LM converges only linearly).
* Freudenstein-Roth, x0 = (0.5, -2): r = (-13 + x0 + ((5 - x1) x1 - 2) x1,
  -29 + x0 + ((x1 + 1) x1 - 14) x1); global minimum 0 at (5, 4), local minimum 24.4921 (sum of
  squares 48.9842) at (11.41, -0.8968), where LM started at x0 usually ends.
* Bard, x0 = (1, 1, 1), 15 observations :data:`BARD_DATA`: minimum 4.10744e-3 (sum of squares
  8.21487e-3). Given without a Jacobian kernel: it is differentiated numerically.
* Meyer, x0 = (0.02, 4000, 250), 16 observations :data:`MEYER_DATA`: minimum 43.9729 (sum of
  squares 87.9458) at (0.0056, 6181, 345); badly scaled (a test for Marquardt scaling).

All kernels are compiled on first use and cached on disk (see :mod:`sparselm.residuals.kernel_cache`).
``BARD`` keeps a hand-written residual kernel without a Jacobian: it is the library's example of a
type differentiated numerically (:mod:`sparselm.residuals.numeric`).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import njit, prange

from sparselm import math as sm
from sparselm.residuals.base import ResidualType
from sparselm.residuals.function import residual

__all__ = [
    "linear", "linear_data", "LINEAR", "EXPONENTIAL", "GAUSSIAN", "DISTANCE_2D", "OFFSET_2D", "prior", "PRIOR_2D",
    "ROSENBROCK", "POWELL", "FREUDENSTEIN", "BARD", "MEYER", "BARD_DATA", "MEYER_DATA", "CLASSIC_STARTS",
]


@lru_cache(maxsize=None)
def linear(m: int, k: int) -> ResidualType:
    """The linear residual r = A x - b: m rows over one block of k; data row = [A.ravel(), b].

    Build the data with :func:`linear_data`. One type object per (m, k).
    """
    m, k = int(m), int(k)

    def linear_residual(x, row):
        return [sum(row[r * k + c] * x[c] for c in range(k)) - row[m * k + r] for r in range(m)]

    return residual(m, (k,), m * k + m, name=f"linear_{m}x{k}")(linear_residual)


def linear_data(a, b) -> np.ndarray:
    """Data rows for :func:`linear`: ``a`` (n, m, k) and ``b`` (n, m) -> (n, m*k + m)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = a.shape[0]
    return np.ascontiguousarray(np.concatenate([a.reshape(n, -1), b.reshape(n, -1)], axis=1))


#: One row over a block of two: the straight line r = x0 + x1 t - y has data rows (1, t, y).
LINEAR = linear(1, 2)


def _exponential(x, ty):
    """y = a exp(-b t): block (a, b) (a in units of y, b in 1/units of t), data (t, y)."""
    return [x[0] * sm.exp(-x[1] * ty[0]) - ty[1]]


EXPONENTIAL = residual(1, (2,), 2, name="exponential")(_exponential)


def _gaussian(x, ty):
    """y = A exp(-(t - mu)^2 / (2 s^2)): block (A, mu, s) (A in units of y; mu, s in units of t)."""
    u = (ty[0] - x[1]) / x[2]
    return [x[0] * sm.exp(-0.5 * u * u) - ty[1]]


GAUSSIAN = residual(1, (3,), 2, name="gaussian")(_gaussian)


def _distance_2d(p, q, measured):
    """r = |p - q| - d between two 2-D points (slots may refer to the same or different groups); data (d,)
    the measured distance, in the points' length unit. The Jacobian is 0 where p = q (|p - q| has no
    derivative there)."""
    dx = p[0] - q[0]
    dy = p[1] - q[1]
    s = dx * dx + dy * dy
    return [sm.where(s > 0.0, sm.sqrt(s), 0.0) - measured[0]]


DISTANCE_2D = residual(1, (2, 2), 1, name="distance_2d")(_distance_2d)


def _offset_2d(p, q, measured):
    """r = q - p - d: the displacement of 2-D point q from point p against its measurement d (data, 2
    numbers in the points' length unit). Linear: the odometry / relative-position edge of a graph."""
    return [q[0] - p[0] - measured[0], q[1] - p[1] - measured[1]]


OFFSET_2D = residual(2, (2, 2), 2, name="offset_2d")(_offset_2d)


@lru_cache(maxsize=None)
def prior(k: int) -> ResidualType:
    """r = x - x_prior over one block of k; data row = x_prior (units of x)."""
    k = int(k)

    def prior_residual(x, x_prior):
        return [x[c] - x_prior[c] for c in range(k)]

    return residual(k, (k,), k, name=f"prior_{k}")(prior_residual)


PRIOR_2D = prior(2)


# ---------------------------------------------------------------------------------------------
# Classic test functions (Moré, Garbow, Hillstrom 1981), each over one parameter block.

def _rosenbrock(x):
    """Rosenbrock: r = (10 (x1 - x0^2), 1 - x0); minimum 0 at (1, 1)."""
    return [10.0 * (x[1] - x[0] * x[0]), 1.0 - x[0]]


ROSENBROCK = residual(2, (2,), 0, name="rosenbrock")(_rosenbrock)

_SQRT5 = math.sqrt(5.0)
_SQRT10 = math.sqrt(10.0)


def _powell_singular(x):
    """Powell's singular function (4 residuals over a block of 4); minimum 0 at 0, singular J there."""
    u = x[1] - 2.0 * x[2]
    v = x[0] - x[3]
    return [x[0] + 10.0 * x[1], _SQRT5 * (x[2] - x[3]), u * u, _SQRT10 * v * v]


POWELL = residual(4, (4,), 0, name="powell_singular")(_powell_singular)


def _freudenstein_roth(x):
    """Freudenstein and Roth (2 residuals over a block of 2); global minimum 0 at (5, 4), local minimum
    24.4921 at (11.41, -0.8968)."""
    x0, x1 = x[0], x[1]
    return [-13.0 + x0 + ((5.0 - x1) * x1 - 2.0) * x1, -29.0 + x0 + ((x1 + 1.0) * x1 - 14.0) * x1]


FREUDENSTEIN = residual(2, (2,), 0, name="freudenstein_roth")(_freudenstein_roth)


@njit(parallel=True, cache=True)
def _bard_residuals(params, index, data, residuals):
    x = params[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        residuals[i, 0] = x[b, 0] + data[i, 0] / (data[i, 1] * x[b, 1] + data[i, 2] * x[b, 2]) - data[i, 3]


#: Bard: r = x0 + u / (v x1 + w x2) - y, data (u, v, w, y) = rows of BARD_DATA. No Jacobian
#: kernel: the evaluator differentiates it numerically.
BARD = ResidualType("bard", 1, (3,), 4, _bard_residuals, None)


def _meyer(x, ty):
    """Meyer: r = x0 exp(x1 / (t + x2)) - y, data (t, y) = rows of MEYER_DATA (a thermistor's resistance y,
    in ohms, against a temperature-like abscissa t)."""
    return [x[0] * sm.exp(x[1] / (ty[0] + x[2])) - ty[1]]


MEYER = residual(1, (3,), 2, name="meyer")(_meyer)

_BARD_Y = (0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10, 4.39)
#: Bard's 15 observations as data rows (u, v, w, y): u = i, v = 16 - i, w = min(u, v), i = 1..15.
BARD_DATA = np.array([(i, 16 - i, min(i, 16 - i), y) for i, y in enumerate(_BARD_Y, start=1)], dtype=np.float64)

_MEYER_Y = (34780.0, 28610.0, 23650.0, 19630.0, 16370.0, 13720.0, 11540.0, 9744.0, 8261.0, 7030.0,
            6005.0, 5147.0, 4427.0, 3820.0, 3307.0, 2872.0)
#: Meyer's 16 observations as data rows (t, y), t = 45 + 5 i, i = 1..16.
MEYER_DATA = np.array([(45.0 + 5.0 * i, y) for i, y in enumerate(_MEYER_Y, start=1)], dtype=np.float64)

#: The standard starting points of the classic functions.
CLASSIC_STARTS = {
    "rosenbrock": np.array([-1.2, 1.0]),
    "powell_singular": np.array([3.0, -1.0, 0.0, 1.0]),
    "freudenstein_roth": np.array([0.5, -2.0]),
    "bard": np.array([1.0, 1.0, 1.0]),
    "meyer": np.array([0.02, 4000.0, 250.0]),
}
