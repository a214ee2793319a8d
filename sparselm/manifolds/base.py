"""The manifold contract: the Manifold object and its checked Python-level wrappers (math: package docstring)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True, eq=False)
class Manifold:
    """A manifold for parameter blocks: ambient coordinates stored, tangent coordinates optimised.

    name                  registry key and the name shown in reports.
    ambient_size          a, the size of a stored block (4 for a unit quaternion).
    tangent_size          t, the number of free coordinates LM solves for (3 for a rotation).
    plus_kernel           numba kernel ``(x (n, a), delta (n, t), out (n, a))``: out[b] = x[b] [+] delta[b].
    minus_kernel          numba kernel ``(y (n, a), x (n, a), out (n, t))``: out[b] = y[b] [-] x[b].
    plus_jacobian_kernel  numba kernel ``(x (n, a), out (n, a, t))``: d (x [+] delta) / d delta at
                          delta = 0.
    euclidean             True only for the plain vector space (x [+] delta = x + delta); the engine
                          then keeps its additive code path.

    Kernels loop over the blocks (``prange``) and must not allocate inside the loop. Instances
    compare by identity: two groups share a manifold when they hold the same object.
    """

    name: str
    ambient_size: int
    tangent_size: int
    plus_kernel: Callable
    minus_kernel: Callable
    plus_jacobian_kernel: Callable
    euclidean: bool = False
    description: str = field(default="", compare=False)

    def __post_init__(self):
        if not (1 <= self.tangent_size <= self.ambient_size):
            raise ValueError(f"manifold {self.name!r}: need 1 <= tangent_size <= ambient_size, got "
                             f"{self.tangent_size} and {self.ambient_size}")

    def _blocks(self, what: str, array, size: int) -> np.ndarray:
        arr = np.ascontiguousarray(array, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != size:
            raise ValueError(f"manifold {self.name!r}: {what} must have shape (n, {size}) or ({size},), "
                             f"got {np.shape(array)}")
        return arr

    def plus(self, x, delta) -> np.ndarray:
        """x [+] delta for blocks x (n, a) and tangent steps delta (n, t); returns (n, a)."""
        xb = self._blocks("x", x, self.ambient_size)
        db = self._blocks("delta", delta, self.tangent_size)
        if db.shape[0] != xb.shape[0]:
            raise ValueError(f"manifold {self.name!r}: x has {xb.shape[0]} blocks, delta {db.shape[0]}")
        out = np.empty_like(xb)
        self.plus_kernel(xb, db, out)
        return out

    def minus(self, y, x) -> np.ndarray:
        """y [-] x for blocks y, x (n, a); returns tangent vectors (n, t)."""
        yb = self._blocks("y", y, self.ambient_size)
        xb = self._blocks("x", x, self.ambient_size)
        if yb.shape[0] != xb.shape[0]:
            raise ValueError(f"manifold {self.name!r}: y has {yb.shape[0]} blocks, x {xb.shape[0]}")
        out = np.empty((xb.shape[0], self.tangent_size))
        self.minus_kernel(yb, xb, out)
        return out

    def plus_jacobian(self, x) -> np.ndarray:
        """d (x [+] delta) / d delta at delta = 0 for blocks x (n, a); returns (n, a, t)."""
        xb = self._blocks("x", x, self.ambient_size)
        out = np.empty((xb.shape[0], self.ambient_size, self.tangent_size))
        self.plus_jacobian_kernel(xb, out)
        return out

    def __repr__(self) -> str:
        return f"Manifold({self.name!r}, ambient {self.ambient_size}, tangent {self.tangent_size})"

