"""Iterative Schur: preconditioned conjugate gradients on the reduced camera system S x = rhs.

For problems with thousands of f-blocks (cameras) whose S is too dense to factor. The
elimination is that of :mod:`sparselm.linalg.schur.direct` (same V, W, U per linearisation, same
back-substitution); only the reduced solve differs. Two variants:

``implicit`` (default)
    S is never formed. Per CG iteration ``S x = (U + D_f) x - W V^-1 W^T x`` is evaluated in
    one pass over the e-blocks (points): for each e-block p, t_p = V_p^-1 sum_a W_a^T x_f(a),
    then W_a t_p is added into a per-chunk private copy of the output (points sharing a camera
    would race on it otherwise); a second parallel pass over the reduced columns adds
    (U + D_f) x from U's own nonzero blocks (block-diagonal in BA) and subtracts the chunks,
    in a fixed order, so the result is bitwise reproducible for a given thread count. Each
    iteration reads every W block once, contiguously.
``explicit``
    S is formed by the SchurSolver machinery (the fused point pass) into lower(S); once per
    trial it is copied into a full symmetric CSR (a fixed gather map built once), and the
    CG matvec is a row-parallel CSR product. Cheaper per iteration when S is small or
    moderately dense and many iterations are needed.

Preconditioners (``options.preconditioner``), block-diagonal over the f-blocks, each block
inverted by Cholesky once per trial:

``jacobi``        U_ii + D_i                                  (block Jacobi)
``schur_jacobi``  S_ii = U_ii + D_i - sum_{a in cells of i} W_a V_e(a)^-1 W_a^T

The CG loop and its forcing rules (``quadratic``, Ceres' LM rule, by default; ``residual``) are
in :mod:`sparselm.linalg.schur.block_pcg`.

Choose with ``options.extra["cg_termination"]`` or the constructor's ``termination``; the variant
with ``options.extra["schur_variant"]`` or ``variant``. A run that ends on the iteration limit
still returns its step (ok=True, with a message), as Ceres does: the LM gain ratio judges it.
Every step is marked ``exact=False`` so that the minimizer evaluates the model decrease with J.
A non-positive curvature p^T S p <= 0, a preconditioner block or an eliminated block that is
not positive definite, or non-finite values return a failed :class:`LinearSolution`, never an
exception.

Phases timed: ``assembly`` (V, W, U, per linearisation, SchurSolver's), then per trial
``schur_complement`` (explicit: V^-1, S and rhs, SchurSolver's) or ``elimination`` (implicit:
V^-1, rhs and the Schur-Jacobi blocks' W V^-1 W^T sums, one pass over the points),
``preconditioner`` (blocks reduced and inverted; the matvec's CSR values gathered), ``cg`` and
``back_substitution``.

"""
from __future__ import annotations

import math
from typing import Optional

import numba
import numpy as np

from sparselm.core.layout import slot_pairs
from sparselm.linalg.base import LinearSolution, LinearSolver, LinearSolverSpec
from sparselm.linalg.flops import schur_flops
from sparselm.linalg.schur.memory import iterative_schur_memory
from sparselm.linalg.schur.direct import SchurSolver
from sparselm.linalg.schur.kernels import back_substitute
from sparselm.linalg.schur.block_pcg import BlockPCG
from sparselm.linalg.schur.implicit import ImplicitSchur, eliminated_group_index
from sparselm.linalg.schur.pcg import chunk_by_work, csr_matvec_dot, gather_values, implicit_kernels, symmetric_csr

VARIANTS = ("implicit", "explicit")
PRECONDITIONERS = ("jacobi", "schur_jacobi")


class IterativeSchur(SchurSolver):
    """Preconditioned CG on the Schur complement, implicit (default) or explicit S."""

    name = "iterative_schur"

    def __init__(self, layout, evaluator, timer, options, variant: Optional[str] = None,
                 termination: Optional[str] = None):
        super().__init__(layout, evaluator, timer, options)
        variant = variant or str(self.options.extra.get("schur_variant", "implicit"))
        if variant not in VARIANTS:
            raise ValueError(f"iterative_schur: unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        termination = termination or str(self.options.extra.get("cg_termination", "quadratic"))
        self.termination = termination
        if self.options.preconditioner not in PRECONDITIONERS:
            raise ValueError(f"iterative_schur: unknown preconditioner {self.options.preconditioner!r}; "
                             f"choose one of {', '.join(PRECONDITIONERS)}")
        self.variant = variant
        self.preconditioner = self.options.preconditioner
        # Private attributes carry an _it_ prefix so they never collide with SchurSolver's.
        with self.timer.phase("symbolic"):
            st, lay = self.structure, self.layout
            p = st.pattern
            n_f, ke = st.n_f_blocks, st.e_size
            kf = self.w.shape[1]
            implicit = variant == "implicit"
            self._it_eliminate, self._it_reduce, self._it_w_pass = implicit_kernels(kf, ke)
            self._it_pcg = BlockPCG(lay.block_col[:n_f], lay.block_size[:n_f], kf, self.options, termination,
                                    padded=implicit)
            self._it_f_col, self._it_f_size = self._it_pcg.f_col, self._it_pcg.f_size
            self._it_p_inv, self._it_p_pad = self._it_pcg.p_inv, self._it_pcg.p_pad
            self._it_no_slots = np.zeros(0, dtype=np.int64)
            n_chunks = max(1, min(numba.get_num_threads(), st.n_e_blocks)) if implicit else 0
            self._it_chunk_e = chunk_by_work(st.cells_of_e, max(n_chunks, 1))
            schur_pc = implicit and self.preconditioner == "schur_jacobi"
            self._it_p_priv = np.zeros((n_chunks if schur_pc else 0, n_f, kf, kf))
            self._it_rhs_priv = np.zeros((n_chunks, n_f, kf))
            self._it_y_priv = np.zeros((n_chunks, n_f, kf))
            self._it_y_work = np.zeros((max(n_chunks, 1), kf, ke))
            self._it_t_work = np.zeros((max(n_chunks, 1), 2, ke))
            self._it_failures = np.zeros(max(n_chunks, 1), dtype=np.int64)
            self._it_work_e = np.zeros((st.n_e_blocks, ke)) if implicit else None
            if implicit:
                # U's own nonzero blocks (block-diagonal in BA): the diagonal blocks and every f-f pair that
                # shares a residual block.
                u_targets = [np.flatnonzero(p.target_diag)]
                for rl in lay.residuals:
                    inst, sa, sb = slot_pairs(rl.block, n_f)
                    if inst.size:
                        u_targets.append(p.targets_of(rl.block[inst, sa], rl.block[inst, sb]))
                u_targets = np.unique(np.concatenate(u_targets))
                self._it_indptr, self._it_indices, self._it_src, self._it_diag_slot = symmetric_csr(p, u_targets)
            else:
                self._it_indptr, self._it_indices, self._it_src, self._it_diag_slot = symmetric_csr(p)
            self._it_data = np.zeros(self._it_src.shape[0])
        self._it_diagonal = np.zeros(0)
        self._it_message = ""

    # -- per trial --------------------------------------------------------------------------
    def solve(self, diagonal: np.ndarray) -> LinearSolution:
        self._it_message = ""
        if self.variant == "explicit":
            self._it_diagonal = diagonal
            sol = super().solve(diagonal)  # forms S and rhs, calls _solve_reduced, back-substitutes
            if self._it_message:
                sol.message = self._it_message
        else:
            sol = self._it_solve_implicit(diagonal)
        sol.iterations = self._it_pcg.last_iterations
        sol.exact = False  # CG stops early: the minimizer must evaluate the model decrease with J
        return sol

    def _it_solve_implicit(self, diagonal: np.ndarray) -> LinearSolution:
        st, lay, g = self.structure, self.layout, self.evaluator.gradient
        p = st.pattern
        schur_pc = self.preconditioner == "schur_jacobi"
        with self.timer.phase("elimination"):
            self._it_eliminate(self._it_chunk_e, self.v, diagonal, st.e_col0, g, st.cells_of_e, st.cell_f, self.w,
                               self.v_inv, self.vg, schur_pc, self._it_y_work, self._it_p_priv, self._it_rhs_priv,
                               self._it_failures)
            p_priv, rhs_priv, failures = self.combine_elimination(self._it_p_priv, self._it_rhs_priv,
                                                                  int(self._it_failures.sum()))
            if failures:
                return self._failed(f"iterative_schur: {failures} eliminated blocks not positive definite")
        with self.timer.phase("preconditioner"):
            gather_values(self._it_src, self.u_values, self._it_diag_slot, diagonal, self._it_data)
            failures = self._it_reduce(self._it_f_col, self._it_f_size, p.colptr, self.u_values, diagonal, True, g,
                                       schur_pc, p_priv, True, rhs_priv, self._it_p_inv, self.rhs)
        if failures:
            return self._failed(f"iterative_schur: {failures} preconditioner blocks not positive definite "
                                "(the reduced camera matrix is not positive definite)")
        step_f = self._it_cg()
        if step_f is None:
            return self._failed(self._it_message)
        with self.timer.phase("back_substitution"):
            step = self.step
            step[:st.e_col0] = step_f
            back_substitute(st.cells_of_e, st.cell_f, lay.block_col, lay.block_size, st.e_col0, g, self.w,
                            self.v_inv, self._it_work_e, step)
        sol = self._finite_or_failure(step)
        if sol.ok:
            sol.message = self._it_message
        return sol

    def _solve_reduced(self):
        """Explicit variant: S (lower, D included), rhs and V^-1 were formed by SchurSolver.solve."""
        st = self.structure
        schur_pc = self.preconditioner == "schur_jacobi"
        with self.timer.phase("preconditioner"):
            gather_values(self._it_src, self.s_values, self._it_no_slots, self._it_diagonal, self._it_data)
            # schur_jacobi: S_ii (D already in s_values); jacobi: U_ii + D_i
            failures = self._it_reduce(self._it_f_col, self._it_f_size, st.pattern.colptr,
                                       self.s_values if schur_pc else self.u_values, self._it_diagonal, not schur_pc,
                                       self.evaluator.gradient, False, self._it_p_priv, False, self._it_rhs_priv,
                                       self._it_p_inv, self.rhs)
        if failures:
            self._it_message = (f"iterative_schur: {failures} preconditioner blocks not positive definite "
                                "(the reduced camera matrix is not positive definite)")
            return None
        return self._it_cg()

    def _it_matvec(self, x, x_pad, y) -> float:
        """y = S x (x_pad: x per f-block, padded); returns x . y."""
        if self.variant == "implicit":
            st = self.structure
            self._it_w_pass(self._it_chunk_e, st.cells_of_e, st.cell_f, self.w, self.v_inv, x_pad,
                            self._it_t_work, self._it_y_priv)
            y_priv = self.combine_products(self._it_y_priv)
        else:
            y_priv = self._it_y_priv
        return csr_matvec_dot(self._it_indptr, self._it_indices, self._it_data, x, y_priv,
                              self._it_pcg.col_block, self._it_pcg.col_within, y)

    # -- hooks for a distributed subclass (sparselm.distributed): identity here ----------------
    def u_csr_sources(self) -> np.ndarray:
        """Positions in the lower(S) values of the entries of the implicit product's CSR of U's own
        blocks (row-major, each off-diagonal entry twice); its order depends on U's block structure only."""
        return self._it_src

    def combine_elimination(self, p_priv: np.ndarray, rhs_priv: np.ndarray, failures: int):
        """The implicit elimination's per-chunk outputs (Schur-Jacobi blocks (chunks, n_f, kf, kf),
        right-hand-side parts (chunks, n_f, kf)) and its count of eliminated blocks that are not
        positive definite, as the preconditioner reduction should see them."""
        return p_priv, rhs_priv, failures

    def combine_products(self, y_priv: np.ndarray) -> np.ndarray:
        """The implicit product's per-chunk parts of W V^-1 W^T x (chunks, n_f, kf), as the CG
        matvec should subtract them."""
        return y_priv

    @property
    def last_cg_iterations(self) -> int:
        """CG iterations of the last solve."""
        return self._it_pcg.last_iterations

    @property
    def last_relative_residual(self) -> float:
        """||S x - rhs|| / ||rhs|| at the end of the last solve's CG."""
        return self._it_pcg.last_relative_residual

    def _it_cg(self):
        """PCG on S x = rhs (see :mod:`sparselm.linalg.schur.block_pcg`); x or None (message set)."""
        with self.timer.phase("cg"):
            x = self._it_pcg.run(self.rhs, self._it_matvec)
        self._it_message = self._it_pcg.message
        return x

    def info(self) -> dict:
        d = super().info()
        d.update(variant=self.variant, preconditioner=self.preconditioner, cg_termination=self.termination,
                 cg_tolerance=self.options.cg_tolerance,
                 max_cg_iterations=self.options.max_cg_iterations, min_cg_iterations=self.options.min_cg_iterations,
                 total_cg_iterations=self._it_pcg.total_iterations, nnz_matvec=int(self._it_src.shape[0]))
        return d


def iterative_schur_solver(layout, evaluator, timer, options) -> LinearSolver:
    """The ``iterative_schur`` solver for this layout: products through the Jacobian
    (:class:`~sparselm.linalg.schur.implicit.ImplicitSchur`) when the variant is implicit and one residual
    group touches the eliminated blocks (bundle adjustment), else :class:`IterativeSchur`."""
    group = eliminated_group_index(layout)
    if str(options.extra.get("schur_variant", "implicit")) == "implicit" and group is not None:
        return ImplicitSchur(layout, evaluator, timer, options, group=group)
    return IterativeSchur(layout, evaluator, timer, options)


SPEC = LinearSolverSpec(
    name="iterative_schur", solver=iterative_schur_solver,
    summary="preconditioned conjugate gradients on S (implicit: S never formed)", memory=iterative_schur_memory,
    model_flops=schur_flops, uses_schur=True,
    options=("preconditioner", "schur_variant", "cg_termination", "min_cg_iterations", "max_cg_iterations",
             "cg_tolerance"))
