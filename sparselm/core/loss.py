"""Robust losses rho(s) of the squared whitened residual norm s = |r'|^2.

With a scale a (in residual units), rho(s) = a^2 rho0(s / a^2), the convention of Ceres'
``ScaledLoss`` and scipy's ``f_scale``; its derivatives are rho'(s) = rho0'(s/a^2) and
rho''(s) = rho0''(s/a^2) / a^2. The base functions rho0 (value, first, second derivative):

    linear   s                    1                  0
    huber    s | 2 sqrt(s) - 1    1 | s^-1/2         0 | -s^-3/2 / 2          (split at s = 1)
    soft_l1  2 (sqrt(1+s) - 1)    (1+s)^-1/2         -(1+s)^-3/2 / 2
    cauchy   log(1+s)             1/(1+s)            -1/(1+s)^2
    arctan   atan(s)              1/(1+s^2)          -2 s/(1+s^2)^2

The evaluator applies Triggs' correction (as Ceres' ``Corrector``) so that the Gauss-Newton model
of 1/2 rho(|r|^2) becomes an ordinary least-squares model in corrected r and J.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from sparselm.util.numerics import PARALLEL_MIN_ENTRIES, chunk_range, sum_in_order

LOSS_IDS = {"linear": 0, "huber": 1, "soft_l1": 2, "cauchy": 3, "arctan": 4}


@dataclass(frozen=True)
class Loss:
    """A robust loss: its name, numeric id for the kernels, and scale a (residual units)."""

    name: str
    scale: float = 1.0

    @property
    def id(self) -> int:
        return LOSS_IDS[self.name]

    @property
    def is_trivial(self) -> bool:
        return self.name == "linear"


def make_loss(loss, scale: float = 1.0) -> Loss:
    """Build a Loss from None, a name, or a Loss; validates the name and scale."""
    if isinstance(loss, Loss):
        return loss
    name = "linear" if loss is None else loss
    if name not in LOSS_IDS:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSS_IDS)}")
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"loss scale must be a positive finite number, got {scale}")
    return Loss(name, scale)


@numba.njit(cache=True)
def loss_rho(loss_id, scale, s):
    """Return (rho, rho', rho'') of the scaled loss at s = squared whitened residual norm."""
    if loss_id == 0:
        return s, 1.0, 0.0
    a2 = scale * scale
    z = s / a2
    if loss_id == 1:
        if z <= 1.0:
            r0, r1, r2 = z, 1.0, 0.0
        else:
            sq = math.sqrt(z)
            r0, r1, r2 = 2.0 * sq - 1.0, 1.0 / sq, -0.5 / (z * sq)
    elif loss_id == 2:
        t = 1.0 + z
        sq = math.sqrt(t)
        r0, r1, r2 = 2.0 * (sq - 1.0), 1.0 / sq, -0.5 / (t * sq)
    elif loss_id == 3:
        t = 1.0 + z
        r0, r1, r2 = math.log1p(z), 1.0 / t, -1.0 / (t * t)
    else:
        t = 1.0 + z * z
        r0, r1, r2 = math.atan(z), 1.0 / t, -2.0 * z / (t * t)
    return a2 * r0, r1, r2 / a2


def robust_cost(loss_id, scale, residuals):
    """1/2 sum_i rho(|r_i|^2), as one partial sum per thread added in order."""
    return _robust_cost_in_chunks(loss_id, scale, residuals, numba.get_num_threads())


@numba.njit(parallel=True, cache=True)
def _robust_cost_in_chunks(loss_id, scale, residuals, n_chunks):
    # one chunk per thread, summed in chunk order (see sparselm.util.numerics.chunk_range)
    n, m = residuals.shape
    partial = np.zeros(n_chunks)
    for ch in numba.prange(n_chunks):
        start, stop = chunk_range(ch, n_chunks, n)
        acc = 0.0
        for i in range(start, stop):
            s = 0.0
            for r in range(m):
                s += residuals[i, r] * residuals[i, r]
            acc += 0.5 * loss_rho(loss_id, scale, s)[0]
        partial[ch] = acc
    return sum_in_order(partial)


@numba.njit(cache=True)
def _sum_of_squares(residuals, start, stop):
    """sum |r_i|^2 over the instances start <= i < stop, in order."""
    total = 0.0
    for i in range(start, stop):
        s = 0.0
        for r in range(residuals.shape[1]):
            s += residuals[i, r] * residuals[i, r]
        total += s
    return total


@numba.njit(parallel=True, cache=True)
def _sum_of_squares_in_chunks(residuals, n_chunks):
    """sum |r_i|^2 as n_chunks contiguous partial sums added in order (bitwise reproducible)."""
    n = residuals.shape[0]
    partial = np.zeros(n_chunks)
    for ch in numba.prange(n_chunks):
        partial[ch] = _sum_of_squares(residuals, ch * n // n_chunks, (ch + 1) * n // n_chunks)
    total = 0.0
    for ch in range(n_chunks):
        total += partial[ch]
    return total


def plain_cost(residuals) -> float:
    """1/2 sum_i |r_i|^2 (the linear loss) of (n, m) residuals: serial when small, else one partial sum
    per numba thread. The result depends on the thread count only above PARALLEL_MIN_ENTRIES."""
    if residuals.size < PARALLEL_MIN_ENTRIES:
        return 0.5 * _sum_of_squares(residuals, 0, residuals.shape[0])
    return 0.5 * _sum_of_squares_in_chunks(residuals, numba.get_num_threads())


def robust_correct(loss_id, scale, residuals, jacobian):
    """Apply Triggs' correction (see :mod:`sparselm.core.evaluator`) to (n, m) residuals and (n, m, K)
    Jacobians in place; returns the cost 1/2 sum rho(s_i) (one partial sum per thread, added in order)."""
    return _robust_correct_in_chunks(loss_id, scale, residuals, jacobian, numba.get_num_threads())


@numba.njit(parallel=True, cache=True)
def _robust_correct_in_chunks(loss_id, scale, residuals, jacobian, n_chunks):
    # one chunk per thread, summed in chunk order (see sparselm.util.numerics.chunk_range)
    n = residuals.shape[0]
    partial = np.zeros(n_chunks)
    for ch in numba.prange(n_chunks):
        start, stop = chunk_range(ch, n_chunks, n)
        acc = 0.0
        for i in range(start, stop):
            acc += _correct_instance(loss_id, scale, residuals, jacobian, i)
        partial[ch] = acc
    return sum_in_order(partial)


@numba.njit(inline="always")
def _correct_instance(loss_id, scale, residuals, jacobian, i):
    """Triggs' correction of instance i in place; returns its 1/2 rho(s_i)."""
    m = residuals.shape[1]
    width = jacobian.shape[2]
    s = 0.0
    for r in range(m):
        s += residuals[i, r] * residuals[i, r]
    rho, rho1, rho2 = loss_rho(loss_id, scale, s)
    rho1 = max(rho1, 1e-300)
    sqrt_rho1 = math.sqrt(rho1)
    if s == 0.0 or rho2 <= 0.0:
        res_scale = sqrt_rho1
        alpha_s = 0.0
    else:
        # rho'' > 0: curvature correction; D > 1 so alpha < 0 and 1 - alpha > 1.
        alpha = 1.0 - math.sqrt(1.0 + 2.0 * s * rho2 / rho1)
        res_scale = sqrt_rho1 / (1.0 - alpha)
        alpha_s = alpha / s
    for c in range(width):
        rj = 0.0
        for r in range(m):
            rj += residuals[i, r] * jacobian[i, r, c]
        for r in range(m):
            jacobian[i, r, c] = sqrt_rho1 * (jacobian[i, r, c] - alpha_s * residuals[i, r] * rj)
    for r in range(m):
        residuals[i, r] *= res_scale
    return 0.5 * rho
