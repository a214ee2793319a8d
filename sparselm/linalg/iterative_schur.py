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

Inexact Newton forcing, eta = ``options.cg_tolerance``: CG starts from x = 0 and stops, after at
least ``min_cg_iterations`` and at most ``max_cg_iterations`` iterations, on

``residual`` (default)  ||r_k|| <= eta ||rhs||;
``quadratic``           k (Q_k - Q_{k-1}) / Q_k < eta with Q(x) = x^T S x - 2 rhs^T x (Nash and
                        Sofer's truncated-Newton test; what Ceres' LM uses, with eta = 0.1 and
                        its residual test switched off).

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

:func:`estimate_factor_nnz` estimates the size of the Cholesky factor of S that sparse_schur
would compute (CHOLMOD's fill-reducing ordering of the *block* graph, then an exact symbolic
count of the block factor in numba), so a caller can pick iterative_schur when it would be
too large.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import numba
import numpy as np

from sparselm.linalg.base import LinearSolution
from sparselm.linalg.schur import SchurSolver
from sparselm.linalg.schur_kernels import back_substitute
from sparselm.structure import slot_pairs

VARIANTS = ("implicit", "explicit")
TERMINATIONS = ("residual", "quadratic")
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
# Kernels specialised for the block sizes (kf, ke compile-time constants: LLVM unrolls the small
# products). f-blocks smaller than kf are zero-padded in W and in the per-f-block work arrays
# (n_f, kf), so every per-point loop can run over kf; only the mapping to columns uses f_size.

@lru_cache(maxsize=None)
def _kernels(kf: int, ke: int):
    """(eliminate, reduce_blocks, w_pass) for f-block size kf and e-block size ke."""

    @numba.njit(parallel=True, cache=True)
    def eliminate(chunk_e, v, diagonal, e_col0, gradient, cells_of_e, cell_f, w, v_inv, vg, schur_jacobi,
                  y_work, p_priv, rhs_priv, failures):
        """Per e-block p (chunked, one chunk per thread): v_inv[p] = (V_p + D_p)^-1, vg[p] = v_inv[p] g_p;
        per cell a of p: rhs_priv[ch, f(a)] += W_a vg_p and (schur_jacobi) p_priv[ch, f(a)] += W_a V_p^-1 W_a^T
        (lower triangle). No allocation inside prange (DESIGN.md): scratch comes in per chunk."""
        for ch in numba.prange(chunk_e.shape[0] - 1):
            failures[ch] = 0
            rp = rhs_priv[ch]
            for f in range(rp.shape[0]):
                for r in range(kf):
                    rp[f, r] = 0.0
            if schur_jacobi:
                pp = p_priv[ch]
                for f in range(pp.shape[0]):
                    for r in range(kf):
                        for c in range(kf):
                            pp[f, r, c] = 0.0
            y = y_work[ch]
            for p in range(chunk_e[ch], chunk_e[ch + 1]):
                c0 = e_col0 + p * ke
                a = v_inv[p]
                for i in range(ke):
                    for j in range(ke):
                        a[i, j] = v[p, i, j]
                    a[i, i] += diagonal[c0 + i]
                if not _spd_inverse_inplace(a, ke):
                    failures[ch] += 1
                    continue
                for i in range(ke):
                    t = 0.0
                    for j in range(ke):
                        t += a[i, j] * gradient[c0 + j]
                    vg[p, i] = t
                for cell in range(cells_of_e[p], cells_of_e[p + 1]):
                    f = cell_f[cell]
                    for r in range(kf):
                        t = 0.0
                        for m in range(ke):
                            t += w[cell, r, m] * vg[p, m]
                        rp[f, r] += t
                    if schur_jacobi and ke == 3:  # points: Y_a's rows in registers, full rows of P
                        for r in range(kf):
                            w0 = w[cell, r, 0]
                            w1 = w[cell, r, 1]
                            w2 = w[cell, r, 2]
                            y0 = w0 * a[0, 0] + w1 * a[1, 0] + w2 * a[2, 0]
                            y1 = w0 * a[0, 1] + w1 * a[1, 1] + w2 * a[2, 1]
                            y2 = w0 * a[0, 2] + w1 * a[1, 2] + w2 * a[2, 2]
                            for c in range(r + 1):
                                pp[f, r, c] += y0 * w[cell, c, 0] + y1 * w[cell, c, 1] + y2 * w[cell, c, 2]
                    elif schur_jacobi:
                        for r in range(kf):
                            for m in range(ke):
                                t = 0.0
                                for n in range(ke):
                                    t += w[cell, r, n] * a[n, m]
                                y[r, m] = t
                        for r in range(kf):
                            for c in range(r + 1):
                                t = 0.0
                                for m in range(ke):
                                    t += y[r, m] * w[cell, c, m]
                                pp[f, r, c] += t

    @numba.njit(parallel=True, cache=True)
    def reduce_blocks(f_col, f_size, colptr, values, diagonal, add_diagonal, gradient, schur_jacobi, p_priv,
                      want_rhs, rhs_priv, p_inv, rhs):
        """Per f-block i: P_i = lower(values)_ii (+ D_i) (- sum_ch p_priv[ch, i]), inverted in place into
        p_inv[i] (padding left zero); (want_rhs) rhs_i = -g_i + sum_ch rhs_priv[ch, i]. Returns the number
        of P_i that are not SPD."""
        n_chunks = rhs_priv.shape[0]
        failures = 0
        for f in numba.prange(f_col.shape[0]):
            c0 = f_col[f]
            k = f_size[f]
            P = p_inv[f]
            for r in range(kf):
                for c in range(kf):
                    P[r, c] = 0.0
            for c in range(k):
                base = colptr[c0 + c] - c  # a diagonal block's column c0+c starts at its diagonal entry
                for r in range(c, k):
                    P[r, c] = values[base + r]
                if add_diagonal:
                    P[c, c] += diagonal[c0 + c]
            if schur_jacobi:
                for ch in range(n_chunks):
                    for r in range(k):
                        for c in range(r + 1):
                            P[r, c] -= p_priv[ch, f, r, c]
            if want_rhs:
                for r in range(k):
                    t = -gradient[c0 + r]
                    for ch in range(n_chunks):
                        t += rhs_priv[ch, f, r]
                    rhs[c0 + r] = t
            if not _spd_inverse_inplace(P, k):
                failures += 1
        return failures

    @numba.njit(parallel=True, cache=True)
    def w_pass(chunk_e, cells_of_e, cell_f, w, v_inv, x_pad, t_work, y_priv):
        """y_priv[ch] = sum over the e-blocks p of chunk ch of W_p V_p^-1 W_p^T x, per f-block (padded):
        t_p = V_p^-1 sum_a W_a^T x_f(a), then W_a t_p into the chunk's copy. Reads each W once."""
        for ch in numba.prange(chunk_e.shape[0] - 1):
            yp = y_priv[ch]
            for f in range(yp.shape[0]):
                for r in range(kf):
                    yp[f, r] = 0.0
            if ke == 3:  # points: the 3-vectors live in registers
                for p in range(chunk_e[ch], chunk_e[ch + 1]):
                    s0 = 0.0
                    s1 = 0.0
                    s2 = 0.0
                    for cell in range(cells_of_e[p], cells_of_e[p + 1]):
                        f = cell_f[cell]
                        for r in range(kf):
                            xr = x_pad[f, r]
                            s0 += w[cell, r, 0] * xr
                            s1 += w[cell, r, 1] * xr
                            s2 += w[cell, r, 2] * xr
                    t0 = v_inv[p, 0, 0] * s0 + v_inv[p, 0, 1] * s1 + v_inv[p, 0, 2] * s2
                    t1 = v_inv[p, 1, 0] * s0 + v_inv[p, 1, 1] * s1 + v_inv[p, 1, 2] * s2
                    t2 = v_inv[p, 2, 0] * s0 + v_inv[p, 2, 1] * s1 + v_inv[p, 2, 2] * s2
                    for cell in range(cells_of_e[p], cells_of_e[p + 1]):
                        f = cell_f[cell]
                        for r in range(kf):
                            yp[f, r] += w[cell, r, 0] * t0 + w[cell, r, 1] * t1 + w[cell, r, 2] * t2
            else:
                s = t_work[ch, 0]
                t = t_work[ch, 1]
                for p in range(chunk_e[ch], chunk_e[ch + 1]):
                    for m in range(ke):
                        s[m] = 0.0
                    for cell in range(cells_of_e[p], cells_of_e[p + 1]):
                        f = cell_f[cell]
                        for r in range(kf):
                            xr = x_pad[f, r]
                            for m in range(ke):
                                s[m] += w[cell, r, m] * xr
                    for m in range(ke):
                        acc = 0.0
                        for n in range(ke):
                            acc += v_inv[p, m, n] * s[n]
                        t[m] = acc
                    for cell in range(cells_of_e[p], cells_of_e[p + 1]):
                        f = cell_f[cell]
                        for r in range(kf):
                            acc = 0.0
                            for m in range(ke):
                                acc += w[cell, r, m] * t[m]
                            yp[f, r] += acc

    return eliminate, reduce_blocks, w_pass


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
def _csr_matvec_dot(indptr, indices, data, x, y_priv, col_block, col_within, y):
    """y = A x - sum_ch y_priv[ch, block(i), within(i)] (A full CSR; y_priv may have 0 chunks); returns x . y."""
    n_chunks = y_priv.shape[0]
    total = 0.0
    for i in numba.prange(y.shape[0]):
        s = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            s += data[k] * x[indices[k]]
        if n_chunks:
            f = col_block[i]
            r = col_within[i]
            for ch in range(n_chunks):
                s -= y_priv[ch, f, r]
        y[i] = s
        total += x[i] * s
    return total


@numba.njit(parallel=True, cache=True)
def _cg_update(alpha, p, q, b, x, r):
    """x += alpha p, r -= alpha q; returns (r . r, Q(x)) with Q(x) = x^T S x - 2 b^T x = -x . (b + r)."""
    rr = 0.0
    quad = 0.0
    for i in numba.prange(x.shape[0]):
        xi = x[i] + alpha * p[i]
        x[i] = xi
        ri = r[i] - alpha * q[i]
        r[i] = ri
        rr += ri * ri
        quad -= xi * (b[i] + ri)
    return rr, quad


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
def _cg_direction(beta, z, p, col_block, col_within, p_pad):
    """p = z + beta p; p_pad[block(i), within(i)] = p[i] when p_pad is not empty (padding stays 0)."""
    pad = p_pad.shape[0] > 0
    for i in numba.prange(p.shape[0]):
        v = z[i] + beta * p[i]
        p[i] = v
        if pad:
            p_pad[col_block[i], col_within[i]] = v


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

    def __init__(self, layout, evaluator, timer, options, variant: Optional[str] = None,
                 termination: Optional[str] = None):
        super().__init__(layout, evaluator, timer, options)
        variant = variant or str(self.options.extra.get("schur_variant", "implicit"))
        if variant not in VARIANTS:
            raise ValueError(f"iterative_schur: unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        termination = termination or str(self.options.extra.get("cg_termination", "residual"))
        if termination not in TERMINATIONS:
            raise ValueError(f"iterative_schur: unknown CG termination {termination!r}; "
                             f"choose one of {', '.join(TERMINATIONS)}")
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
            n_red = st.e_col0
            implicit = variant == "implicit"
            self._it_eliminate, self._it_reduce, self._it_w_pass = _kernels(kf, ke)
            self._it_f_col = np.ascontiguousarray(lay.block_col[:n_f], dtype=np.int64)
            self._it_f_size = np.ascontiguousarray(lay.block_size[:n_f], dtype=np.int64)
            self._it_col_block = np.repeat(np.arange(n_f, dtype=np.int64), self._it_f_size)
            self._it_col_within = (np.arange(n_red, dtype=np.int64)
                                   - np.repeat(self._it_f_col, self._it_f_size)).astype(np.int64)
            self._it_p_inv = np.zeros((n_f, kf, kf))
            self._it_x = np.zeros(n_red)
            self._it_r = np.zeros(n_red)
            self._it_z = np.zeros(n_red)
            self._it_p = np.zeros(n_red)
            self._it_q = np.zeros(n_red)
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
            self._it_p_pad = np.zeros((n_f if implicit else 0, kf))
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
        self.last_cg_iterations = 0
        self.total_cg_iterations = 0
        self.last_relative_residual = math.nan

    # -- per trial --------------------------------------------------------------------------
    def solve(self, diagonal: np.ndarray) -> LinearSolution:
        self.last_cg_iterations = 0
        self.last_relative_residual = math.nan
        self._it_message = ""
        if self.variant == "explicit":
            self._it_diagonal = diagonal
            sol = super().solve(diagonal)  # forms S and rhs, calls _solve_reduced, back-substitutes
            if self._it_message:
                sol.message = self._it_message
        else:
            sol = self._it_solve_implicit(diagonal)
        sol.iterations = self.last_cg_iterations
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
            failures = int(self._it_failures.sum())
            if failures:
                return self._failed(f"iterative_schur: {failures} eliminated blocks not positive definite")
        with self.timer.phase("preconditioner"):
            _gather_values(self._it_src, self.u_values, self._it_diag_slot, diagonal, self._it_data)
            failures = self._it_reduce(self._it_f_col, self._it_f_size, p.colptr, self.u_values, diagonal, True, g,
                                       schur_pc, self._it_p_priv, True, self._it_rhs_priv, self._it_p_inv, self.rhs)
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
            _gather_values(self._it_src, self.s_values, self._it_no_slots, self._it_diagonal, self._it_data)
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

    def _it_matvec(self, x, y) -> float:
        """y = S x; returns x . y."""
        if self.variant == "implicit":
            st = self.structure
            self._it_w_pass(self._it_chunk_e, st.cells_of_e, st.cell_f, self.w, self.v_inv, self._it_p_pad,
                            self._it_t_work, self._it_y_priv)
        return _csr_matvec_dot(self._it_indptr, self._it_indices, self._it_data, x, self._it_y_priv,
                               self._it_col_block, self._it_col_within, y)

    def _it_cg(self):
        """PCG from x = 0 on S x = rhs; returns x (a work array) or None (self._it_message says why)."""
        o = self.options
        b = self.rhs
        x, r, z, p, q = self._it_x, self._it_r, self._it_z, self._it_p, self._it_q
        f_col, f_size, p_inv = self._it_f_col, self._it_f_size, self._it_p_inv
        cb, cw, p_pad = self._it_col_block, self._it_col_within, self._it_p_pad
        with self.timer.phase("cg"):
            x.fill(0.0)
            r[:] = b
            b_norm = float(np.linalg.norm(b))
            if not math.isfinite(b_norm):
                self._it_message = "iterative_schur: the reduced right-hand side is not finite"
                return None
            if b_norm == 0.0:
                self._it_finish(0, 0.0)
                return x
            tol = o.cg_tolerance * b_norm
            max_it = max(int(o.max_cg_iterations), 1)
            min_it = min(int(o.min_cg_iterations), max_it)
            rz = _apply_block_inverse(f_col, f_size, p_inv, r, z)
            p.fill(0.0)
            _cg_direction(0.0, z, p, cb, cw, p_pad)
            r_norm = b_norm
            quadratic = self.termination == "quadratic"
            quad_prev = 0.0
            converged = False
            k = 0
            while k < max_it:
                pq = self._it_matvec(p, q)
                if not math.isfinite(pq):
                    self._it_message = f"iterative_schur: non-finite value in CG iteration {k + 1}"
                    self._it_finish(k, r_norm / b_norm)
                    return None
                if not (pq > 0.0):
                    self._it_message = (f"iterative_schur: reduced camera matrix not positive definite "
                                        f"(p^T S p = {pq:.3e} in CG iteration {k + 1})")
                    self._it_finish(k, r_norm / b_norm)
                    return None
                alpha = rz / pq
                rr, quad = _cg_update(alpha, p, q, b, x, r)
                k += 1
                r_norm = math.sqrt(rr) if rr >= 0.0 else math.nan
                if not math.isfinite(r_norm):
                    self._it_message = f"iterative_schur: non-finite residual in CG iteration {k}"
                    self._it_finish(k, r_norm)
                    return None
                if r_norm == 0.0:
                    break
                if k >= min_it:
                    if quadratic:
                        # Nash & Sofer, as Ceres: k (Q_k - Q_{k-1}) / Q_k < eta (Q < 0 and decreasing)
                        if quad < 0.0 and k * (quad - quad_prev) / quad < o.cg_tolerance:
                            converged = True
                            break
                    elif r_norm <= tol:
                        converged = True
                        break
                quad_prev = quad
                if k >= max_it:
                    break
                rz_new = _apply_block_inverse(f_col, f_size, p_inv, r, z)
                if not (rz_new > 0.0):  # r != 0 and P^-1 SPD give r^T P^-1 r > 0: anything else is breakdown
                    self._it_message = f"iterative_schur: CG breakdown (r^T P^-1 r = {rz_new:.3e}) in iteration {k}"
                    self._it_finish(k, r_norm / b_norm)
                    return None
                _cg_direction(rz_new / rz, z, p, cb, cw, p_pad)
                rz = rz_new
            self._it_finish(k, r_norm / b_norm)
            if not converged and r_norm != 0.0:
                self._it_message = (f"iterative_schur: CG stopped at max_cg_iterations={max_it} with relative "
                                    f"residual {r_norm / b_norm:.3e} (cg_tolerance {o.cg_tolerance:.3e}, "
                                    f"{self.termination} test)")
            return x

    def _it_finish(self, iterations: int, relative_residual: float) -> None:
        self.last_cg_iterations = iterations
        self.total_cg_iterations += iterations
        self.last_relative_residual = relative_residual

    def info(self) -> dict:
        d = super().info()
        d.update(variant=self.variant, preconditioner=self.preconditioner, cg_termination=self.termination,
                 cg_tolerance=self.options.cg_tolerance,
                 max_cg_iterations=self.options.max_cg_iterations, min_cg_iterations=self.options.min_cg_iterations,
                 total_cg_iterations=self.total_cg_iterations, nnz_matvec=int(self._it_src.shape[0]))
        return d


# ---------------------------------------------------------------------------------------------
# Factor-size estimate for the auto rule.

@numba.njit(cache=True)
def _block_symbolic_counts(row_ptr, row_cols, size, cap):
    """Elimination tree and weighted column counts of the Cholesky factor of a symmetric block pattern.

    row_ptr/row_cols: for each (permuted) block row i, the block columns j < i with A_ij != 0.
    Returns (below, visited, complete): below[k] = sum of the sizes of the block rows i > k with
    L_ik != 0, visited = number of off-diagonal blocks of L found, complete = False if the walk
    stopped at ``cap`` off-diagonal blocks (then ``below`` is a lower bound)."""
    n = size.shape[0]
    parent = np.full(n, -1, np.int64)
    ancestor = np.full(n, -1, np.int64)
    for i in range(n):  # Liu's algorithm with path compression
        for q in range(row_ptr[i], row_ptr[i + 1]):
            r = row_cols[q]
            while ancestor[r] != -1 and ancestor[r] != i:
                t = ancestor[r]
                ancestor[r] = i
                r = t
            if ancestor[r] == -1:
                ancestor[r] = i
                parent[r] = i
    mark = np.full(n, -1, np.int64)
    below = np.zeros(n, np.int64)
    visited = 0
    for i in range(n):  # row subtrees: L_ik != 0 for every k on the paths from A's row-i columns up to i
        mark[i] = i
        for q in range(row_ptr[i], row_ptr[i + 1]):
            k = row_cols[q]
            while mark[k] != i:
                mark[k] = i
                below[k] += size[i]
                visited += 1
                k = parent[k]
            if visited > cap:
                return below, visited, False
    return below, visited, True


def block_factor_nnz(row_block: np.ndarray, col_block: np.ndarray, block_size: np.ndarray, ordering: str = "amd",
                     cap: int = 2 ** 62) -> dict:
    """Estimate the Cholesky factor of a symmetric block matrix from its nonzero blocks.

    row_block/col_block: the nonzero blocks (either triangle, repeats allowed; the diagonal is
    implied); block_size: (n_blocks,). The fill-reducing ordering is CHOLMOD's (``ordering``) on
    the block graph (1 entry per block, so analysis is cheap even when the scalar S is huge);
    the factor's block pattern is then counted exactly (elimination tree and row subtrees,
    O(blocks of L)), each block counted dense. Returns {"nnz": scalar entries of L (lower
    triangle, diagonal included), "block_nnz": blocks of L, "flops": ~sum over scalar columns of
    count^2, "complete": False when the count stopped at ``cap`` blocks (then nnz and flops are
    lower bounds), "ordering": ...}. With dense blocks this is CHOLMOD's simplicial nnz(L) for
    the same block ordering; supernodal factors add some padding (measured: see the tests).
    """
    import scipy.sparse as sp

    from sparselm.linalg.cholmod import CholmodFactor

    size = np.ascontiguousarray(block_size, dtype=np.int64)
    n = size.shape[0]
    row_block = np.asarray(row_block, dtype=np.int64)
    col_block = np.asarray(col_block, dtype=np.int64)
    hi = np.maximum(row_block, col_block)
    lo = np.minimum(row_block, col_block)
    keys = np.unique(np.concatenate([hi * n + lo, np.arange(n, dtype=np.int64) * (n + 1)]))
    hi, lo = keys // n, keys % n
    lower = sp.csc_matrix((np.where(hi == lo, float(n + 1), 1.0), (hi, lo)), shape=(n, n))
    perm = CholmodFactor(lower, ordering, "simplicial").permutation()  # new position -> old block
    pos = np.empty(n, dtype=np.int64)
    pos[perm] = np.arange(n)
    a, b = pos[hi], pos[lo]
    ph, pl = np.maximum(a, b), np.minimum(a, b)
    off = ph != pl
    ph, pl = ph[off], pl[off]
    order = np.lexsort((pl, ph))
    row_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(ph, minlength=n), out=row_ptr[1:])
    psize = size[perm]
    below, visited, complete = _block_symbolic_counts(row_ptr, np.ascontiguousarray(pl[order]), psize, int(cap))
    below = below.astype(np.float64)
    sz = psize.astype(np.float64)
    nnz = float(np.sum(sz * (sz + 1) / 2 + sz * below))
    # scalar columns of block k have below + sz, ..., below + 1 entries
    flops = float(np.sum(sz * below ** 2 + below * sz * (sz + 1) + sz * (sz + 1) * (2 * sz + 1) / 6))
    return {"nnz": int(nnz), "block_nnz": int(n + visited), "flops": flops, "complete": bool(complete),
            "ordering": ordering}


def estimate_factor_nnz(solver_or_pattern, ordering: Optional[str] = None, cap: int = 2 ** 62) -> dict:
    """:func:`block_factor_nnz` for the reduced camera matrix S of a Schur solver.

    Accepts a SchurSolver (its ``structure.pattern`` and ``options.ordering``), a SchurStructure
    (``.pattern``) or a BlockPattern. Needs only S's block pattern, no values and no numeric
    factorization. (scikit-sparse 0.4.16 exposes nothing of the symbolic factor after
    ``analyze``: ``Factor.L()`` raises until a numeric factorization, and then a supernodal
    ``L()`` includes the supernodes' padding.)
    """
    obj = solver_or_pattern
    if ordering is None:
        ordering = getattr(getattr(obj, "options", None), "ordering", "amd")
    pattern = getattr(obj, "structure", obj)
    pattern = getattr(pattern, "pattern", pattern)
    nb = pattern.n_key_blocks
    keys = pattern.unique_keys
    row_blk, col_blk = keys // nb, keys % nb
    diag = row_blk == col_blk
    block_size = np.empty(nb, dtype=np.int64)
    block_size[col_blk[diag]] = pattern.target_ncol[pattern.target_of_key[np.flatnonzero(diag)]]
    return block_factor_nnz(row_blk, col_blk, block_size, ordering, cap)
