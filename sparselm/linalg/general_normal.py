"""Cholesky solvers of the damped normal equations (J^T J + diag(D)) step = -J^T r for a general sparse
Jacobian on a fixed pattern (:class:`~sparselm.linalg.csc.JacobianPattern`), as
:func:`sparselm.least_squares` has it: lower(J^T J) on a fixed CSC pattern filled in place by a numba
kernel (Gustavson's product by columns), factored by CHOLMOD (analysed once, again only when the
Jacobian's pattern grows) or, for small problems, densely by LAPACK.
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.linalg
import scipy.sparse as sp

from sparselm.linalg.base import LinearSolution, LinearSolver, LinearSolverOptions
from sparselm.linalg.cholmod import CholmodFactor
from sparselm.linalg.csc import JacobianPattern
from sparselm.util.timing import PhaseTimer


@numba.njit(parallel=True, cache=True)
def fill_normal_lower(c_ptr, c_rows, c_data, r_ptr, r_cols, r_data, h_ptr, h_rows, h_data, n_chunks):
    """lower(J^T J) into a fixed CSC pattern (Gustavson by columns, one position map per chunk)."""
    n = h_ptr.shape[0] - 1
    chunk = (n + n_chunks - 1) // n_chunks
    for t in numba.prange(n_chunks):
        b0 = t * chunk
        b1 = min(n, b0 + chunk)
        if b0 >= b1:
            continue
        pos = np.empty(n, np.int64)
        for b in range(b0, b1):
            for k in range(h_ptr[b], h_ptr[b + 1]):
                pos[h_rows[k]] = k
                h_data[k] = 0.0
            for p in range(c_ptr[b], c_ptr[b + 1]):
                i = c_rows[p]
                v = c_data[p]
                for q in range(r_ptr[i], r_ptr[i + 1]):
                    a = r_cols[q]
                    if a >= b:
                        h_data[pos[a]] += v * r_data[q]



class GeneralNormalPattern:
    """lower(J^T J + I) as a CSC pattern (diagonal first in every column), from a boolean product."""

    def __init__(self, jp: JacobianPattern):
        n = jp.shape[1]
        self.dense = jp.dense
        if jp.dense:  # full lower triangle, column by column
            self.cols, self.rows = (a.astype(np.int64) for a in np.triu_indices(n))
            self.ptr = np.concatenate([[0], np.cumsum(n - np.arange(n))]).astype(np.int64)
        else:
            ones = sp.csc_matrix((np.ones(jp.nnz), jp.indices, jp.indptr), shape=jp.shape)
            product = (ones.T @ ones).tocsc() + sp.identity(n, format="csc")
            lower = sp.tril(product, format="csc")
            lower.sort_indices()
            self.ptr = lower.indptr.astype(np.int64)
            self.rows = lower.indices.astype(np.int64)
            self.cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.ptr))
        self.nnz = int(self.ptr[-1])
        self.diagonal_positions = self.ptr[:-1].copy()
        if not np.array_equal(self.rows[self.diagonal_positions], np.arange(jp.shape[1])):
            raise AssertionError("normal-matrix pattern: diagonal is not first in every column")

    def fill(self, jp: JacobianPattern, out: np.ndarray) -> None:
        if self.dense:  # BLAS: J^T J from the column-major values
            jt = jp.data.reshape(jp.shape[1], jp.shape[0])
            out[:] = (jt @ jt.T)[self.rows, self.cols]
            return
        chunks = max(1, min(4 * numba.get_num_threads(), jp.shape[1]))
        fill_normal_lower(jp.indptr, jp.indices, jp.data, jp.row_ptr, jp.row_cols, jp.csr_data,
                           self.ptr, self.rows, out, chunks)


class GeneralSparseNormalCholesky(LinearSolver):
    """(J^T J + diag(D)) step = -J^T r for a general sparse J: fixed lower(J^T J) pattern, CHOLMOD
    analysed once (again only if the Jacobian pattern grows), refactored per trial."""

    name = "sparse_normal_cholesky"

    def __init__(self, evaluator, timer: PhaseTimer, options: LinearSolverOptions):
        super().__init__(None, evaluator, timer, options)
        self._version = -1
        self.analyses = 0

    def _build(self) -> None:
        with self.timer.phase("symbolic"):
            self.normal = GeneralNormalPattern(self.evaluator.pattern)
            self.values = np.zeros(self.normal.nnz)
            self._work = np.zeros(self.normal.nnz)
            self._matrix = sp.csc_matrix((self._work, self.normal.rows, self.normal.ptr),
                                         shape=(self.evaluator.n, self.evaluator.n))
            self._work[self.normal.diagonal_positions] = 1.0
            self.factor = CholmodFactor(self._matrix, self.options.ordering, self.options.factorization)
            self.analyses += 1
            self._version = self.evaluator.pattern_version

    def linearize(self) -> None:
        if self._version != self.evaluator.pattern_version:
            self._build()
        with self.timer.phase("assembly"):
            self.normal.fill(self.evaluator.pattern, self.values)

    def solve(self, diagonal: np.ndarray) -> LinearSolution:
        with self.timer.phase("factorization"):
            np.copyto(self._work, self.values)
            self._work[self.normal.diagonal_positions] += diagonal
            if not self.factor.factorize(self._matrix):
                return self._failed("CHOLMOD: normal matrix not positive definite")
        with self.timer.phase("solve"):
            step = -self.factor.solve(self.evaluator.gradient)
        return self._finite_or_failure(np.asarray(step).ravel())

    def info(self) -> dict:
        d = {"name": self.name, "columns": self.evaluator.n, "nnz_lower": self.normal.nnz,
             "ordering": self.factor.ordering, "factorization": self.factor.mode,
             "analysis_seconds": self.factor.analysis_seconds, "analyses": self.analyses}
        if self.factor.factorized:
            d["factor_nnz"] = self.factor.factor_nnz()
        return d


class GeneralDenseNormalCholesky(GeneralSparseNormalCholesky):
    """The same normal matrix, scattered into a dense array and factored by LAPACK (small n)."""

    name = "dense"

    def _build(self) -> None:
        with self.timer.phase("symbolic"):
            self.normal = GeneralNormalPattern(self.evaluator.pattern)
            self.values = np.zeros(self.normal.nnz)
            self.hessian = np.zeros((self.evaluator.n, self.evaluator.n))
            self.analyses += 1
            self._version = self.evaluator.pattern_version

    def linearize(self) -> None:
        super().linearize()
        self.hessian[self.normal.rows, self.normal.cols] = self.values

    def solve(self, diagonal: np.ndarray) -> LinearSolution:
        with self.timer.phase("factorization"):
            try:
                h = self.hessian + np.diag(diagonal)
                factor = scipy.linalg.cho_factor(h, lower=True, check_finite=False)
            except (np.linalg.LinAlgError, ValueError):
                return self._failed("dense Cholesky: matrix not positive definite")
        with self.timer.phase("solve"):
            step = -scipy.linalg.cho_solve(factor, self.evaluator.gradient, check_finite=False)
        return self._finite_or_failure(step)

    def info(self) -> dict:
        return {"name": self.name, "columns": self.evaluator.n, "nnz_lower": self.normal.nnz,
                "analyses": self.analyses}

