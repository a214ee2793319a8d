"""The engine's two uses of a manifold: the chain rule J = J_amb P(x) and the step x <- x [+] delta.

Both work on whole groups in the column layout's terms: ``ids`` (n_blocks,) is each block's free
block id or -1 (constant), ``block_col`` the first column of each free block in the step vector.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from sparselm.manifolds.base import Manifold


@njit(parallel=True, cache=True)
def ambient_to_tangent(ambient, block_index, plus_jacobian, out):
    """out[i] = ambient[i] @ plus_jacobian[block_index[i]] for each instance i.

    ambient (n, m, a) d r / d x of one slot, block_index (n,) the block each instance uses in that
    slot, plus_jacobian (n_blocks, a, t), out (n, m, t) (may be a strided view)."""
    n, m, a = ambient.shape
    t = out.shape[2]
    for i in prange(n):
        p = plus_jacobian[block_index[i]]
        for r in range(m):
            for c in range(t):
                s = 0.0
                for k in range(a):
                    s += ambient[i, r, k] * p[k, c]
                out[i, r, c] = s


def apply_tangent_step(manifold: Manifold, values: np.ndarray, ids: np.ndarray, block_col: np.ndarray,
                       step: np.ndarray, out: np.ndarray) -> None:
    """out = values [+] delta on the free blocks (delta read from ``step`` at each block's columns);
    constant blocks are copied unchanged."""
    free = np.flatnonzero(ids >= 0)
    out[...] = values
    if free.size == 0:
        return
    cols = block_col[ids[free]][:, None] + np.arange(manifold.tangent_size)
    moved = np.empty((free.size, manifold.ambient_size))
    manifold.plus_kernel(np.ascontiguousarray(values[free]), np.ascontiguousarray(step[cols]), moved)
    out[free] = moved
