"""Iterative Schur: preconditioned conjugate gradients on the reduced camera system S x = rhs.

For problems with thousands of f-blocks (cameras) whose S is too dense to factor. The
elimination is that of :mod:`sparselm.linalg.schur` (same V, W, U per linearisation, same
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

Inexact Newton forcing (as Ceres): CG stops when ||r_k|| <= eta ||rhs||, eta =
``options.cg_tolerance``, after at least ``min_cg_iterations`` and at most
``max_cg_iterations`` iterations (a run that ends on the iteration limit still returns its
step, ok=True with a message, as Ceres does: the LM gain ratio judges it). A non-positive
curvature p^T S p <= 0, a preconditioner block or an eliminated block that is not positive
definite, or non-finite values return a failed :class:`LinearSolution`, never an exception.

Phases timed: ``assembly`` (V, W, U, per linearisation), ``schur_complement`` (explicit: V^-1,
S and rhs) or ``elimination`` (implicit: V^-1 and rhs), ``preconditioner``, ``cg`` and
``back_substitution``.

:func:`estimate_factor_nnz` estimates the size of the Cholesky factor of S that sparse_schur
would compute (CHOLMOD's fill-reducing ordering of the *block* graph, then an exact symbolic
count of the block factor in numba), so a caller can pick iterative_schur when it would be
too large.
"""
from __future__ import annotations

import math
from typing import Optional

import numba
import numpy as np

from sparselm.linalg.base import LinearSolution
from sparselm.linalg.schur import SchurSolver
from sparselm.linalg.schur_kernels import back_substitute
from sparselm.structure import slot_pairs

VARIANTS = ("implicit", "explicit")
PRECONDITIONERS = ("jacobi", "schur_jacobi")


# ---------------------------------------------------------------------------------------------
# Small dense helpers (plain njit functions, not inline="always": see DESIGN.md).

@numba.njit(cache=True)
def _spd_inverse_inplace(a, k):
    """Replace the leading k x k block of ``a`` (lower triangle read) by its inverse via
    Cholesky, in place, without scratch; False (a left partly overwritten) if not SPD."""
    for j in range(k):
        s = a[j, j]
        for m in range(j):
            s -= a[j, m] * a[j, m]
        if not (s > 0.0) or not math.isfinite(s):
            return False
        d = math.sqrt(s)
        a[j, j] = d
        for i in range(j + 1, k):
            t = a[i, j]
            for m in range(j):
                t -= a[i, m] * a[j, m]
            a[i, j] = t / d
    # M = L^-1 in place, column by column (reads L to the right of column j, M above row i)
    for j in range(k):
        a[j, j] = 1.0 / a[j, j]
        for i in range(j + 1, k):
            s = 0.0
            for m in range(j, i):
                s += a[i, m] * a[m, j]
            a[i, j] = -s / a[i, i]
    # A^-1 = M^T M: off-diagonal entries into the upper triangle first, then the diagonal
    for r in range(k):
        for c in range(r + 1, k):
            s = 0.0
            for m in range(c, k):
                s += a[m, r] * a[m, c]
            a[r, c] = s
    for r in range(k):
        s = 0.0
        for m in range(r, k):
            s += a[m, r] * a[m, r]
        a[r, r] = s
    for r in range(k):
        for c in range(r + 1, k):
            a[c, r] = a[r, c]
    return True


# ---------------------------------------------------------------------------------------------
# Per trial: V^-1, the reduced rhs, the preconditioner.

@numba.njit(parallel=True, cache=True)
def _invert_v(v, diagonal, e_col0, gradient, v_inv, vg):
    """v_inv[p] = (V_p + D_p)^-1, vg[p] = v_inv[p] g_p; returns the number of non-SPD blocks."""
    ke = v.shape[1]
    failures = 0
    for p in numba.prange(v.shape[0]):
        c0 = e_col0 + p * ke
        a = v_inv[p]
        for i in range(ke):
            for j in range(ke):
                a[i, j] = v[p, i, j]
            a[i, i] += diagonal[c0 + i]
        if not _spd_inverse_inplace(a, ke):
            failures += 1
            continue
        for i in range(ke):
            s = 0.0
            for j in range(ke):
                s += a[i, j] * gradient[c0 + j]
            vg[p, i] = s
    return failures


@numba.njit(parallel=True, cache=True)
def _f_block_pass(colptr, f_col, f_size, values, diagonal, add_diagonal, subtract_w, want_rhs,
                  cells_of_f_ptr, cells_of_f, cell_e, w, v_inv, vg, gradient, y_work, rhs, p_inv):
    """Per f-block i (parallel, race-free): the preconditioner block, inverted in place into p_inv[i]:
    lower(values)_ii (+ D_i if add_diagonal) (- sum_a W_a V^-1 W_a^T if subtract_w); and, if
    want_rhs, rhs_i = -g_i + sum_a W_a vg_e(a). Returns the number of blocks not SPD."""
    ke = w.shape[2]
    failures = 0
    for f in numba.prange(f_col.shape[0]):
        c0 = f_col[f]
        k = f_size[f]
        P = p_inv[f]
        for cc in range(k):
            base = colptr[c0 + cc] - cc  # the diagonal block's column c0+cc starts at its diagonal
            for rr in range(cc, k):
                x = values[base + rr]
                P[rr, cc] = x
                P[cc, rr] = x
            if add_diagonal:
                P[cc, cc] += diagonal[c0 + cc]
        if want_rhs:
            for r in range(k):
                rhs[c0 + r] = -gradient[c0 + r]
        Y = y_work[f]
        for q in range(cells_of_f_ptr[f], cells_of_f_ptr[f + 1]):
            cell = cells_of_f[q]
            e = cell_e[cell]
            if want_rhs:
                for r in range(k):
                    s = 0.0
                    for m in range(ke):
                        s += w[cell, r, m] * vg[e, m]
                    rhs[c0 + r] += s
            if subtract_w:
                for r in range(k):
                    for m in range(ke):
                        s = 0.0
                        for n in range(ke):
                            s += w[cell, r, n] * v_inv[e, n, m]
                        Y[r, m] = s
                for r in range(k):
                    for c in range(r + 1):
                        s = 0.0
                        for m in range(ke):
                            s += Y[r, m] * w[cell, c, m]
                        P[r, c] -= s
        if subtract_w:
            for r in range(k):
                for c in range(r):
                    P[c, r] = P[r, c]
        if not _spd_inverse_inplace(P, k):
            failures += 1
    return failures


@numba.njit(parallel=True, cache=True)
def _gather_values(src, values, diag_slot, diagonal, out):
    """out[k] = values[src[k]] (a full symmetric CSR from lower(CSC) values); out[diag_slot[c]] += diagonal[c]
    when diag_slot is not empty."""
    for k in numba.prange(src.shape[0]):
        out[k] = values[src[k]]
    for c in range(diag_slot.shape[0]):
        out[diag_slot[c]] += diagonal[c]


# ---------------------------------------------------------------------------------------------
# Per CG iteration.

@numba.njit(parallel=True, cache=True)
def _implicit_w_pass(chunk_e, cells_of_e, cell_f, f_col, f_size, w, v_inv, x, t_work, y_priv):
    """y_priv[ch] = sum over the e-blocks p of chunk ch of W_p V_p^-1 W_p^T x (zeroed first)."""
    ke = w.shape[2]
    n_cols = y_priv.shape[1]
    for ch in numba.prange(chunk_e.shape[0] - 1):
        yp = y_priv[ch]
        for c in range(n_cols):
            yp[c] = 0.0
        s = t_work[ch, 0]
        t = t_work[ch, 1]
        for p in range(chunk_e[ch], chunk_e[ch + 1]):
            for m in range(ke):
                s[m] = 0.0
            for cell in range(cells_of_e[p], cells_of_e[p + 1]):
                f = cell_f[cell]
                c0 = f_col[f]
                for r in range(f_size[f]):
                    xr = x[c0 + r]
                    for m in range(ke):
                        s[m] += w[cell, r, m] * xr
            for m in range(ke):
                acc = 0.0
                for n in range(ke):
                    acc += v_inv[p, m, n] * s[n]
                t[m] = acc
            for cell in range(cells_of_e[p], cells_of_e[p + 1]):
                f = cell_f[cell]
                c0 = f_col[f]
                for r in range(f_size[f]):
                    acc = 0.0
                    for m in range(ke):
                        acc += w[cell, r, m] * t[m]
                    yp[c0 + r] += acc


@numba.njit(parallel=True, cache=True)
def _csr_matvec_dot(indptr, indices, data, x, y_priv, y):
    """y = A x - sum_ch y_priv[ch] (A full CSR; y_priv may have 0 chunks); returns x . y."""
    n_chunks = y_priv.shape[0]
    total = 0.0
    for i in numba.prange(y.shape[0]):
        s = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            s += data[k] * x[indices[k]]
        for ch in range(n_chunks):
            s -= y_priv[ch, i]
        y[i] = s
        total += x[i] * s
    return total


@numba.njit(parallel=True, cache=True)
def _cg_update(alpha, p, q, x, r):
    """x += alpha p, r -= alpha q; returns r . r."""
    total = 0.0
    for i in numba.prange(x.shape[0]):
        x[i] += alpha * p[i]
        ri = r[i] - alpha * q[i]
        r[i] = ri
        total += ri * ri
    return total


@numba.njit(parallel=True, cache=True)
def _apply_block_inverse(f_col, f_size, p_inv, r, z):
    """z_i = P_i^-1 r_i per f-block; returns r . z."""
    total = 0.0
    for f in numba.prange(f_col.shape[0]):
        c0 = f_col[f]
        k = f_size[f]
        acc = 0.0
        for a in range(k):
            s = 0.0
            for b in range(k):
                s += p_inv[f, a, b] * r[c0 + b]
            z[c0 + a] = s
            acc += r[c0 + a] * s
        total += acc
    return total


@numba.njit(parallel=True, cache=True)
def _cg_direction(beta, z, p):
    """p = z + beta p."""
    for i in numba.prange(p.shape[0]):
        p[i] = z[i] + beta * p[i]


# ---------------------------------------------------------------------------------------------
# Structure helpers (once per problem).

@numba.njit(cache=True)
def _target_entries(targets, colptr, tcol, trow, ncol, nrow, within, tdiag, n_entries):
    """Row, column and lower(CSC) position of every entry of the given targets."""
    rows = np.empty(n_entries, np.int64)
    cols = np.empty(n_entries, np.int64)
    pos = np.empty(n_entries, np.int64)
    q = 0
    for t in targets:
        for cc in range(ncol[t]):
            base = colptr[tcol[t] + cc] + within[t] - cc
            start = cc if tdiag[t] else 0
            for rr in range(start, nrow[t]):
                rows[q] = trow[t] + rr
                cols[q] = tcol[t] + cc
                pos[q] = base + rr
                q += 1
    return rows, cols, pos


def symmetric_csr(pattern, targets: Optional[np.ndarray] = None):
    """Full symmetric CSR of the lower(CSC) block pattern restricted to ``targets`` (all if None).

    Returns (indptr, indices, src, diag_slot): entry k of the CSR takes the value at lower
    position src[k]; diag_slot[c] is the CSR position of the diagonal entry (c, c), for every
    column c (the diagonal blocks must be among the targets).
    """
    if targets is None:
        targets = np.arange(pattern.n_targets, dtype=np.int64)
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    sizes = np.where(pattern.target_diag[targets],
                     pattern.target_ncol[targets] * (pattern.target_ncol[targets] + 1) // 2,
                     pattern.target_ncol[targets] * pattern.target_nrow[targets])
    rows, cols, pos = _target_entries(targets, pattern.colptr, pattern.target_col, pattern.target_row,
                                      pattern.target_ncol, pattern.target_nrow, pattern.target_within,
                                      pattern.target_diag, int(sizes.sum()))
    off = rows != cols
    all_rows = np.concatenate([rows, cols[off]])
    all_cols = np.concatenate([cols, rows[off]])
    all_pos = np.concatenate([pos, pos[off]])
    order = np.lexsort((all_cols, all_rows))
    n = pattern.colptr.shape[0] - 1
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(all_rows, minlength=n), out=indptr[1:])
    indices = np.ascontiguousarray(all_cols[order])
    src = np.ascontiguousarray(all_pos[order])
    r_sorted = all_rows[order]
    diag_where = np.flatnonzero(r_sorted == indices)
    diag_slot = np.full(n, -1, dtype=np.int64)
    diag_slot[r_sorted[diag_where]] = diag_where
    if (diag_slot < 0).any():
        raise ValueError("symmetric_csr: a diagonal entry is missing from the selected targets")
    return indptr, indices, src, diag_slot


def chunk_by_work(ptr: np.ndarray, n_chunks: int) -> np.ndarray:
    """Boundaries cutting items 0..n-1 (item i owns ptr[i]:ptr[i+1]) into n_chunks of about equal
    work (entries + one per item)."""
    n = ptr.shape[0] - 1
    work = ptr - ptr[0] + np.arange(n + 1)
    bounds = np.searchsorted(work, np.linspace(0, work[-1], n_chunks + 1), side="left")
    bounds[0], bounds[-1] = 0, n
    return np.maximum.accumulate(np.clip(bounds, 0, n)).astype(np.int64)


# ---------------------------------------------------------------------------------------------

class IterativeSchur(SchurSolver):
    """Preconditioned CG on the Schur complement, implicit (default) or explicit S."""

    name = "iterative_schur"

    def __init__(self, layout, evaluator, timer, options, variant: Optional[str] = None):
        super().__init__(layout, evaluator, timer, options)
        variant = variant or str(self.options.extra.get("schur_variant", "implicit"))
        if variant not in VARIANTS:
            raise ValueError(f"iterative_schur: unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.options.preconditioner not in PRECONDITIONERS:
            raise ValueError(f"iterative_schur: unknown preconditioner {self.options.preconditioner!r}; "
                             f"choose one of {', '.join(PRECONDITIONERS)}")
        self.variant = variant
        self.preconditioner = self.options.preconditioner
        with self.timer.phase("symbolic"):
            st, lay = self.structure, self.layout
            p = st.pattern
            n_f, ke = st.n_f_blocks, st.e_size
            kf = self.w.shape[1]
            n_red = st.e_col0
            self._f_col = np.ascontiguousarray(lay.block_col[:n_f], dtype=np.int64)
            self._f_size = np.ascontiguousarray(lay.block_size[:n_f], dtype=np.int64)
            self._cell_e = np.ascontiguousarray(st.cell_e, dtype=np.int64)
            self._p_inv = np.zeros((n_f, kf, kf))
            self._y_work = np.zeros((n_f if self.preconditioner == "schur_jacobi" or variant == "implicit" else 0,
                                     kf, ke))
            self._x = np.zeros(n_red)
            self._r = np.zeros(n_red)
            self._z = np.zeros(n_red)
            self._p = np.zeros(n_red)
            self._q = np.zeros(n_red)
            self._no_chunks = np.zeros((0, n_red))
            self._empty = np.zeros(0, dtype=np.int64)
            if variant == "implicit":
                # U's own nonzero blocks (block-diagonal in BA): the diagonal blocks and every f-f pair
                # that shares a residual block.
                u_targets = [np.flatnonzero(p.target_diag)]
                for rl in lay.residuals:
                    inst, sa, sb = slot_pairs(rl.block, n_f)
                    if inst.size:
                        u_targets.append(p.targets_of(rl.block[inst, sa], rl.block[inst, sb]))
                u_targets = np.unique(np.concatenate(u_targets))
                self._indptr, self._indices, self._src, self._diag_slot = symmetric_csr(p, u_targets)
                n_chunks = max(1, min(numba.get_num_threads(), st.n_e_blocks))
                self._chunk_e = chunk_by_work(st.cells_of_e, n_chunks)
                self._t_work = np.zeros((n_chunks, 2, ke))
                self._y_priv = np.zeros((n_chunks, n_red))
                self._v_inv_own = self.v_inv  # filled by _invert_v
                self._vg = np.zeros((st.n_e_blocks, ke))
                self._work_e_own = np.zeros((st.n_e_blocks, ke))
            else:
                self._indptr, self._indices, self._src, self._diag_slot = symmetric_csr(p)
            self._data = np.zeros(self._src.shape[0])
        self.last_cg_iterations = 0
        self.total_cg_iterations = 0
        self.last_relative_residual = math.nan
        self._message = ""

    # -- per trial --------------------------------------------------------------------------
    def solve(self, diagonal: np.ndarray) -> LinearSolution:
        self.last_cg_iterations = 0
        self._message = ""
        if self.variant == "explicit":
            sol = super().solve(diagonal)  # forms S, calls _solve_reduced, back-substitutes
            if not sol.ok and self._message:
                sol.message = self._message
            elif sol.ok and self._message:
                sol.message = self._message
            sol.iterations = self.last_cg_iterations
            return sol
        return self._solve_implicit(diagonal)

    def _solve_implicit(self, diagonal: np.ndarray) -> LinearSolution:
        st, lay, g = self.structure, self.layout, self.evaluator.gradient
        p = st.pattern
        with self.timer.phase("elimination"):
            failures = _invert_v(self.v, diagonal, st.e_col0, g, self.v_inv, self._vg)
            if failures:
                return self._failed(f"iterative_schur: {failures} eliminated blocks not positive definite")
        with self.timer.phase("preconditioner"):
            _gather_values(self._src, self.u_values, self._diag_slot, diagonal, self._data)
            failures = _f_block_pass(p.colptr, self._f_col, self._f_size, self.u_values, diagonal, True,
                                     self.preconditioner == "schur_jacobi", True, st.cells_of_f_ptr, st.cells_of_f,
                                     self._cell_e, self.w, self.v_inv, self._vg, g, self._y_work, self.rhs,
                                     self._p_inv)
        if failures:
            return self._failed(f"iterative_schur: {failures} preconditioner blocks not positive definite "
                                "(the reduced camera matrix is not positive definite)")
        step_f = self._cg()
        if step_f is None:
            return LinearSolution(None, False, self._message, self.last_cg_iterations)
        with self.timer.phase("back_substitution"):
            step = self.step
            step[:st.e_col0] = step_f
            back_substitute(st.cells_of_e, st.cell_f, lay.block_col, lay.block_size, st.e_col0, g, self.w,
                            self.v_inv, self._work_e_own, step)
        sol = self._finite_or_failure(step, self.last_cg_iterations)
        if sol.ok:
            sol.message = self._message
        return sol

    def _solve_reduced(self):
        """Explicit variant: S (lower, D included) and rhs are formed by SchurSolver.solve."""
        st = self.structure
        with self.timer.phase("preconditioner"):
            _gather_values(self._src, self.s_values, self._empty, self._empty.astype(np.float64), self._data)
            schur = self.preconditioner == "schur_jacobi"
            # jacobi: U_ii + D_i from u_values; schur_jacobi: S_ii (D already in s_values)
            failures = _f_block_pass(st.pattern.colptr, self._f_col, self._f_size,
                                     self.s_values if schur else self.u_values, self.evaluator.gradient, not schur,
                                     False, False, st.cells_of_f_ptr, st.cells_of_f, self._cell_e, self.w,
                                     self.v_inv, self.vg, self.evaluator.gradient, self._y_work, self.rhs,
                                     self._p_inv) if schur else self._jacobi_blocks_explicit()
        if failures:
            self._message = (f"iterative_schur: {failures} preconditioner blocks not positive definite "
                             "(the reduced camera matrix is not positive definite)")
            return None
        return self._cg()

    def _jacobi_blocks_explicit(self) -> int:
        st = self.structure
        return _f_block_pass(st.pattern.colptr, self._f_col, self._f_size, self.u_values, self._diagonal_f, True,
                             False, False, st.cells_of_f_ptr, st.cells_of_f, self._cell_e, self.w, self.v_inv,
                             self.vg, self.evaluator.gradient, self._y_work, self.rhs, self._p_inv)

    def _cg(self):
        """PCG from x = 0 on S x = rhs; returns x (a view of a work array) or None (self._message says why)."""
        o = self.options
        b = self.rhs
        x, r, z, p, q = self._x, self._r, self._z, self._p, self._q
        implicit = self.variant == "implicit"
        st = self.structure
        with self.timer.phase("cg"):
            x[:] = 0.0
            r[:] = b
            b_norm = float(np.linalg.norm(b))
            if not math.isfinite(b_norm):
                self._message = "iterative_schur: the reduced right-hand side is not finite"
                return None
            if b_norm == 0.0:
                self.last_relative_residual = 0.0
                return x
            tol = o.cg_tolerance * b_norm
            max_it = max(int(o.max_cg_iterations), 1)
            min_it = min(int(o.min_cg_iterations), max_it)
            rz = _apply_block_inverse(self._f_col, self._f_size, self._p_inv, r, z)
            p[:] = z
            r_norm = b_norm
            k = 0
            while k < max_it:
                if implicit:
                    _implicit_w_pass(self._chunk_e, st.cells_of_e, st.cell_f, self._f_col, self._f_size, self.w,
                                     self.v_inv, p, self._t_work, self._y_priv)
                    pq = _csr_matvec_dot(self._indptr, self._indices, self._data, p, self._y_priv, q)
                else:
                    pq = _csr_matvec_dot(self._indptr, self._indices, self._data, p, self._no_chunks, q)
                if not math.isfinite(pq):
                    self._message = f"iterative_schur: non-finite value in CG iteration {k + 1}"
                    self._finish(k, r_norm / b_norm)
                    return None
                if not (pq > 0.0):
                    self._message = (f"iterative_schur: reduced camera matrix not positive definite "
                                     f"(p^T S p = {pq:.3e} in CG iteration {k + 1})")
                    self._finish(k, r_norm / b_norm)
                    return None
                alpha = rz / pq
                rr = _cg_update(alpha, p, q, x, r)
                k += 1
                r_norm = math.sqrt(rr) if rr >= 0.0 else math.nan
                if not math.isfinite(r_norm):
                    self._message = f"iterative_schur: non-finite residual in CG iteration {k}"
                    self._finish(k, r_norm)
                    return None
                if r_norm == 0.0 or (r_norm <= tol and k >= min_it):
                    break
                rz_new = _apply_block_inverse(self._f_col, self._f_size, self._p_inv, r, z)
                if not (rz_new > 0.0):
                    # r != 0 and P^-1 SPD give r^T P^-1 r > 0; anything else is breakdown.
                    self._message = f"iterative_schur: CG breakdown (r^T P^-1 r = {rz_new:.3e}) in iteration {k}"
                    self._finish(k, r_norm / b_norm)
                    return None
                _cg_direction(rz_new / rz, z, p)
                rz = rz_new
            self._finish(k, r_norm / b_norm)
            if r_norm > tol:
                self._message = (f"iterative_schur: CG stopped at max_cg_iterations={max_it} with relative "
                                 f"residual {r_norm / b_norm:.3e} > {o.cg_tolerance:.3e}")
            return x

    def _finish(self, iterations: int, relative_residual: float) -> None:
        self.last_cg_iterations = iterations
        self.total_cg_iterations += iterations
        self.last_relative_residual = relative_residual

    def info(self) -> dict:
        d = super().info()
        d.update(variant=self.variant, preconditioner=self.preconditioner, cg_tolerance=self.options.cg_tolerance,
                 max_cg_iterations=self.options.max_cg_iterations, total_cg_iterations=self.total_cg_iterations,
                 nnz_matvec=int(self._src.shape[0]))
        return d
