"""Symbolic Cholesky statistics of a sparse symmetric matrix under a given ordering, without numeric work.

For C = P A P^T (lower triangle of A given in CSC, ``perm[k]`` = the row of A that becomes row k of
C), the elimination tree is built by Liu's algorithm (with path compression) and the pattern of
row i of L is the union of the paths from the columns j < i with C_ij != 0 up the tree to i (the
"row subtree"); walking those paths once, marking visited nodes, counts the entries of every column
of L in O(nnz(L)) time and O(n) memory. From the column counts c_k (diagonal included):

    nnz(L) = sum_k c_k,      flops(factorization) ~ sum_k c_k^2,

CHOLMOD's own figures (``Common->lnz`` and ``Common->fl``, which scikit-sparse does not expose);
their ratio is what CHOLMOD compares with its ``supernodal_switch`` to choose between a simplicial
and a supernodal factorization. The counts are those of the exact (unamalgamated) factor; a
supernodal factor adds some padding to them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@numba.njit(cache=True)
def permuted_lower_rows(colptr, rowidx, pinv):
    """Rows of lower(P A P^T) off the diagonal as CSR lists (row i: the columns j < i, unsorted)."""
    n = colptr.shape[0] - 1
    ptr = np.zeros(n + 1, np.int64)
    for c in range(n):
        for p in range(colptr[c], colptr[c + 1]):
            a, b = pinv[rowidx[p]], pinv[c]
            if a != b:
                ptr[max(a, b) + 1] += 1
    for i in range(n):
        ptr[i + 1] += ptr[i]
    fill = ptr[:-1].copy()
    cols = np.empty(ptr[n], np.int64)
    for c in range(n):
        for p in range(colptr[c], colptr[c + 1]):
            a, b = pinv[rowidx[p]], pinv[c]
            if a != b:
                hi = max(a, b)
                cols[fill[hi]] = min(a, b)
                fill[hi] += 1
    return ptr, cols


@numba.njit(cache=True)
def capped_column_counts(row_ptr, row_cols, weight, cap):
    """Weighted column counts of the Cholesky factor's strictly-lower part, stopping at ``cap`` entries.

    row_ptr/row_cols: for each (permuted) row i, the columns j < i with C_ij != 0 (repeats allowed).
    Returns (below, visited, complete): below[k] = sum of ``weight[i]`` over the rows i > k with
    L_ik != 0 (with unit weights: the off-diagonal entries of column k of L; with block sizes on a
    block pattern: the scalar rows below block k), visited = the number of off-diagonal entries of
    L found, complete = False when the walk stopped past ``cap`` of them (``below`` is then a
    lower bound)."""
    n = row_ptr.shape[0] - 1
    parent = np.full(n, -1, np.int64)
    ancestor = np.full(n, -1, np.int64)
    for i in range(n):  # Liu's elimination tree, path compression through ``ancestor``
        for q in range(row_ptr[i], row_ptr[i + 1]):
            r = row_cols[q]
            while ancestor[r] != -1 and ancestor[r] != i:
                t = ancestor[r]
                ancestor[r] = i
                r = t
            if ancestor[r] == -1:
                ancestor[r] = i
                parent[r] = i
    mark = np.full(n, -1, np.int64)
    below = np.zeros(n, np.int64)
    visited = 0
    for i in range(n):  # row subtrees: L_ik != 0 for every k on the paths from row i's columns up to i
        mark[i] = i
        for q in range(row_ptr[i], row_ptr[i + 1]):
            k = row_cols[q]
            while k != -1 and mark[k] != i:
                mark[k] = i
                below[k] += weight[i]
                visited += 1
                k = parent[k]
            if visited > cap:
                return below, visited, False
    return below, visited, True


@numba.njit(cache=True)
def column_counts(row_ptr, row_cols, weight):
    """``below`` of :func:`capped_column_counts` without a cap."""
    below, visited, complete = capped_column_counts(row_ptr, row_cols, weight, np.iinfo(np.int64).max)
    return below


@dataclass
class FactorStatistics:
    """nnz(L) (diagonal included) and the factorization's flop count sum_k c_k^2, as CHOLMOD counts them."""

    nnz: int
    flops: float

    @property
    def flops_per_nnz(self) -> float:
        """CHOLMOD's measure of how dense the factor's columns are (its supernodal switch compares it with 40)."""
        return self.flops / max(self.nnz, 1)


def factor_statistics(colptr: np.ndarray, rowidx: np.ndarray, perm: np.ndarray) -> FactorStatistics:
    """Column counts of the Cholesky factor of P A P^T (A: lower or full CSC pattern ``colptr``/``rowidx``,
    ``perm``: new position -> old row) summarised as :class:`FactorStatistics`."""
    n = colptr.shape[0] - 1
    pinv = np.empty(n, np.int64)
    pinv[np.asarray(perm, dtype=np.int64)] = np.arange(n, dtype=np.int64)
    row_ptr, row_cols = permuted_lower_rows(np.asarray(colptr, np.int64), np.asarray(rowidx, np.int64), pinv)
    counts = column_counts(row_ptr, row_cols, np.ones(n, np.int64)).astype(np.float64) + 1.0
    return FactorStatistics(int(counts.sum()), float(np.dot(counts, counts)))
