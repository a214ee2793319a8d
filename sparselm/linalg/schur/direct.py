"""Schur-complement solvers: eliminate the e-blocks (BA: points), solve the reduced system.

``sparse_schur`` factors S with CHOLMOD (symbolic analysis once, numeric refactorization per
damping trial); ``dense_schur`` factors the same S densely with LAPACK, for few f-blocks.
The math and the structures are in :mod:`sparselm.linalg.schur.structure`, the kernels in
:mod:`sparselm.linalg.schur.kernels`. Phases timed: ``assembly`` (V, W, U per linearisation),
``schur_complement`` (V^-1, S and its right-hand side, one fused pass), ``factorization``,
``solve`` and ``back_substitution``.

Where S's values live. The kernels address entry (rr, cc) of S block t as
``colptr[tcol_t + cc] + within_t + rr - cc`` (:mod:`sparselm.core.layout`). With the CSC pattern's
colptr and within that is lower(S) in CSC order, which CHOLMOD reads. dense_schur passes instead
colptr[c] = c (n + 1) and within_t = r0_t - c0_t, which makes the same expression
(c0 + cc) n + r0 + rr, the column-major position in a dense n x n array: the kernels fill the dense
lower triangle directly and no CSC pattern (row indices) of S is built. When the points touch most of
S, dense_schur forms it by the stacked elimination instead of the cell-pair updates (one Gram product
of all the points' factors, see :mod:`sparselm.linalg.schur.eliminate`); ``info()["elimination"]``
says which.
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.linalg

from sparselm.linalg.base import LinearSolution, LinearSolver, LinearSolverSpec, StructureCounts
from sparselm.linalg.cholmod import CholmodFactor
from sparselm.linalg.flops import cholmod_factor_flops, dense_factor_flops, schur_flops
from sparselm.linalg.schur import memory as schur_memory
from sparselm.linalg.schur.kernels import back_substitution_kernel
from sparselm.linalg.schur.linearize import chunk_instances, group_pass_kernel, reduce_linearization
from sparselm.linalg.schur.eliminate import (chunk_points_by_pairs, pair_update_flops, point_pass_kernel,
                                             reduce_chunks, reduce_stacked, stacked_elimination_pays, stacked_flops,
                                             stacked_point_pass_kernel, stack_block_points)
from sparselm.linalg.schur.structure import build_schur_structure
from sparselm.linalg.schur.unrolled import slp_vectorization
from sparselm.util import pages

DENSE_SCHUR_MAX_COLUMNS = 2000


class SchurSolver(LinearSolver):
    """Shared elimination and back-substitution; subclasses factor and solve S.

    Its fused linearisation pass also computes the gradient and the column norms, so the
    evaluator skips its own (``provides_gradient``)."""

    provides_gradient = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        with self.timer.phase("symbolic"):
            st = self.structure = build_schur_structure(self.layout)
            lay = self.layout
            ke, n_e = st.e_size, st.n_e_blocks
            kf = int(lay.block_size[:st.n_f_blocks].max())
            n_chunks = schur_memory.chunk_count(numba.get_num_threads(), st.pattern.n_targets, kf)
            self._prepare_elimination(n_chunks, kf, ke)
            self._back_substitute = back_substitution_kernel(kf, ke)
            self.v = np.empty((n_e, ke, ke))  # zeroed by every linearize(); w is stored by its first contribution
            self.v_inv = np.zeros((n_e, ke, ke))
            self._work_e = np.zeros((n_e, ke))
            self.vg = np.zeros((n_e, ke))
            self.w = pages.zeros((st.n_cells, kf, ke))  # rows past a smaller f-block's size stay zero
            self._chol_work = np.zeros((n_chunks, 2, ke, ke))
            self._failures = np.zeros(n_chunks, dtype=np.int64)
            self._rhs_private = np.zeros((n_chunks, st.n_f_blocks, kf))
            self._u_private = np.zeros((n_chunks, st.u_blocks.shape[0], kf, kf))
            self._g_private = np.zeros((n_chunks, lay.n_reduced_columns))
            self._n_private = np.zeros((n_chunks, lay.n_reduced_columns))
            self._chunk_instances = [chunk_instances(gm.e_local, n_chunks) for gm in st.groups]
            self._linearize_kernels = [group_pass_kernel(res.shape[1], kf, ke, rl.slot_offset, rl.slot_size,
                                                         gm.combo_a, gm.combo_b)
                                       for res, rl, gm in zip(self.evaluator.residuals, lay.residuals, st.groups)]
            self._s_colptr, self._s_within, self._s_diagonal, size = self._s_addressing()
            self.u_values = np.zeros(size)
            self.s_values = np.zeros(size)
            self.rhs = np.zeros(lay.n_reduced_columns)
            self.step = np.zeros(lay.n_columns)

    def linearize(self) -> None:
        st, lay, ev = self.structure, self.layout, self.evaluator
        p = st.pattern
        with self.timer.phase("assembly"), slp_vectorization():
            self.v.fill(0.0)
            ev.gradient.fill(0.0)
            ev.column_norms.fill(0.0)
            for g, (rl, gm) in enumerate(zip(lay.residuals, st.groups)):
                self._linearize_kernels[g](self._chunk_instances[g], st.e_slot[g], gm.e_local, rl.block,
                                           rl.slot_offset, rl.slot_size, gm.cell_of, gm.cell_first, gm.combo_a,
                                           gm.combo_b, gm.u_target, st.n_f_blocks, st.e_col0, lay.block_col,
                                           ev.residuals[g], ev.jacobians[g], self.v, self.w, ev.gradient,
                                           ev.column_norms, self._u_private, self._g_private, self._n_private, g == 0)
            reduce_linearization(self._u_private, self._g_private, self._n_private, st.u_blocks, self._s_colptr,
                                 p.target_col, p.target_ncol, p.target_nrow, self._s_within, p.target_diag, self.u_values,
                                 ev.gradient, ev.column_norms)

    def _prepare_elimination(self, n_chunks: int, kf: int, ke: int) -> None:
        """Set up the point pass: the cell-pair updates (:func:`point_pass_kernel`), chunks balanced by
        cell pairs, their private copies of S's blocks and Z scratch."""
        st = self.structure
        self._chunk_points = chunk_points_by_pairs(st.pair_start, n_chunks)
        self._point_pass = point_pass_kernel(kf, ke)
        self._z_work = np.zeros((n_chunks, max(st.max_cells, 1), ke, kf))
        self._s_private = np.zeros((n_chunks, st.pattern.n_targets, kf, kf))

    def _eliminate(self, diagonal: np.ndarray) -> int:
        """S (s_values) and its right-hand side (rhs) for the damping ``diagonal``; returns the number of
        eliminated blocks whose damped V was not positive definite (S is then not formed)."""
        st, lay, g = self.structure, self.layout, self.evaluator.gradient
        p = st.pattern
        self._point_pass(self._chunk_points, self.v, diagonal, st.e_col0, g, st.cells_of_e, st.cell_f,
                         st.pair_start, st.pair_target, st.table, self.w, self.v_inv, self.vg, self._z_work,
                         self._chol_work, self._s_private, self._rhs_private, self._failures)
        failures = int(self._failures.sum())
        if not failures:
            reduce_chunks(self._s_private, self._rhs_private, self.u_values, self._s_diagonal, diagonal,
                          self._s_colptr, p.target_col, p.target_ncol, p.target_nrow, self._s_within, p.target_diag,
                          lay.block_col, lay.block_size, g, self.s_values, self.rhs)
        return failures

    def solve(self, diagonal: np.ndarray) -> LinearSolution:
        with self.timer.phase("schur_complement"), slp_vectorization():
            failures = self._eliminate(diagonal)
            if failures:
                return self._failed(f"Schur: {failures} eliminated blocks not positive definite")
        step_f = self._solve_reduced()
        if step_f is None:
            return self._failed(f"{self.name}: reduced camera matrix not positive definite")
        return self._finite_or_failure(self._back_substitution(step_f, self._work_e))

    def _back_substitution(self, step_f: np.ndarray, work: np.ndarray) -> np.ndarray:
        """The full step: ``step_f`` and the eliminated blocks' steps from it (phase back_substitution);
        ``work`` is an (n_e, ke) scratch array."""
        st, lay = self.structure, self.layout
        with self.timer.phase("back_substitution"), slp_vectorization():
            step = self.step
            step[:st.e_col0] = step_f
            self._back_substitute(st.cells_of_e, st.cell_f, lay.block_col, lay.block_size, st.e_col0,
                                  self.evaluator.gradient, self.w, self.v_inv, work, step)
        return step

    def _s_addressing(self):
        """(colptr, within, diagonal positions, size) of S's values: lower(S) in CSC order (the module says
        how dense_schur addresses a dense array instead)."""
        p = self.structure.pattern
        return p.colptr, p.target_within, p.diagonal_positions, p.nnz

    def lower_matrix(self, values: np.ndarray) -> np.ndarray:
        """``values`` laid out as S's (``s_values`` or ``u_values``) as a dense lower-triangular array."""
        return self.structure.pattern.matrix(values).toarray()

    def _solve_reduced(self):
        """Factor S (self.s_values, lower part, as :meth:`_s_addressing` lays it out) and solve S x = self.rhs;
        None if not PD."""
        raise NotImplementedError

    def info(self) -> dict:
        st = self.structure
        return {"name": self.name, "reduced_columns": st.e_col0, "eliminated_blocks": st.n_e_blocks,
                "cells": st.n_cells, "cell_pairs": st.n_pairs, "nnz_lower_S": st.pattern.nnz}


class SparseSchur(SchurSolver):
    """Schur complement with CHOLMOD on the reduced camera matrix."""

    name = "sparse_schur"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        with self.timer.phase("symbolic"):
            self._matrix = self.structure.pattern.matrix(self.s_values)
            self.factor = CholmodFactor(self._matrix, self.options.ordering, self.options.factorization)

    def _solve_reduced(self):
        with self.timer.phase("factorization"):
            if not self.factor.factorize(self._matrix):
                return None
        with self.timer.phase("solve"):
            return self.factor.solve(self.rhs)

    def info(self) -> dict:
        d = super().info()
        d.update(ordering=self.factor.ordering, factorization=self.factor.mode,
                 analysis_seconds=self.factor.analysis_seconds)
        if self.factor.factorized:
            d["factor_nnz"] = self.factor.factor_nnz()
        return d


class DenseSchur(SchurSolver):
    """Schur complement with a dense S and LAPACK Cholesky (few f-blocks)."""

    name = "dense_schur"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.layout.n_reduced_columns > DENSE_SCHUR_MAX_COLUMNS:
            raise ValueError(f"dense_schur is for small reduced systems (<= {DENSE_SCHUR_MAX_COLUMNS} columns), "
                             f"this one has {self.layout.n_reduced_columns}: use sparse_schur")
        n = self.layout.n_reduced_columns
        self._matrix = self.s_values.reshape(n, n, order="F")  # lower triangle filled by the kernels

    def _prepare_elimination(self, n_chunks: int, kf: int, ke: int) -> None:
        """The pair updates, or the stacked elimination when it pays (:func:`stacked_elimination_pays`):
        chunks of equal point counts, each with a block of stacked factors (:func:`stack_block_points`
        points' rows) and a private Gram product of S's size."""
        st, n = self.structure, self.layout.n_reduced_columns
        self.stacked = stacked_elimination_pays(n, st.n_e_blocks, ke, st.n_pairs, kf)
        if not self.stacked:
            super()._prepare_elimination(n_chunks, kf, ke)
            return
        self._chunk_points = np.linspace(0, st.n_e_blocks, n_chunks + 1).astype(np.int64)
        self._point_pass = stacked_point_pass_kernel(kf, ke)
        self._stack = np.empty((n_chunks, stack_block_points(n, ke) * ke, n))
        self._gram_private = np.zeros((n_chunks, n, n))

    def _eliminate(self, diagonal: np.ndarray) -> int:
        if not self.stacked:
            return super()._eliminate(diagonal)
        st, lay, g = self.structure, self.layout, self.evaluator.gradient
        self._point_pass(self._chunk_points, self.v, diagonal, st.e_col0, g, st.cells_of_e, st.cell_f, lay.block_col,
                         lay.block_size, self.w, self.v_inv, self.vg, self._stack, self._chol_work,
                         self._gram_private, self._rhs_private, self._failures)
        failures = int(self._failures.sum())
        if not failures:
            reduce_stacked(self._gram_private, self._rhs_private, self.u_values, self._s_diagonal, diagonal,
                           lay.block_col, lay.block_size, g, self.s_values, self.rhs)
        return failures

    def info(self) -> dict:
        return dict(super().info(), elimination="stacked" if self.stacked else "cell_pairs")

    def _s_addressing(self):
        n = self.layout.n_reduced_columns
        p = self.structure.pattern
        colptr = np.arange(n + 1, dtype=np.int64) * (n + 1)
        return colptr, p.target_row - p.target_col, colptr[:-1], n * n

    def lower_matrix(self, values: np.ndarray) -> np.ndarray:
        n = self.layout.n_reduced_columns
        return np.tril(values.reshape(n, n, order="F"))

    def _solve_reduced(self):
        with self.timer.phase("factorization"):
            try:  # a copy: the factor fills entries of the lower triangle that S leaves zero
                factor = scipy.linalg.cho_factor(self._matrix, lower=True, overwrite_a=False, check_finite=False)
            except (np.linalg.LinAlgError, ValueError):
                return None
        with self.timer.phase("solve"):
            return scipy.linalg.cho_solve(factor, self.rhs, check_finite=False)


def sparse_schur_flops(c: StructureCounts) -> dict:
    """CHOLMOD's factorization and solve of S, and the Schur phases."""
    return {**cholmod_factor_flops(c), **schur_flops(c)}


def dense_schur_flops(c: StructureCounts) -> dict:
    """Dense factorization and solve of S, and the Schur phases (the stacked elimination's Gram product in
    place of the cell-pair updates where dense_schur takes it)."""
    flops = {**dense_factor_flops(c), **schur_flops(c)}
    if stacked_elimination_pays(c.columns, c.n_e, c.ke, c.n_pairs, c.kf):
        flops["schur_complement"] += stacked_flops(c.columns, c.n_e, c.ke) - pair_update_flops(c.n_pairs, c.kf, c.ke)
    return flops


SPARSE_SCHUR = LinearSolverSpec(
    name="sparse_schur", solver=SparseSchur, summary="Schur complement S factored by CHOLMOD",
    memory=schur_memory.sparse_schur_memory, model_flops=sparse_schur_flops, uses_schur=True, uses_cholmod=True,
    options=("ordering", "factorization"))
DENSE_SCHUR = LinearSolverSpec(
    name="dense_schur", solver=DenseSchur, summary="Schur complement S factored densely by LAPACK (few kept blocks)",
    memory=schur_memory.dense_schur_memory, model_flops=dense_schur_flops, uses_schur=True, dense_factor=True)
