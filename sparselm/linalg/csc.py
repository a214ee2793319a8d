"""A general sparse matrix (a Jacobian) on a fixed CSC pattern, with a CSR twin, and the numba kernels
that work on it: gradient J^T r and column norms diag(J^T J), J x, row scaling.

The pattern is built once; later matrices are copied into it (one copy when they have the same
pattern in CSR or CSC form), so that everything derived from the pattern (the normal-matrix
pattern, CHOLMOD's analysis) is built once too. ``csr_perm`` maps each CSR slot to its CSC slot.
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp


@numba.njit(parallel=True, cache=True)
def gradient_and_column_norms(c_ptr, c_rows, c_data, r, gradient, column_norms):
    """gradient = J^T r and column_norms = diag(J^T J), parallel over columns."""
    n = c_ptr.shape[0] - 1
    for b in numba.prange(n):
        g = 0.0
        s = 0.0
        for p in range(c_ptr[b], c_ptr[b + 1]):
            v = c_data[p]
            g += v * r[c_rows[p]]
            s += v * v
        gradient[b] = g
        column_norms[b] = s



@numba.njit(parallel=True, cache=True)
def csr_times_vector(r_ptr, r_cols, r_data, x, out):
    """out = J x from the CSR twin."""
    m = r_ptr.shape[0] - 1
    for i in numba.prange(m):
        s = 0.0
        for q in range(r_ptr[i], r_ptr[i + 1]):
            s += r_data[q] * x[r_cols[q]]
        out[i] = s



@numba.njit(parallel=True, cache=True)
def gather(values, perm, out):
    """out[k] = values[perm[k]]."""
    for k in numba.prange(perm.shape[0]):
        out[k] = values[perm[k]]



@numba.njit(parallel=True, cache=True)
def scale_rows(c_rows, c_data, row_scale):
    """Multiply each CSC value by the scale of its row (in place)."""
    for p in numba.prange(c_data.shape[0]):
        c_data[p] *= row_scale[c_rows[p]]



def canonical_csc(matrix) -> sp.csc_matrix:
    """Canonical CSC (sorted, duplicates summed) of a sparse matrix; the input is not modified."""
    csc = sp.csc_matrix(matrix, copy=True)
    csc.sum_duplicates()
    csc.sort_indices()
    return csc


class JacobianPattern:
    """The CSC pattern of J (m x n), its CSR twin and ``csr_perm`` (CSR slot -> CSC slot).

    ``data`` holds the CSC values, ``csr_data`` the same values in CSR order (refreshed by
    :meth:`refresh_csr`). ``dense`` marks the full pattern of a dense Jacobian.
    """

    def __init__(self, shape, indptr, indices, dense=False):
        self.shape = (int(shape[0]), int(shape[1]))
        m, n = self.shape
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.int64)
        self.nnz = int(self.indptr[-1])
        self.dense = dense
        slots = sp.csc_matrix((np.arange(1, self.nnz + 1, dtype=np.int64), self.indices, self.indptr),
                              shape=self.shape).tocsr()
        slots.sort_indices()
        self.row_ptr = slots.indptr.astype(np.int64)
        self.row_cols = slots.indices.astype(np.int64)
        self.csr_perm = slots.data.astype(np.int64) - 1
        self.data = np.zeros(self.nnz)
        self.csr_data = np.zeros(self.nnz)
        self._keys = None

    @classmethod
    def from_matrix(cls, matrix) -> "JacobianPattern":
        if isinstance(matrix, np.ndarray):
            m, n = matrix.shape
            return cls((m, n), np.arange(0, m * n + 1, m), np.tile(np.arange(m), n), dense=True)
        csc = canonical_csc(matrix)
        return cls(csc.shape, csc.indptr, csc.indices)

    def keys(self) -> np.ndarray:
        """Sorted linear keys col * m + row of the pattern's entries."""
        if self._keys is None:
            cols = np.repeat(np.arange(self.shape[1], dtype=np.int64), np.diff(self.indptr))
            self._keys = cols * self.shape[0] + self.indices
        return self._keys

    def matrix(self, data=None) -> sp.csc_matrix:
        """A CSC matrix on this pattern (sharing ``data`` unless given)."""
        return sp.csc_matrix((self.data if data is None else data, self.indices, self.indptr), shape=self.shape)

    def refresh_csr(self) -> None:
        gather(self.data, self.csr_perm, self.csr_data)

    def assign(self, matrix) -> bool:
        """Copy ``matrix``'s values into ``data``; False if it has entries outside the pattern."""
        if isinstance(matrix, np.ndarray):
            if self.dense:
                self.data[:] = matrix.ravel(order="F")
                return True
            matrix = sp.csc_matrix(matrix)
        fmt = matrix.format
        if fmt == "csr" and matrix.nnz == self.nnz and matrix.has_canonical_format \
                and np.array_equal(matrix.indptr, self.row_ptr) and np.array_equal(matrix.indices, self.row_cols):
            self.data[self.csr_perm] = matrix.data
            return True
        if fmt == "csc" and matrix.nnz == self.nnz and matrix.has_canonical_format \
                and np.array_equal(matrix.indptr, self.indptr) and np.array_equal(matrix.indices, self.indices):
            self.data[:] = matrix.data
            return True
        csc = matrix if (fmt == "csc" and matrix.has_canonical_format) else canonical_csc(matrix)
        if csc.nnz == self.nnz and np.array_equal(csc.indptr, self.indptr) \
                and np.array_equal(csc.indices, self.indices):
            self.data[:] = csc.data
            return True
        cols = np.repeat(np.arange(self.shape[1], dtype=np.int64), np.diff(csc.indptr))
        keys = cols * self.shape[0] + csc.indices.astype(np.int64)
        where = np.searchsorted(self.keys(), keys)
        inside = where < self.nnz
        inside[inside] = self.keys()[where[inside]] == keys[inside]
        if not inside.all():
            return False
        self.data[:] = 0.0
        self.data[where] = csc.data
        return True

    def union(self, matrix) -> "JacobianPattern":
        """A new pattern holding this one's entries and ``matrix``'s."""
        ones = sp.csc_matrix((np.ones(self.nnz), self.indices, self.indptr), shape=self.shape)
        other = canonical_csc(sp.csc_matrix(matrix) if isinstance(matrix, np.ndarray) else matrix)
        other.data = np.ones(other.nnz)
        both = canonical_csc(ones + other)
        return JacobianPattern(both.shape, both.indptr, both.indices)

