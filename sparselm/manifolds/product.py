r"""SO(3) x R^k: a unit quaternion followed by k Euclidean coordinates, in one parameter block.

A camera pose with a Euclidean translation and, in bundle adjustment, the camera's intrinsics
belong in one block (one block per image in the reduced camera system) while only the rotation
lives on a curved manifold. ``quaternion_and_vector(k)`` is that product: x = (qx, qy, qz, qw,
y_1..y_k), tangent (d_w (3), d_y (k)),

    x [+] d = (normalize(q (x) Exp(d_w)), y + d_y),          x' [-] x = (Log(q* (x) q'), y' - y),
    P(x) = d (x [+] d)/d d at 0 = blockdiag(1/2 [[w I + v^], [-v^T]], I_k)     ((4 + k) x (3 + k)),

the rotation perturbed on the right as ``so3_quaternion`` (:mod:`sparselm.manifolds.rotations`),
the rest added. The quaternion is renormalised after each step, so it stays unit to round-off.
"""
from __future__ import annotations

from functools import lru_cache

from numba import njit, prange

from sparselm.manifolds import lie
from sparselm.manifolds.base import Manifold
from sparselm.manifolds.rotations import write_quaternion_plus_jacobian

__all__ = ["quaternion_and_vector"]


@njit(parallel=True, cache=True)
def _plus(x, delta, out):
    n, a = x.shape
    for b in prange(n):
        q = lie.quaternion_normalize(lie.quaternion_multiply(
            (x[b, 0], x[b, 1], x[b, 2], x[b, 3]), lie.so3_exp((delta[b, 0], delta[b, 1], delta[b, 2]))))
        for c in range(4):
            out[b, c] = q[c]
        for c in range(4, a):
            out[b, c] = x[b, c] + delta[b, c - 1]


@njit(parallel=True, cache=True)
def _minus(y, x, out):
    n, a = x.shape
    for b in prange(n):
        w = lie.so3_log(lie.quaternion_multiply(lie.quaternion_conjugate((x[b, 0], x[b, 1], x[b, 2], x[b, 3])),
                                                (y[b, 0], y[b, 1], y[b, 2], y[b, 3])))
        for c in range(3):
            out[b, c] = w[c]
        for c in range(4, a):
            out[b, c - 1] = y[b, c] - x[b, c]


@njit(parallel=True, cache=True)
def _plus_jacobian(x, out):
    n, a = x.shape
    for b in prange(n):
        for r in range(a):
            for c in range(a - 1):
                out[b, r, c] = 0.0
        write_quaternion_plus_jacobian((x[b, 0], x[b, 1], x[b, 2], x[b, 3]), out[b], 0, 0)
        for r in range(4, a):
            out[b, r, r - 1] = 1.0


@lru_cache(maxsize=None)
def quaternion_and_vector(k: int) -> Manifold:
    """SO(3) x R^k (one shared instance per k >= 0): ambient 4 + k, tangent 3 + k (see the module
    docstring); k = 0 is ``so3_quaternion`` itself in another object."""
    if int(k) < 0:
        raise ValueError(f"quaternion_and_vector: k must be >= 0, got {k}")
    return Manifold(f"so3_quaternion x R^{int(k)}", 4 + int(k), 3 + int(k), _plus, _minus, _plus_jacobian,
                    description="unit quaternion (qx, qy, qz, qw), R [+] d = R Exp(d), then k coordinates, y + d")
