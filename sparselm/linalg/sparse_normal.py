"""Sparse normal Cholesky: lower(J^T J) assembled into a fixed CSC pattern, factored by CHOLMOD.

The pattern, the per-target contribution lists (see :mod:`sparselm.core.layout`) and CHOLMOD's
symbolic analysis are built once. Per linearisation the values of lower(J^T J) are gathered into
the pattern; per damping trial D is added on the diagonal and CHOLMOD refactors numerically.
"""
from __future__ import annotations

import numpy as np

from sparselm.linalg.base import LinearSolution, LinearSolver, LinearSolverSpec, StructureCounts
from sparselm.linalg.cholmod import CholmodFactor
from sparselm.linalg.flops import cholmod_factor_flops, normal_assembly_flops
from sparselm.linalg.general_normal import GeneralSparseNormalCholesky
from sparselm.linalg.memory_model import F8, MemoryContext, factor_items, lower_dense
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


def sparse_normal_memory(ctx: MemoryContext) -> None:
    """lower(J^T J): values (twice) and row indices, the per-target contribution lists and their build
    temporaries, and CHOLMOD's copy and factor."""
    c = ctx.counts
    entries = 0  # slot pairs (a, b) with block_a >= block_b: the contributions to lower(J^T J)
    offdiag = 0  # off-diagonal lower(J^T J) entries, one k_a x k_b block per instance at most
    for rg in ctx.problem.residual_groups:
        sizes = [c.size[name] for name in rg.groups]  # tangent sizes
        s = len(sizes)
        entries += rg.n_instances * s * (s + 1) // 2
        offdiag += rg.n_instances * sum(sizes[a] * sizes[b] for a in range(s) for b in range(a))
    nnz = min(c.diag_lower + offdiag, lower_dense(c.n_columns))
    ctx.add("normal matrix", 3 * nnz * F8 + c.n_columns * F8)
    ctx.add("normal structure", 3 * entries * F8 + 4 * entries * F8)  # lists + build temporaries
    factor_items(ctx, nnz, ctx.factor_nnz, "lower(J^T J)")


def sparse_normal_flops(c: StructureCounts) -> dict:
    """CHOLMOD's factorization and solve, assembly of J^T J."""
    return {**cholmod_factor_flops(c), **normal_assembly_flops(c)}


SPEC = LinearSolverSpec(
    name="sparse_normal_cholesky", solver=SparseNormalCholesky,
    summary="lower(J^T J) in a fixed sparse pattern, CHOLMOD Cholesky", memory=sparse_normal_memory,
    model_flops=sparse_normal_flops, uses_cholmod=True, options=("ordering", "factorization"),
    general=GeneralSparseNormalCholesky)
