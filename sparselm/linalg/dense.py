"""Dense normal equations with LAPACK Cholesky: the reference solver for small problems.

It builds J densely from the Jacobian blocks (np.add.at scatter), so it shares no assembly code
with the sparse solvers and serves as their independent check.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from sparselm.linalg.base import LinearSolution, LinearSolver, LinearSolverSpec, StructureCounts
from sparselm.linalg.flops import dense_factor_flops, normal_assembly_flops
from sparselm.linalg.general_normal import GeneralDenseNormalCholesky
from sparselm.linalg.memory_model import F8, MemoryContext

MAX_DENSE_COLUMNS = 5000


class DenseNormalCholesky(LinearSolver):
    """H = J^T J dense, (H + diag(D)) step = -J^T r by Cholesky."""

    name = "dense"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        lay = self.layout
        if lay.n_columns > MAX_DENSE_COLUMNS:
            raise ValueError(f"linear solver 'dense' is for small problems (<= {MAX_DENSE_COLUMNS} parameters); "
                             f"this one has {lay.n_columns}: use sparse_normal_cholesky or sparse_schur")
        self._rows = []
        self._cols = []
        row0 = 0
        for rl, res in zip(lay.residuals, self.evaluator.residuals):
            n, m = res.shape
            rows = row0 + np.arange(n * m).reshape(n, m)
            cols = np.full((n, rl.jacobian_width), -1, dtype=np.int64)
            for j, (off, k) in enumerate(zip(rl.slot_offset, rl.slot_size)):
                b = rl.block[:, j]
                free = b >= 0
                cols[free, off:off + k] = lay.block_col[b[free]][:, None] + np.arange(k)
            self._rows.append(rows)
            self._cols.append(cols)
            row0 += n * m
        self.n_rows = row0
        self.hessian = np.zeros((lay.n_columns, lay.n_columns))
        self.gradient = np.zeros(lay.n_columns)

    def jacobian_matrix(self) -> np.ndarray:
        """The dense (n_residuals, n_columns) Jacobian of the current linearisation."""
        jac = np.zeros((self.n_rows, self.layout.n_columns))
        for rows, cols, values in zip(self._rows, self._cols, self.evaluator.jacobians):
            n, m, w = values.shape
            r = np.broadcast_to(rows[:, :, None], (n, m, w))
            c = np.broadcast_to(cols[:, None, :], (n, m, w))
            keep = c >= 0
            np.add.at(jac, (r[keep], c[keep]), values[keep])
        return jac

    def linearize(self) -> None:
        with self.timer.phase("assembly"):
            jac = self.jacobian_matrix()
            r = np.concatenate([res.ravel() for res in self.evaluator.residuals])
            self.hessian = jac.T @ jac
            self.gradient = jac.T @ r

    def solve(self, diagonal: np.ndarray) -> LinearSolution:
        with self.timer.phase("factorization"):
            try:
                factor = scipy.linalg.cho_factor(self.hessian + np.diag(diagonal), lower=True, check_finite=False)
            except (np.linalg.LinAlgError, ValueError):
                return self._failed("dense Cholesky: matrix not positive definite")
        with self.timer.phase("solve"):
            step = -scipy.linalg.cho_solve(factor, self.gradient, check_finite=False)
        return self._finite_or_failure(step)

    def info(self) -> dict:
        return {"name": self.name, "columns": self.layout.n_columns, "rows": self.n_rows}


def dense_memory(ctx: MemoryContext) -> None:
    """The dense Jacobian (and its temporaries) and four n x n matrices (J^T J, its damped copy, the
    factor, a product temporary)."""
    c = ctx.counts
    ctx.add("dense jacobian", c.n_rows * c.n_columns * F8 + 3 * c.jacobian_bytes)
    ctx.add("dense matrices", 4 * c.n_columns * c.n_columns * F8)


def dense_flops(c: StructureCounts) -> dict:
    """Dense factorization and solve, assembly of J^T J."""
    return {**dense_factor_flops(c), **normal_assembly_flops(c)}


SPEC = LinearSolverSpec(
    name="dense", solver=DenseNormalCholesky, summary="dense normal equations, LAPACK Cholesky (small problems)",
    memory=dense_memory, model_flops=dense_flops, dense_factor=True, general=GeneralDenseNormalCholesky)
