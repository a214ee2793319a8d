"""The information matrix J^T W J at the solution, reduced to the blocks a factorization needs.

Evaluated once at the current parameter values with the evaluator's whitened, loss-corrected
Jacobian (so Sigma^-1 weighting and robust losses enter at their final weights, as in the last LM
step, with zero damping). Two forms, chosen by the problem's structure:

* with an eliminated group whose blocks each touch residuals of at most one eliminated block (BA:
  points), the Schur form: H = [[U, W], [W^T, V]], V block-diagonal, and the reduced matrix
  M = S = U - W V^+ W^T over the kept blocks (BA: cameras);
* otherwise M = H itself over all blocks (pose graphs, curve fits).

Rank honesty, block by block (a block's "own" information is its diagonal block of H, U_bb or V_p,
after Jacobi scaling to unit diagonal): a direction d with U_bb d = 0 (or V_p d = 0) changes no
residual, so it is a null direction of H confined to that block. Its covariance is not defined:
the block is reported undefined with the reason (a point seen by one camera: V_p of rank 2), and
the direction is taken out of the system so that it cannot pollute any other block: V_p^+ (a
generalized inverse, see :func:`observable_part`; S = U - W V^+ W^T is the same for every one,
because the columns of W^T lie in the range of V_p) in the elimination, and c d d^T added to M's
diagonal block for a kept block (c its largest eigenvalue), which decouples d exactly because
H d = 0. Coordinates held constant have zero Jacobian columns; they get a 1 on M's diagonal (or
are left out of V_p^+) and zero covariance. The relative eigenvalue threshold is
``rank_tolerance``.
"""
from __future__ import annotations

from typing import Dict

import numba
import numpy as np
import scipy.sparse as sp

from sparselm.core.evaluator import Evaluator
from sparselm.core.layout import Layout, accumulate_normal_matrix, build_normal_pattern
from sparselm.core.problem import Problem
from sparselm.linalg.base import LinearSolverOptions
from sparselm.linalg.schur.direct import SchurSolver
from sparselm.linalg.schur.structure import schur_applicable
from sparselm.linalg.schur.structure_kernels import pair_block
from sparselm.util.timing import PhaseTimer

PRIVATE_S_BYTES = 512 * 2**20  # cap on the per-thread copies of S's values in the elimination


@numba.njit(parallel=True, cache=True)
def _eliminated_products(chunks, cells_of_e, cell_f, pair_start, pair_target, table, w, v_pinv, colptr, target_col,
                         target_within, target_diag, block_size, y, private):
    """private[chunk] += W V^+ W^T of the chunk's points (chunks of points, one per thread, so that
    no two threads write one S entry): Y_a = W_a V_p^+ for p's cells, then every pair a >= b."""
    ke = w.shape[2]
    for ch in numba.prange(chunks.shape[0] - 1):
        out = private[ch]
        yc = y[ch]
        for p in range(chunks[ch], chunks[ch + 1]):
            c0 = cells_of_e[p]
            n_cells = cells_of_e[p + 1] - c0
            for i in range(n_cells):
                for r in range(w.shape[1]):
                    for x in range(ke):
                        t = 0.0
                        for z in range(ke):
                            t += w[c0 + i, r, z] * v_pinv[p, z, x]
                        yc[i, r, x] = t
            q = pair_start[p]
            for i in range(n_cells):
                ka = block_size[cell_f[c0 + i]]
                for j in range(i + 1):
                    kb = block_size[cell_f[c0 + j]]
                    t_id = pair_block(table, pair_target, q, cell_f[c0 + j], cell_f[c0 + i])
                    q += 1
                    for cc in range(kb):
                        base = colptr[target_col[t_id] + cc] + target_within[t_id] - cc
                        start = cc if target_diag[t_id] else 0
                        for rr in range(start, ka):
                            t = 0.0
                            for x in range(ke):
                                t += yc[i, rr, x] * w[c0 + j, cc, x]
                            out[base + rr] += t


@numba.njit(cache=True)
def _eliminate_rhs(cells_of_e, cell_e, cell_f, block_col, block_size, w, v_x, out):
    """out[f rows] -= W_cell (V^+ x_e)_p for every cell (p, f); v_x is (n_e, ke, r)."""
    ke = w.shape[2]
    for cell in range(cell_f.shape[0]):
        p = cell_e[cell]
        fc = block_col[cell_f[cell]]
        for a in range(block_size[cell_f[cell]]):
            for c in range(v_x.shape[2]):
                t = 0.0
                for k in range(ke):
                    t += w[cell, a, k] * v_x[p, k, c]
                out[fc + a, c] -= t


@numba.njit(parallel=True, cache=True)
def _extend_solution(cells_of_e, cell_f, block_col, block_size, e_col0, w, v_pinv, x, work, y):
    """y_e = V^+ (x_e - W^T y_f) point by point (y_f already in y); x, y are (n_columns, r),
    work an (n_e, ke) scratch array."""
    ke = w.shape[2]
    for p in numba.prange(cells_of_e.shape[0] - 1):
        c0 = e_col0 + p * ke
        t = work[p]
        for c in range(x.shape[1]):
            for k in range(ke):
                t[k] = x[c0 + k, c]
            for cell in range(cells_of_e[p], cells_of_e[p + 1]):
                f = cell_f[cell]
                fc = block_col[f]
                for q in range(block_size[f]):
                    yq = y[fc + q, c]
                    for k in range(ke):
                        t[k] -= w[cell, q, k] * yq
            for a in range(ke):
                s = 0.0
                for k in range(ke):
                    s += v_pinv[p, a, k] * t[k]
                y[c0 + a, c] = s


def diagonal_block_positions(colptr: np.ndarray, block_col: np.ndarray, block_size: np.ndarray) -> np.ndarray:
    """(nb, k, k) positions in a lower block-CSC pattern (see :class:`sparselm.core.layout.BlockPattern`)
    of each diagonal block's entry (rr, cc), rr >= cc; -1 above the diagonal and in padding."""
    k = int(block_size.max())
    rr, cc = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    cols = block_col[:, None, None] + cc[None]
    valid = (rr[None] >= cc[None]) & (rr[None] < block_size[:, None, None]) & (cc[None] < block_size[:, None, None])
    pos = colptr[np.where(valid, cols, 0)] + rr[None] - cc[None]
    return np.where(valid, pos, -1)


def symmetric_blocks(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The (nb, k, k) symmetric blocks whose lower entries sit at ``positions`` (-1: zero)."""
    lower = np.where(positions >= 0, values[np.maximum(positions, 0)], 0.0)
    return lower + np.swapaxes(np.tril(lower, -1), 1, 2)


def observable_part(blocks: np.ndarray, held: np.ndarray, rank_tolerance: float):
    """Split symmetric PSD blocks (nb, k, k) into observable and unobservable directions.

    held (nb, k) bool: coordinates held constant (zero rows/columns, ignored). Returns
    (pinv, null_directions, null_count): a generalized inverse B^- (B B^- B = B: the pseudo-inverse
    of the block scaled to unit diagonal, unscaled again; the exact inverse of a full-rank block;
    zero on held coordinates), the unit null directions (nb, k, k) (columns; the first null_count[b] are
    used) and their count. A direction is unobservable when its eigenvalue, after scaling the block
    to unit diagonal, is below ``rank_tolerance`` times the largest.
    """
    nb, k, _ = blocks.shape
    diag = np.einsum("bii->bi", blocks)
    scale = np.where((diag > 0) & ~held, 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)), 0.0)
    scaled = blocks * scale[:, :, None] * scale[:, None, :] + held[:, :, None] * np.eye(k)[None]
    lam, vec = np.linalg.eigh(scaled)
    top = np.maximum(lam[:, -1:], 0.0)
    observable = lam > rank_tolerance * np.maximum(top, np.finfo(float).tiny)
    inv_lam = np.where(observable, 1.0 / np.where(observable, lam, 1.0), 0.0)
    pinv_scaled = np.einsum("bij,bj,bkj->bik", vec, inv_lam, vec)
    free = ~held
    pinv = pinv_scaled * scale[:, :, None] * scale[:, None, :] * free[:, :, None] * free[:, None, :]
    null = ~observable
    null_count = null.sum(axis=1)
    # back to unscaled coordinates: d = D^-1/2-scaled eigenvector, only on coordinates with info;
    # a coordinate with zero information (and not held) is itself a null direction.
    unscaled = np.where(scale[:, :, None] > 0, vec * scale[:, :, None], vec * free[:, :, None])
    order = np.argsort(~null, axis=1, kind="stable")  # null directions first
    directions = np.take_along_axis(unscaled, order[:, None, :], axis=2)
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    directions = directions / np.where(norms > 0, norms, 1.0)
    return pinv, directions, null_count


class Information:
    """J^T W J at the problem's current values, as the reduced matrix M plus the elimination.

    After construction: ``matrix`` (lower CSC of M over the first ``n_kept_columns`` columns, with
    constant coordinates and block-local null directions pinned, see the module docstring),
    ``undefined`` {free block id: reason}, ``cost`` (1/2 sum rho), ``n_residuals``.
    """

    def __init__(self, problem: Problem, layout: Layout, timer: PhaseTimer, rank_tolerance: float):
        self.layout = layout
        self.rank_tolerance = rank_tolerance
        evaluator = Evaluator(problem, layout, timer)
        values = {name: g.values for name, g in problem.parameter_groups.items()}
        self.n_residuals = int(sum(rg.n_instances * rg.residual_size for rg in problem.residual_groups))
        self.undefined: Dict[int, str] = {}
        self.local_null_dimension = 0
        self.schur = None
        with timer.phase("covariance_linearization"):
            self.cost = evaluator.linearize(values, gradient=False)
            if schur_applicable(layout):
                self._build_schur(evaluator, timer)
            else:
                self._build_normal(evaluator)

    # -- the two forms ------------------------------------------------------------------------
    def _build_normal(self, evaluator: Evaluator) -> None:
        lay = self.layout
        normal = build_normal_pattern(lay)
        p = normal.pattern
        values = np.zeros(p.nnz)
        for rl, jac, (ptr, inst, sa, sb) in zip(lay.residuals, evaluator.jacobians, normal.contributions):
            accumulate_normal_matrix(ptr, inst, sa, sb, rl.slot_offset, p.colptr, p.target_col, p.target_ncol,
                                     p.target_nrow, p.target_within, p.target_diag, jac, values)
        self.n_kept_blocks, self.n_kept_columns = lay.n_blocks, lay.n_columns
        self._finish(p, values, values.copy())

    def _build_schur(self, evaluator: Evaluator, timer: PhaseTimer) -> None:
        lay = self.layout
        solver = SchurSolver(lay, evaluator, timer, LinearSolverOptions())
        solver.linearize()
        st = self.schur = solver.structure
        self.n_kept_blocks, self.n_kept_columns = st.n_f_blocks, st.e_col0
        self.w = solver.w
        ke = st.e_size
        held = lay.constant_columns[st.e_col0:].reshape(st.n_e_blocks, ke)
        self.v_pinv, _, null_count = observable_part(solver.v, held, self.rank_tolerance)
        self.local_null_dimension += int(null_count.sum())
        for p in np.flatnonzero(null_count):
            self.undefined[st.n_f_blocks + int(p)] = (f"its own information matrix has rank {ke - int(null_count[p])} "
                                                      f"< {ke} (e.g. a point seen from one camera)")
        u_values = solver.u_values
        s_values = u_values.copy()
        p = st.pattern
        n_chunks = max(1, min(numba.get_num_threads(), PRIVATE_S_BYTES // max(8 * p.nnz, 1), st.n_e_blocks))
        chunks = np.searchsorted(st.pair_start, np.linspace(0, st.pair_start[-1], n_chunks + 1)).astype(np.int64)
        chunks[0], chunks[-1] = 0, st.n_e_blocks
        y = np.zeros((n_chunks, max(st.max_cells, 1), solver.w.shape[1], ke))
        private = np.zeros((n_chunks, p.nnz))
        _eliminated_products(chunks, st.cells_of_e, st.cell_f, st.pair_start, st.pair_target, st.table, solver.w,
                             self.v_pinv, p.colptr, p.target_col, p.target_within, p.target_diag, lay.block_size, y,
                             private)
        s_values -= private.sum(axis=0)
        self._finish(p, s_values, u_values)

    def _finish(self, pattern, values: np.ndarray, own_values: np.ndarray) -> None:
        """Pin constant coordinates and block-local null directions of the kept blocks in M."""
        lay = self.layout
        nb = self.n_kept_blocks
        self.pattern = pattern
        positions = diagonal_block_positions(pattern.colptr, lay.block_col[:nb], lay.block_size[:nb])
        k = positions.shape[1]
        held = np.ones((nb, k), dtype=bool)
        cols = lay.block_col[:nb, None] + np.arange(k)[None]
        inside = np.arange(k)[None] < lay.block_size[:nb, None]
        held[inside] = lay.constant_columns[cols[inside]]
        own = symmetric_blocks(own_values, positions)
        _, directions, null_count = observable_part(own, held, self.rank_tolerance)
        self.local_null_dimension += int(null_count.sum())
        diag_pos = positions[:, np.arange(k), np.arange(k)]
        values[diag_pos[held & inside]] += 1.0
        for b in np.flatnonzero(null_count):
            kb = int(lay.block_size[b])
            self.undefined[int(b)] = (f"its own information matrix has rank {kb - int(null_count[b])} < {kb}: "
                                      "a direction of this block changes no residual")
            d = directions[b, :, :null_count[b]]
            c = max(float(np.abs(own[b]).max()), 1.0)
            valid = positions[b] >= 0
            values[positions[b][valid]] += c * (d @ d.T)[valid]
        self.values = values
        n = self.n_kept_columns
        self.matrix = sp.csc_matrix((values, pattern.indices, pattern.colptr), shape=(n, n))
        self.matrix.has_sorted_indices = True
        self.held_columns = lay.constant_columns.copy()

    # -- the elimination as an operator -------------------------------------------------------
    def reduce(self, x: np.ndarray) -> np.ndarray:
        """x (n_columns, r) -> x_f - W V^+ x_e (n_kept_columns, r); x itself without elimination."""
        if self.schur is None:
            return x.copy()
        st, lay = self.schur, self.layout
        out = np.array(x[:st.e_col0], dtype=np.float64, order="C")
        v_x = np.einsum("pij,pjr->pir", self.v_pinv, x[st.e_col0:].reshape(st.n_e_blocks, st.e_size, -1))
        _eliminate_rhs(st.cells_of_e, st.cell_e, st.cell_f, lay.block_col, lay.block_size, self.w,
                       np.ascontiguousarray(v_x), out)
        return out

    def extend(self, y_f: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The full (n_columns, r) solution from the kept part y_f: y_e = V^+ (x_e - W^T y_f)."""
        if self.schur is None:
            return y_f.copy()
        st, lay = self.schur, self.layout
        y = np.zeros((lay.n_columns, y_f.shape[1]))
        y[:st.e_col0] = y_f
        _extend_solution(st.cells_of_e, st.cell_f, lay.block_col, lay.block_size, st.e_col0, self.w, self.v_pinv,
                         np.ascontiguousarray(x, dtype=np.float64), np.zeros((st.n_e_blocks, st.e_size)), y)
        return y
