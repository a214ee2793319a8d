"""Sparse normal Cholesky: lower(J^T J) assembled into a fixed CSC pattern, factored by CHOLMOD.

The pattern, the per-target contribution lists (see :mod:`sparselm.core.layout`) and CHOLMOD's
symbolic analysis are built once. Per linearisation the values of lower(J^T J) are gathered into
the pattern; per damping trial D is added on the diagonal and CHOLMOD refactors numerically.
"""
from __future__ import annotations

import numpy as np

from sparselm.linalg.base import LinearSolution, LinearSolver
from sparselm.linalg.cholmod import CholmodFactor
from sparselm.core.layout import accumulate_normal_matrix, build_normal_pattern


class SparseNormalCholesky(LinearSolver):
    """(J^T J + diag(D)) step = -J^T r with CHOLMOD on the full normal matrix."""

    name = "sparse_normal_cholesky"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        with self.timer.phase("symbolic"):
            normal = build_normal_pattern(self.layout)
            self.pattern, self.contributions = normal.pattern, normal.contributions
            self.values = np.zeros(self.pattern.nnz)
            self._work = np.zeros(self.pattern.nnz)
            self._matrix = self.pattern.matrix(self._work)
            self.factor = CholmodFactor(self._matrix, self.options.ordering, self.options.factorization)

    def linearize(self) -> None:
        with self.timer.phase("assembly"):
            p = self.pattern
            self.values[:] = 0.0
            for rl, jac, (ptr, inst, sa, sb) in zip(self.layout.residuals, self.evaluator.jacobians, self.contributions):
                accumulate_normal_matrix(ptr, inst, sa, sb, rl.slot_offset, p.colptr, p.target_col, p.target_ncol,
                                         p.target_nrow, p.target_within, p.target_diag, jac, self.values)

    def solve(self, diagonal: np.ndarray) -> LinearSolution:
        with self.timer.phase("factorization"):
            np.copyto(self._work, self.values)
            self._work[self.pattern.diagonal_positions] += diagonal
            if not self.factor.factorize(self._matrix):
                return self._failed("CHOLMOD: normal matrix not positive definite")
        with self.timer.phase("solve"):
            step = -self.factor.solve(self.evaluator.gradient)
        return self._finite_or_failure(step)

    def info(self) -> dict:
        d = {"name": self.name, "columns": self.layout.n_columns, "nnz_lower": self.pattern.nnz,
             "ordering": self.factor.ordering, "factorization": self.factor.mode,
             "analysis_seconds": self.factor.analysis_seconds}
        if self.factor.factorized:
            d["factor_nnz"] = self.factor.factor_nnz()
        return d
