"""The size of the Cholesky factor of S before any numeric work, for the ``auto`` rule and the memory estimate.

:func:`estimate_factor_nnz` estimates the size of the Cholesky factor of S that sparse_schur
would compute (CHOLMOD's fill-reducing ordering of the *block* graph, then an exact symbolic
count of the block factor in numba), so a caller can pick iterative_schur when it would be
too large.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numba
import numpy as np
import scipy.sparse as sp

from sparselm.core.covisibility import covisible_lower_pairs
from sparselm.core.layout import Layout
from sparselm.linalg.cholmod import CholmodFactor
from sparselm.linalg.symbolic import capped_column_counts


def block_factor_nnz(row_block: np.ndarray, col_block: np.ndarray, block_size: np.ndarray, ordering: str = "amd",
                     cap: int = 2 ** 62) -> dict:
    """Estimate the Cholesky factor of a symmetric block matrix from its nonzero blocks.

    row_block/col_block: the nonzero blocks (either triangle, repeats allowed; the diagonal is
    implied); block_size: (n_blocks,). The fill-reducing ordering is CHOLMOD's (``ordering``) on
    the block graph (1 entry per block, so analysis is cheap even when the scalar S is huge);
    the factor's block pattern is then counted exactly (elimination tree and row subtrees,
    O(blocks of L)), each block counted dense. Returns {"nnz": scalar entries of L (lower
    triangle, diagonal included), "block_nnz": blocks of L, "flops": ~sum over scalar columns of
    count^2, "complete": False when the count stopped at ``cap`` blocks (then nnz and flops are
    lower bounds), "ordering": ...}. With dense blocks this is CHOLMOD's simplicial nnz(L) for
    the same block ordering; supernodal factors add some padding (measured: see the tests).
    """
    size = np.ascontiguousarray(block_size, dtype=np.int64)
    n = size.shape[0]
    row_block = np.asarray(row_block, dtype=np.int64)
    col_block = np.asarray(col_block, dtype=np.int64)
    hi = np.maximum(row_block, col_block)
    lo = np.minimum(row_block, col_block)
    keys = np.unique(np.concatenate([hi * n + lo, np.arange(n, dtype=np.int64) * (n + 1)]))
    hi, lo = keys // n, keys % n
    lower = sp.csc_matrix((np.where(hi == lo, float(n + 1), 1.0), (hi, lo)), shape=(n, n))
    perm = CholmodFactor(lower, ordering, "simplicial").permutation()  # new position -> old block
    pos = np.empty(n, dtype=np.int64)
    pos[perm] = np.arange(n)
    a, b = pos[hi], pos[lo]
    ph, pl = np.maximum(a, b), np.minimum(a, b)
    off = ph != pl
    ph, pl = ph[off], pl[off]
    order = np.lexsort((pl, ph))
    row_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(ph, minlength=n), out=row_ptr[1:])
    psize = size[perm]
    below, visited, complete = capped_column_counts(row_ptr, np.ascontiguousarray(pl[order]), psize, int(cap))
    below = below.astype(np.float64)
    sz = psize.astype(np.float64)
    nnz = float(np.sum(sz * (sz + 1) / 2 + sz * below))
    # scalar columns of block k have below + sz, ..., below + 1 entries
    flops = float(np.sum(sz * below ** 2 + below * sz * (sz + 1) + sz * (sz + 1) * (2 * sz + 1) / 6))
    return {"nnz": int(nnz), "block_nnz": int(n + visited), "flops": flops, "complete": bool(complete),
            "ordering": ordering}


def estimate_factor_nnz(solver_or_pattern, ordering: Optional[str] = None, cap: int = 2 ** 62) -> dict:
    """:func:`block_factor_nnz` for the reduced camera matrix S of a Schur solver.

    Accepts a SchurSolver (its ``structure.pattern`` and ``options.ordering``), a SchurStructure
    (``.pattern``) or a BlockPattern. Needs only S's block pattern, no values and no numeric
    factorization. (scikit-sparse 0.4.16 exposes nothing of the symbolic factor after
    ``analyze``: ``Factor.L()`` raises until a numeric factorization, and then a supernodal
    ``L()`` includes the supernodes' padding.)
    """
    obj = solver_or_pattern
    if ordering is None:
        ordering = getattr(getattr(obj, "options", None), "ordering", "amd")
    pattern = getattr(obj, "structure", obj)
    pattern = getattr(pattern, "pattern", pattern)
    nb = pattern.n_key_blocks
    keys = pattern.unique_keys
    row_blk, col_blk = keys // nb, keys % nb
    diag = row_blk == col_blk
    block_size = np.empty(nb, dtype=np.int64)
    block_size[col_blk[diag]] = pattern.target_ncol[pattern.target_of_key[np.flatnonzero(diag)]]
    return block_factor_nnz(row_blk, col_blk, block_size, ordering, cap)


def schur_block_pattern(layout: Layout) -> Tuple[np.ndarray, np.ndarray]:
    """(row, col) kept-block pairs, row >= col, that share an eliminated block: the block pattern of
    lower(S) beyond U's own blocks (:func:`sparselm.core.covisibility.covisible_lower_pairs` of the layout).

    Computed once per layout and kept in ``layout.derived``: the ``auto`` choice's factor estimate and
    the memory estimate's count of S's blocks both read it."""
    if "schur_block_pattern" not in layout.derived:
        n_f = layout.n_reduced_blocks
        n_e = layout.n_blocks - n_f
        pairs = [_incidences(rl.block, n_f) for rl in layout.residuals]
        kept = np.concatenate([k for k, _ in pairs])
        eliminated = np.concatenate([e for _, e in pairs])
        layout.derived["schur_block_pattern"] = covisible_lower_pairs(kept, eliminated, n_f, n_e)
    return layout.derived["schur_block_pattern"]


@numba.njit(cache=True)
def _incidences(block, n_f):
    """(kept, eliminated local id) of every slot holding a kept block (id < n_f) in an instance that has an
    eliminated block (id >= n_f; the largest, when an instance has several)."""
    n, n_slots = block.shape
    e_of = np.full(n, -1, np.int64)
    count = 0
    for i in range(n):
        for j in range(n_slots):
            if block[i, j] >= n_f:
                e_of[i] = max(e_of[i], block[i, j] - n_f)
        if e_of[i] >= 0:
            for j in range(n_slots):
                if 0 <= block[i, j] < n_f:
                    count += 1
    kept = np.empty(count, np.int64)
    eliminated = np.empty(count, np.int64)
    k = 0
    for i in range(n):
        if e_of[i] >= 0:
            for j in range(n_slots):
                if 0 <= block[i, j] < n_f:
                    kept[k], eliminated[k] = block[i, j], e_of[i]
                    k += 1
    return kept, eliminated


def estimate_schur_factor(layout: Layout, ordering: str = "amd") -> dict:
    """:func:`block_factor_nnz` of the reduced matrix S of ``layout`` (see there for the keys)."""
    rows, cols = schur_block_pattern(layout)
    return block_factor_nnz(rows, cols, layout.block_size[:layout.n_reduced_blocks], ordering)
