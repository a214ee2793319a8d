"""The Euclidean manifold R^k: x [+] delta = x + delta (today's behaviour of every parameter group)."""
from __future__ import annotations

from functools import lru_cache

from numba import njit, prange

from sparselm.manifolds.base import Manifold


@njit(parallel=True, cache=True)
def _plus(x, delta, out):
    n, k = x.shape
    for b in prange(n):
        for c in range(k):
            out[b, c] = x[b, c] + delta[b, c]


@njit(parallel=True, cache=True)
def _minus(y, x, out):
    n, k = x.shape
    for b in prange(n):
        for c in range(k):
            out[b, c] = y[b, c] - x[b, c]


@njit(parallel=True, cache=True)
def _plus_jacobian(x, out):
    n, k = x.shape
    for b in prange(n):
        for r in range(k):
            for c in range(k):
                out[b, r, c] = 1.0 if r == c else 0.0


@lru_cache(maxsize=None)
def euclidean(size: int) -> Manifold:
    """R^size (one shared instance per size): ambient = tangent = size, plus-Jacobian = identity."""
    if int(size) < 1:
        raise ValueError(f"euclidean manifold: size must be >= 1, got {size}")
    return Manifold(f"euclidean({int(size)})", int(size), int(size), _plus, _minus, _plus_jacobian,
                    euclidean=True, description="vector space, x + delta")
