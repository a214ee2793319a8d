"""Co-visibility: which kept blocks share an eliminated block (in bundle adjustment, which cameras see
a common point). It is the block pattern of the reduced matrix S = U - W V^-1 W^T beyond U's own
blocks, the graph the Schur solvers' fill-in and the ``auto`` choice depend on, and what
``sparselm info`` and ``sparselm profile`` report. Computed here only.

With the incidence matrix I (n_eliminated x n_kept, 1 where a kept block and an eliminated block
share a residual, a repeated pair counted once), C = I^T I: C[a, b] is the number of eliminated
blocks kept blocks a and b share, C[a, a] the number of eliminated blocks a touches.
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

#: up to this many kept blocks :func:`covisible_lower_pairs` marks pairs in a dense n x n table (<= 4 MiB)
DENSE_MARKS_MAX_KEPT = 2048


def covisibility(kept: np.ndarray, eliminated: np.ndarray, n_kept: int, n_eliminated: int) -> sp.csr_matrix:
    """C = I^T I (n_kept x n_kept, symmetric) from the (kept, eliminated) block pairs of the residuals.

    kept, eliminated  equal-length integer arrays, one entry per (residual, kept slot) incidence;
                      repeated pairs count once.
    """
    kept = np.asarray(kept, dtype=np.int64)
    eliminated = np.asarray(eliminated, dtype=np.int64)
    incidence = sp.csr_matrix((np.ones(kept.size), (eliminated, kept)), shape=(n_eliminated, n_kept))
    incidence.data[:] = 1.0  # duplicates were summed by the constructor: a pair counts once
    return (incidence.T @ incidence).tocsr()


def covisible_lower_pairs(kept: np.ndarray, eliminated: np.ndarray, n_kept: int, n_eliminated: int):
    """(rows, cols), rows >= cols, int64: the nonzero pattern of lower(C) for C of :func:`covisibility`,
    column by column with rows ascending (the diagonal of every kept block that shares an eliminated
    block with anything, itself included).

    Up to ``DENSE_MARKS_MAX_KEPT`` kept blocks the pairs are marked in a dense table by one compiled
    pass over each eliminated block's kept blocks (no sparse product: 0.3 against 2 ms at 3x10^4
    incidences); beyond that it is the lower triangle of :func:`covisibility`."""
    kept = np.ascontiguousarray(kept, dtype=np.int64)
    eliminated = np.ascontiguousarray(eliminated, dtype=np.int64)
    if n_kept > DENSE_MARKS_MAX_KEPT:
        co = sp.tril(covisibility(kept, eliminated, n_kept, n_eliminated)).tocsc().tocoo()
        return co.row.astype(np.int64), co.col.astype(np.int64)
    return _marked_lower_pairs(kept, eliminated, n_kept, n_eliminated)


@numba.njit(cache=True)
def _marked_lower_pairs(kept, eliminated, n_kept, n_eliminated):
    """:func:`covisible_lower_pairs` through an n_kept x n_kept table of marks ([col, row]).

    The incidences are counting-sorted by eliminated block (each one's kept blocks then lie side by
    side, read in order), and the sweep stops once every pair is marked (every pair of kept blocks
    shares an eliminated block: small SfM models)."""
    ptr = np.zeros(n_eliminated + 1, np.int64)
    for i in range(kept.shape[0]):
        ptr[eliminated[i] + 1] += 1
    for e in range(n_eliminated):
        ptr[e + 1] += ptr[e]
    fill = ptr[:-1].copy()
    kept_of = np.empty(kept.shape[0], np.int64)  # the kept blocks of eliminated block e: kept_of[ptr[e]:ptr[e+1]]
    for i in range(kept.shape[0]):
        kept_of[fill[eliminated[i]]] = kept[i]
        fill[eliminated[i]] += 1
    mark = np.zeros((n_kept, n_kept), np.bool_)
    unmarked = n_kept * (n_kept + 1) // 2
    for e in range(n_eliminated):
        if unmarked == 0:
            break
        for x in range(ptr[e], ptr[e + 1]):
            a = kept_of[x]
            for y in range(ptr[e], x + 1):
                b = kept_of[y]
                c, r = min(a, b), max(a, b)
                if not mark[c, r]:
                    mark[c, r] = True
                    unmarked -= 1
    n = 0
    for c in range(n_kept):
        for r in range(c, n_kept):
            if mark[c, r]:
                n += 1
    rows = np.empty(n, np.int64)
    cols = np.empty(n, np.int64)
    n = 0
    for c in range(n_kept):
        for r in range(c, n_kept):
            if mark[c, r]:
                rows[n], cols[n] = r, c
                n += 1
    return rows, cols
