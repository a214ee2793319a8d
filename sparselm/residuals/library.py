r"""Reusable residual types: linear models, curve fits, 2-D geometry and the classic test functions.

Every type follows the kernel contract of :mod:`sparselm.residuals.base`: the kernels take
``(params, index, data, residuals[, jacobians])``, loop over the instances of a residual group with
``prange`` and write into the preallocated arrays. Residuals are raw model - observation values, in
the units of the observation; Sigma weighting and robust losses are the evaluator's business.

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

All kernels are compiled on first use (``cache=True``, so later processes load them from disk).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import njit, prange

from sparselm.residuals.base import ResidualType

__all__ = [
    "linear", "linear_data", "LINEAR", "EXPONENTIAL", "GAUSSIAN", "DISTANCE_2D", "OFFSET_2D", "prior", "PRIOR_2D",
    "ROSENBROCK", "POWELL", "FREUDENSTEIN", "BARD", "MEYER", "BARD_DATA", "MEYER_DATA", "CLASSIC_STARTS",
]


# ---------------------------------------------------------------------------------------------
# Linear: r = A x - b with A (m, k) and b (m,) per instance.

@njit(parallel=True, cache=True)
def _linear_residuals(params, index, data, residuals):
    x = params[0]
    n, m = residuals.shape
    k = x.shape[1]
    for i in prange(n):
        b = index[i, 0]
        for r in range(m):
            s = -data[i, m * k + r]
            for c in range(k):
                s += data[i, r * k + c] * x[b, c]
            residuals[i, r] = s


@njit(parallel=True, cache=True)
def _linear_jacobians(params, index, data, residuals, jacobians):
    x = params[0]
    jac = jacobians[0]
    n, m = residuals.shape
    k = x.shape[1]
    for i in prange(n):
        b = index[i, 0]
        for r in range(m):
            s = -data[i, m * k + r]
            for c in range(k):
                a = data[i, r * k + c]
                s += a * x[b, c]
                jac[i, r, c] = a
            residuals[i, r] = s


@lru_cache(maxsize=None)
def linear(m: int, k: int) -> ResidualType:
    """The linear residual r = A x - b: m rows over one block of k; data row = [A.ravel(), b].

    Build the data with :func:`linear_data`. The same two kernels serve every (m, k).
    """
    m, k = int(m), int(k)
    return ResidualType(f"linear_{m}x{k}", m, (k,), m * k + m, _linear_residuals, _linear_jacobians)


def linear_data(a, b) -> np.ndarray:
    """Data rows for :func:`linear`: ``a`` (n, m, k) and ``b`` (n, m) -> (n, m*k + m)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = a.shape[0]
    return np.ascontiguousarray(np.concatenate([a.reshape(n, -1), b.reshape(n, -1)], axis=1))


#: One row over a block of two: the straight line r = x0 + x1 t - y has data rows (1, t, y).
LINEAR = linear(1, 2)


# ---------------------------------------------------------------------------------------------
# Curve fitting: exponential decay and Gaussian peak, one observation (t, y) per instance.

@njit(parallel=True, cache=True)
def _exponential_residuals(params, index, data, residuals):
    x = params[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        residuals[i, 0] = x[b, 0] * math.exp(-x[b, 1] * data[i, 0]) - data[i, 1]


@njit(parallel=True, cache=True)
def _exponential_jacobians(params, index, data, residuals, jacobians):
    x = params[0]
    jac = jacobians[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        t = data[i, 0]
        e = math.exp(-x[b, 1] * t)
        residuals[i, 0] = x[b, 0] * e - data[i, 1]
        jac[i, 0, 0] = e
        jac[i, 0, 1] = -x[b, 0] * t * e


#: y = a exp(-b t): block (a, b) (a in units of y, b in 1/units of t), data (t, y).
EXPONENTIAL = ResidualType("exponential", 1, (2,), 2, _exponential_residuals, _exponential_jacobians)


@njit(parallel=True, cache=True)
def _gaussian_residuals(params, index, data, residuals):
    x = params[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        u = (data[i, 0] - x[b, 1]) / x[b, 2]
        residuals[i, 0] = x[b, 0] * math.exp(-0.5 * u * u) - data[i, 1]


@njit(parallel=True, cache=True)
def _gaussian_jacobians(params, index, data, residuals, jacobians):
    x = params[0]
    jac = jacobians[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        amp, s = x[b, 0], x[b, 2]
        u = (data[i, 0] - x[b, 1]) / s
        g = math.exp(-0.5 * u * u)
        residuals[i, 0] = amp * g - data[i, 1]
        jac[i, 0, 0] = g
        jac[i, 0, 1] = amp * g * u / s          # d/dmu: u' = -1/s
        jac[i, 0, 2] = amp * g * u * u / s      # d/ds:  u' = -u/s


#: y = A exp(-(t - mu)^2 / (2 s^2)): block (A, mu, s) (A in units of y; mu, s in units of t).
GAUSSIAN = ResidualType("gaussian", 1, (3,), 2, _gaussian_residuals, _gaussian_jacobians)


# ---------------------------------------------------------------------------------------------
# 2-D geometry: distance between two points, prior on a block.

@njit(parallel=True, cache=True)
def _distance_residuals(params, index, data, residuals):
    p, q = params[0], params[1]
    for i in prange(index.shape[0]):
        a, b = index[i, 0], index[i, 1]
        dx = p[a, 0] - q[b, 0]
        dy = p[a, 1] - q[b, 1]
        residuals[i, 0] = math.sqrt(dx * dx + dy * dy) - data[i, 0]


@njit(parallel=True, cache=True)
def _distance_jacobians(params, index, data, residuals, jacobians):
    p, q = params[0], params[1]
    jp, jq = jacobians[0], jacobians[1]
    for i in prange(index.shape[0]):
        a, b = index[i, 0], index[i, 1]
        dx = p[a, 0] - q[b, 0]
        dy = p[a, 1] - q[b, 1]
        d = math.sqrt(dx * dx + dy * dy)
        residuals[i, 0] = d - data[i, 0]
        ux, uy = (dx / d, dy / d) if d > 0.0 else (0.0, 0.0)  # unit vector p - q (0 where undefined)
        jp[i, 0, 0] = ux
        jp[i, 0, 1] = uy
        jq[i, 0, 0] = -ux
        jq[i, 0, 1] = -uy


#: r = |p - q| - d between two 2-D points (slots may refer to the same or different groups);
#: data (d,) the measured distance, in the points' length unit.
DISTANCE_2D = ResidualType("distance_2d", 1, (2, 2), 1, _distance_residuals, _distance_jacobians)


@njit(parallel=True, cache=True)
def _offset_residuals(params, index, data, residuals):
    p, q = params[0], params[1]
    for i in prange(index.shape[0]):
        a, b = index[i, 0], index[i, 1]
        residuals[i, 0] = q[b, 0] - p[a, 0] - data[i, 0]
        residuals[i, 1] = q[b, 1] - p[a, 1] - data[i, 1]


@njit(parallel=True, cache=True)
def _offset_jacobians(params, index, data, residuals, jacobians):
    p, q = params[0], params[1]
    jp, jq = jacobians[0], jacobians[1]
    for i in prange(index.shape[0]):
        a, b = index[i, 0], index[i, 1]
        residuals[i, 0] = q[b, 0] - p[a, 0] - data[i, 0]
        residuals[i, 1] = q[b, 1] - p[a, 1] - data[i, 1]
        for r in range(2):
            for c in range(2):
                v = 1.0 if r == c else 0.0
                jp[i, r, c] = -v
                jq[i, r, c] = v


#: r = q - p - d: the displacement of 2-D point q from point p against its measurement d (data,
#: 2 numbers in the points' length unit). Linear: the odometry / relative-position edge of a graph.
OFFSET_2D = ResidualType("offset_2d", 2, (2, 2), 2, _offset_residuals, _offset_jacobians)


@njit(parallel=True, cache=True)
def _prior_residuals(params, index, data, residuals):
    x = params[0]
    n, k = residuals.shape
    for i in prange(n):
        b = index[i, 0]
        for c in range(k):
            residuals[i, c] = x[b, c] - data[i, c]


@njit(parallel=True, cache=True)
def _prior_jacobians(params, index, data, residuals, jacobians):
    x = params[0]
    jac = jacobians[0]
    n, k = residuals.shape
    for i in prange(n):
        b = index[i, 0]
        for r in range(k):
            residuals[i, r] = x[b, r] - data[i, r]
            for c in range(k):
                jac[i, r, c] = 1.0 if r == c else 0.0


@lru_cache(maxsize=None)
def prior(k: int) -> ResidualType:
    """r = x - x_prior over one block of k; data row = x_prior (units of x)."""
    k = int(k)
    return ResidualType(f"prior_{k}", k, (k,), k, _prior_residuals, _prior_jacobians)


PRIOR_2D = prior(2)


# ---------------------------------------------------------------------------------------------
# Classic test functions (Moré, Garbow, Hillstrom 1981), each over one parameter block.

@njit(parallel=True, cache=True)
def _rosenbrock_residuals(params, index, data, residuals):
    x = params[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        residuals[i, 0] = 10.0 * (x[b, 1] - x[b, 0] * x[b, 0])
        residuals[i, 1] = 1.0 - x[b, 0]


@njit(parallel=True, cache=True)
def _rosenbrock_jacobians(params, index, data, residuals, jacobians):
    x = params[0]
    jac = jacobians[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        residuals[i, 0] = 10.0 * (x[b, 1] - x[b, 0] * x[b, 0])
        residuals[i, 1] = 1.0 - x[b, 0]
        jac[i, 0, 0] = -20.0 * x[b, 0]
        jac[i, 0, 1] = 10.0
        jac[i, 1, 0] = -1.0
        jac[i, 1, 1] = 0.0


#: Rosenbrock: r = (10 (x1 - x0^2), 1 - x0); minimum 0 at (1, 1).
ROSENBROCK = ResidualType("rosenbrock", 2, (2,), 0, _rosenbrock_residuals, _rosenbrock_jacobians)

_SQRT5 = math.sqrt(5.0)
_SQRT10 = math.sqrt(10.0)


@njit(parallel=True, cache=True)
def _powell_residuals(params, index, data, residuals):
    x = params[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        u = x[b, 1] - 2.0 * x[b, 2]
        v = x[b, 0] - x[b, 3]
        residuals[i, 0] = x[b, 0] + 10.0 * x[b, 1]
        residuals[i, 1] = _SQRT5 * (x[b, 2] - x[b, 3])
        residuals[i, 2] = u * u
        residuals[i, 3] = _SQRT10 * v * v


@njit(parallel=True, cache=True)
def _powell_jacobians(params, index, data, residuals, jacobians):
    x = params[0]
    jac = jacobians[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        u = x[b, 1] - 2.0 * x[b, 2]
        v = x[b, 0] - x[b, 3]
        residuals[i, 0] = x[b, 0] + 10.0 * x[b, 1]
        residuals[i, 1] = _SQRT5 * (x[b, 2] - x[b, 3])
        residuals[i, 2] = u * u
        residuals[i, 3] = _SQRT10 * v * v
        for r in range(4):
            for c in range(4):
                jac[i, r, c] = 0.0
        jac[i, 0, 0] = 1.0
        jac[i, 0, 1] = 10.0
        jac[i, 1, 2] = _SQRT5
        jac[i, 1, 3] = -_SQRT5
        jac[i, 2, 1] = 2.0 * u
        jac[i, 2, 2] = -4.0 * u
        jac[i, 3, 0] = 2.0 * _SQRT10 * v
        jac[i, 3, 3] = -2.0 * _SQRT10 * v


#: Powell's singular function (4 residuals over a block of 4); minimum 0 at 0, singular J there.
POWELL = ResidualType("powell_singular", 4, (4,), 0, _powell_residuals, _powell_jacobians)


@njit(parallel=True, cache=True)
def _freudenstein_residuals(params, index, data, residuals):
    x = params[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        x0, x1 = x[b, 0], x[b, 1]
        residuals[i, 0] = -13.0 + x0 + ((5.0 - x1) * x1 - 2.0) * x1
        residuals[i, 1] = -29.0 + x0 + ((x1 + 1.0) * x1 - 14.0) * x1


@njit(parallel=True, cache=True)
def _freudenstein_jacobians(params, index, data, residuals, jacobians):
    x = params[0]
    jac = jacobians[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        x0, x1 = x[b, 0], x[b, 1]
        residuals[i, 0] = -13.0 + x0 + ((5.0 - x1) * x1 - 2.0) * x1
        residuals[i, 1] = -29.0 + x0 + ((x1 + 1.0) * x1 - 14.0) * x1
        jac[i, 0, 0] = 1.0
        jac[i, 0, 1] = (10.0 - 3.0 * x1) * x1 - 2.0
        jac[i, 1, 0] = 1.0
        jac[i, 1, 1] = (3.0 * x1 + 2.0) * x1 - 14.0


#: Freudenstein and Roth (2 residuals over a block of 2); global minimum 0 at (5, 4), local
#: minimum 24.4921 at (11.41, -0.8968).
FREUDENSTEIN = ResidualType("freudenstein_roth", 2, (2,), 0, _freudenstein_residuals, _freudenstein_jacobians)


@njit(parallel=True, cache=True)
def _bard_residuals(params, index, data, residuals):
    x = params[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        residuals[i, 0] = x[b, 0] + data[i, 0] / (data[i, 1] * x[b, 1] + data[i, 2] * x[b, 2]) - data[i, 3]


#: Bard: r = x0 + u / (v x1 + w x2) - y, data (u, v, w, y) = rows of BARD_DATA. No Jacobian
#: kernel: the evaluator differentiates it numerically.
BARD = ResidualType("bard", 1, (3,), 4, _bard_residuals, None)


@njit(parallel=True, cache=True)
def _meyer_residuals(params, index, data, residuals):
    x = params[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        residuals[i, 0] = x[b, 0] * math.exp(x[b, 1] / (data[i, 0] + x[b, 2])) - data[i, 1]


@njit(parallel=True, cache=True)
def _meyer_jacobians(params, index, data, residuals, jacobians):
    x = params[0]
    jac = jacobians[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        x0, x1 = x[b, 0], x[b, 1]
        tx = data[i, 0] + x[b, 2]
        e = math.exp(x1 / tx)  # as in the residual kernel, so both give bitwise equal residuals
        z = 1.0 / tx
        residuals[i, 0] = x0 * e - data[i, 1]
        jac[i, 0, 0] = e
        jac[i, 0, 1] = x0 * e * z
        jac[i, 0, 2] = -x0 * e * x1 * z * z


#: Meyer: r = x0 exp(x1 / (t + x2)) - y, data (t, y) = rows of MEYER_DATA (a thermistor's
#: resistance y, in ohms, against a temperature-like abscissa t).
MEYER = ResidualType("meyer", 1, (3,), 2, _meyer_residuals, _meyer_jacobians)

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
