"""Implicit Schur PCG that reads the Jacobian: the default ``iterative_schur`` for bundle adjustment.

The same reduced system and PCG as :mod:`sparselm.linalg.schur.iterative` (implicit variant), but
W = J_f^T J_e is never formed: every product with W goes through the Jacobian rows themselves
(:mod:`sparselm.linalg.schur.implicit_kernels`), as Ceres' implicit Schur complement does, and
nothing is stored per cell or per pair of cells. What it keeps per observation is the Jacobian
and the residuals the evaluator holds anyway, plus one 32-bit e-slot, e-block and U-target entry;
per point V and V^-1; per camera U's diagonal blocks (only U's own blocks are in its pattern),
the preconditioner blocks and the CG vectors (:func:`implicit_schur_memory`).

It applies when exactly one residual group touches the eliminated blocks, each instance at most
one of them (bundle adjustment); :func:`iterative_schur_solver` picks it then, and the W-based
:class:`~sparselm.linalg.schur.iterative.IterativeSchur` otherwise. Phases timed: ``assembly``
(V, U, gradient, column norms per linearisation), per trial ``elimination`` (V^-1, rhs and the
Schur-Jacobi blocks, one pass over the points), ``preconditioner``, ``cg``, ``back_substitution``.
"""
from __future__ import annotations

from typing import Optional

import numba
import numpy as np

from sparselm.core.layout import build_block_pattern, slot_pairs
from sparselm.linalg.base import LinearSolution, LinearSolver
from sparselm.linalg.schur.block_pcg import BlockPCG
from sparselm.linalg.schur.implicit_kernels import (diagonal_u_targets, instance_points, jacobian_schur_kernels,
                                                    point_instance_ranges, points_with_repeated_blocks,
                                                    slot_block_counts)
from sparselm.linalg.schur.linearize import chunk_instances, group_pass_kernel, reduce_linearization
from sparselm.linalg.schur.unrolled import slp_vectorization
from sparselm.linalg.schur.pcg import chunk_by_work, csr_matvec_dot, gather_values, implicit_kernels, symmetric_csr
from sparselm.util import pages

PRECONDITIONERS = ("schur_jacobi", "jacobi")


def eliminated_group_index(layout) -> Optional[int]:
    """The residual group that alone touches the eliminated blocks, each instance at most once and always
    in the same slot; None when there is none, several, or the eliminated blocks differ in size."""
    n_f = layout.n_reduced_blocks
    e_sizes = layout.block_size[n_f:]
    if n_f in (0, layout.n_blocks) or (e_sizes != e_sizes[0]).any():
        return None
    counts = [slot_block_counts(rl.block, n_f) for rl in layout.residuals]
    touching = [g for g, (e_in_slot, _, _, _) in enumerate(counts) if e_in_slot.any()]
    if len(touching) != 1:
        return None
    e_in_slot, _, multi_e, _ = counts[touching[0]]
    if multi_e or np.count_nonzero(e_in_slot) != 1:
        return None  # an instance touching two eliminated blocks, or eliminated blocks in two slots
    return touching[0]


def _index_dtype(n: int):
    return np.int32 if n < 2**31 - 1 else np.int64


class ImplicitSchur(LinearSolver):
    """Preconditioned CG on the Schur complement, products through J (see the module docstring)."""

    name = "iterative_schur"
    provides_gradient = True

    def __init__(self, layout, evaluator, timer, options, termination: Optional[str] = None,
                 group: Optional[int] = None):
        super().__init__(layout, evaluator, timer, options)
        self.preconditioner = options.preconditioner
        if self.preconditioner not in PRECONDITIONERS:
            raise ValueError(f"iterative_schur: unknown preconditioner {self.preconditioner!r}; "
                             f"choose one of {', '.join(PRECONDITIONERS)}")
        g_e = eliminated_group_index(layout) if group is None else group
        if g_e is None:
            raise ValueError("ImplicitSchur needs one residual group touching the eliminated blocks "
                             "(use IterativeSchur)")
        with timer.phase("symbolic"):
            self._setup(g_e, termination or str(options.extra.get("cg_termination", "quadratic")))

    def _setup(self, g_e: int, termination: str) -> None:
        lay = self.layout
        n_f = self.n_f = lay.n_reduced_blocks
        n_r = self.n_r = lay.n_reduced_columns
        n_e = self.n_e = lay.n_blocks - n_f
        ke = self.ke = int(lay.block_size[n_f])
        kf = self.kf = int(lay.block_size[:n_f].max())
        self.g_e = g_e
        f_col, f_size = lay.block_col[:n_f], lay.block_size[:n_f]
        threads = numba.get_num_threads()
        # per residual group: e-slot and e-block of each instance (group g_e only), U targets
        self._e_slot, self._e_local, self._combos = [], [], []
        u_keys = [np.arange(n_f, dtype=np.int64) * (n_f + 1)]
        counts = [slot_block_counts(rl.block, n_f) for rl in lay.residuals]
        e_col = int(np.flatnonzero(counts[g_e][0])[0])  # the slot holding the eliminated blocks
        for g, rl in enumerate(lay.residuals):
            n = rl.block.shape[0]
            dt = _index_dtype(max(n, n_e))
            if g == g_e:
                e_slot, e_local = pages.zeros(n, dtype=dt), pages.zeros(n, dtype=dt)
                if instance_points(rl.block, e_col, n_f, e_slot, e_local):
                    raise AssertionError("ImplicitSchur: instances are not sorted by eliminated block")
            else:
                e_slot = e_local = np.broadcast_to(np.array(-1, dtype=dt), (n,))
            self._e_slot.append(e_slot)
            self._e_local.append(e_local)
            if counts[g][3]:  # some instance touches two f-blocks: U has off-diagonal blocks
                inst, sa, sb = slot_pairs(rl.block, n_f)
                u_keys.append(np.maximum(rl.block[inst, sa], rl.block[inst, sb]) * n_f
                              + np.minimum(rl.block[inst, sa], rl.block[inst, sb]))
        self.pattern = build_block_pattern(np.concatenate(u_keys), f_col, f_size)
        for g, rl in enumerate(lay.residuals):
            self._combos.append(self._u_targets(rl.block, n_f, counts[g][1] > 0))
        self._inst_ptr = point_instance_ranges(self._e_local[g_e], n_e)
        block_e = lay.residuals[g_e].block
        self._repeated = points_with_repeated_blocks(self._inst_ptr, block_e, n_f)
        n_chunks = max(1, min(threads, n_e))
        self._chunk_pts = chunk_by_work(self._inst_ptr, n_chunks)
        self._chunk_inst = [chunk_instances(self._e_local[g], n_chunks) if g == g_e else
                            np.linspace(0, rl.block.shape[0], n_chunks + 1).astype(np.int64)
                            for g, rl in enumerate(lay.residuals)]
        m = self.evaluator.residuals[g_e].shape[1]
        rl_e = lay.residuals[g_e]
        f_slots = tuple(j for j in range(rl_e.block.shape[1]) if j != e_col)
        self._eliminate, self._product, self._back_substitute = jacobian_schur_kernels(
            m, ke, f_slots, tuple(int(rl_e.slot_offset[j]) for j in f_slots),
            tuple(int(rl_e.slot_size[j]) for j in f_slots), int(rl_e.slot_offset[e_col]))
        self._linearize_kernels = [group_pass_kernel(res.shape[1], kf, ke, rl.slot_offset, rl.slot_size, combo_a,
                                                     combo_b)
                                   for res, rl, (combo_a, combo_b, _) in zip(self.evaluator.residuals, lay.residuals,
                                                                             self._combos)]
        _, self._reduce_blocks, _ = implicit_kernels(kf, ke)
        self._no_w = np.zeros((0, kf, ke))
        self._no_cells = [np.broadcast_to(np.array(-1, dtype=np.int64), rl.block.shape) for rl in lay.residuals]
        self._no_first = [np.broadcast_to(np.array(False), rl.block.shape) for rl in lay.residuals]
        # per linearisation
        self.v = pages.zeros((n_e, ke, ke))
        self.u_values = np.zeros(self.pattern.nnz)
        self._u_blocks = np.arange(self.pattern.n_targets, dtype=np.int64)
        self._u_priv = np.zeros((n_chunks, self.pattern.n_targets, kf, kf))
        self._g_priv = np.zeros((n_chunks, n_r))
        self._n_priv = np.zeros((n_chunks, n_r))
        # per trial
        self.v_inv = pages.zeros((n_e, ke, ke))
        self.vg = pages.zeros((n_e, ke))
        schur_pc = self.preconditioner == "schur_jacobi"
        self._p_priv = np.zeros((n_chunks if schur_pc else 0, n_f, kf, kf))
        self._rhs_priv = np.zeros((n_chunks, n_f, kf))
        self._y_priv = np.zeros((n_chunks, n_f, kf))
        self._w_work = np.zeros((n_chunks, 3, kf, ke))
        self._vec_work = np.zeros((n_chunks, 3, max(m, ke)))
        self._failures = np.zeros(n_chunks, dtype=np.int64)
        self.rhs = np.zeros(n_r)
        self.step = pages.zeros(lay.n_columns)
        self._indptr, self._indices, self._src, self._diag_slot = symmetric_csr(self.pattern)
        self._data = np.zeros(self._src.shape[0])
        self.pcg = BlockPCG(f_col, f_size, kf, self.options, termination, padded=True)
        self.termination = termination

    def _u_targets(self, block, n_f, f_in_slot):
        """(combo_a, combo_b, u_target): slot pairs that can both hold f-blocks (``f_in_slot``: per slot,
        whether some instance has an f-block there) and, per instance, the U block (index into the U
        pattern's targets) receiving J_a^T J_b, or -1."""
        n, n_slots = block.shape
        combos = [(a, b) for a in range(n_slots) for b in range(a, n_slots) if f_in_slot[a] and f_in_slot[b]]
        combo_a = np.array([c[0] for c in combos], dtype=np.int64)
        combo_b = np.array([c[1] for c in combos], dtype=np.int64)
        u_target = np.empty((n, len(combos)), dtype=_index_dtype(self.pattern.n_targets))
        if self.pattern.n_targets == n_f:  # targets ordered by column block: diagonal block b is b
            diagonal_u_targets(block, n_f, combo_a, combo_b, u_target)
            return combo_a, combo_b, u_target
        u_target.fill(-1)
        is_f = (block >= 0) & (block < n_f)
        for q, (a, b) in enumerate(combos):
            ok = np.flatnonzero(is_f[:, a] & is_f[:, b])
            hi = np.maximum(block[ok, a], block[ok, b])
            lo = np.minimum(block[ok, a], block[ok, b])
            u_target[ok, q] = self.pattern.targets_of(hi, lo)
        return combo_a, combo_b, u_target

    # -- per linearisation ----------------------------------------------------------------------
    def linearize(self) -> None:
        lay, ev, p = self.layout, self.evaluator, self.pattern
        with self.timer.phase("assembly"), slp_vectorization():
            self.v.fill(0.0)
            ev.gradient.fill(0.0)
            ev.column_norms.fill(0.0)
            for g, rl in enumerate(lay.residuals):
                combo_a, combo_b, u_target = self._combos[g]
                self._linearize_kernels[g](self._chunk_inst[g], self._e_slot[g], self._e_local[g], rl.block,
                                           rl.slot_offset, rl.slot_size, self._no_cells[g], self._no_first[g],
                                           combo_a, combo_b, u_target, self.n_f, self.n_r, lay.block_col,
                                           ev.residuals[g], ev.jacobians[g], self.v, self._no_w, ev.gradient,
                                           ev.column_norms, self._u_priv, self._g_priv, self._n_priv, g == 0)
            reduce_linearization(self._u_priv, self._g_priv, self._n_priv, self._u_blocks, p.colptr, p.target_col,
                                 p.target_ncol, p.target_nrow, p.target_within, p.target_diag, self.u_values,
                                 ev.gradient, ev.column_norms)

    # -- per trial ------------------------------------------------------------------------------
    def solve(self, diagonal: np.ndarray) -> LinearSolution:
        lay, g = self.layout, self.evaluator.gradient
        rl = lay.residuals[self.g_e]
        jac = self.evaluator.jacobians[self.g_e]
        schur_pc = self.preconditioner == "schur_jacobi"
        with self.timer.phase("elimination"):
            self._eliminate(self._chunk_pts, self._inst_ptr, rl.block, self.n_f, jac, self.v, diagonal, self.n_r, g,
                            self._repeated, schur_pc, self.v_inv, self.vg, self._w_work, self._vec_work, self._p_priv,
                            self._rhs_priv, self._failures)
            p_priv, rhs_priv, failures = self.combine_elimination(self._p_priv, self._rhs_priv,
                                                                  int(self._failures.sum()))
        if failures:
            return self._done(self._failed(f"iterative_schur: {failures} eliminated blocks not positive definite"))
        with self.timer.phase("preconditioner"):
            gather_values(self._src, self.u_values, self._diag_slot, diagonal, self._data)
            failures = self._reduce_blocks(self.pcg.f_col, self.pcg.f_size, self.pattern.colptr, self.u_values,
                                           diagonal, True, g, schur_pc, p_priv, True, rhs_priv, self.pcg.p_inv,
                                           self.rhs)
        if failures:
            return self._done(self._failed(f"iterative_schur: {failures} preconditioner blocks not positive definite "
                                           "(the reduced camera matrix is not positive definite)"))
        with self.timer.phase("cg"):
            step_f = self.pcg.run(self.rhs, self._matvec)
        if step_f is None:
            return self._done(self._failed(self.pcg.message))
        with self.timer.phase("back_substitution"):
            step = self.step
            step[:self.n_r] = step_f
            x_pad = self.pcg.p_pad
            x_pad[self.pcg.col_block, self.pcg.col_within] = step_f
            self._back_substitute(self._chunk_pts, self._inst_ptr, rl.block, self.n_f, jac, self.v_inv, g, self.n_r,
                                  x_pad, self._vec_work, step)
        sol = self._finite_or_failure(step)
        if sol.ok:
            sol.message = self.pcg.message
        return self._done(sol)

    def _done(self, sol: LinearSolution) -> LinearSolution:
        sol.iterations = self.pcg.last_iterations
        sol.exact = False  # CG stops early: the minimizer evaluates the model decrease with J
        return sol

    def _matvec(self, x, x_pad, y) -> float:
        """y = S x (x_pad: x per f-block, padded); returns x . y."""
        rl = self.layout.residuals[self.g_e]
        self._product(self._chunk_pts, self._inst_ptr, rl.block, self.n_f, self.evaluator.jacobians[self.g_e],
                      self.v_inv, x_pad, self._vec_work, self._y_priv)
        y_priv = self.combine_products(self._y_priv)
        return csr_matvec_dot(self._indptr, self._indices, self._data, x, y_priv, self.pcg.col_block,
                              self.pcg.col_within, y)

    # -- hooks for a distributed subclass (sparselm.distributed): identity here ----------------
    def u_csr_sources(self) -> np.ndarray:
        """Positions in :attr:`u_values` of the entries of U's symmetric CSR (row-major, each off-diagonal
        entry twice); its order depends on U's block structure only."""
        return self._src

    def combine_elimination(self, p_priv: np.ndarray, rhs_priv: np.ndarray, failures: int):
        """The elimination's per-chunk outputs (Schur-Jacobi blocks (chunks, n_f, kf, kf), right-hand-side
        parts (chunks, n_f, kf)) and its count of eliminated blocks that are not positive definite, as the
        preconditioner reduction should see them."""
        return p_priv, rhs_priv, failures

    def combine_products(self, y_priv: np.ndarray) -> np.ndarray:
        """The product's per-chunk parts of W V^-1 W^T x (chunks, n_f, kf), as the matvec subtracts them."""
        return y_priv

    @property
    def last_cg_iterations(self) -> int:
        """CG iterations of the last solve."""
        return self.pcg.last_iterations

    @property
    def last_relative_residual(self) -> float:
        """||S x - rhs|| / ||rhs|| at the end of the last solve's CG."""
        return self.pcg.last_relative_residual

    def info(self) -> dict:
        return {"name": self.name, "variant": "implicit (Jacobian products)", "reduced_columns": self.n_r,
                "eliminated_blocks": self.n_e, "preconditioner": self.preconditioner,
                "cg_termination": self.termination, "cg_tolerance": self.options.cg_tolerance,
                "max_cg_iterations": self.options.max_cg_iterations,
                "min_cg_iterations": self.options.min_cg_iterations,
                "total_cg_iterations": self.pcg.total_iterations, "nnz_U": self.pattern.nnz}
