"""The kernels of :class:`~sparselm.linalg.schur.iterative.IterativeSchur`'s preconditioned CG:
small dense helpers (an in-place SPD inverse), the implicit Schur product and the Schur-Jacobi
preconditioner blocks (one pass over the eliminated blocks, per-chunk private outputs reduced in
a fixed order), the CG vector updates, and the symmetric CSR form of lower(S) for the explicit
variant. The math is in the :mod:`sparselm.linalg.schur.iterative` docstring.

The small dense helpers are plain ``njit`` functions called from the kernels (not ``inline="always"``).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import numba
import numpy as np

from sparselm.util.numerics import chunk_range, sum_in_order

# ---------------------------------------------------------------------------------------------
# Small dense helpers.

@numba.njit(cache=True)
def spd_inverse_inplace(a, k):
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


@numba.njit(cache=True)
def invert_point(v, diagonal, gradient, e_col0, p, v_inv, vg):
    """v_inv[p] = (V_p + D_p)^-1 and vg[p] = v_inv[p] g_p for e-block p (columns from e_col0 + p ke);
    False when V_p + D_p is not positive definite."""
    ke = v.shape[1]
    c0 = e_col0 + p * ke
    a = v_inv[p]
    for i in range(ke):
        for j in range(ke):
            a[i, j] = v[p, i, j]
        a[i, i] += diagonal[c0 + i]
    if not spd_inverse_inplace(a, ke):
        return False
    for i in range(ke):
        t = 0.0
        for j in range(ke):
            t += a[i, j] * gradient[c0 + j]
        vg[p, i] = t
    return True


# ---------------------------------------------------------------------------------------------
# Kernels specialised for the block sizes (kf, ke compile-time constants: LLVM unrolls the small
# products). f-blocks smaller than kf are zero-padded in W and in the per-f-block work arrays
# (n_f, kf), so every per-point loop can run over kf; only the mapping to columns uses f_size.

@lru_cache(maxsize=None)
def implicit_kernels(kf: int, ke: int):
    """(eliminate, reduce_blocks, w_pass) for f-block size kf and e-block size ke."""

    @numba.njit(parallel=True, cache=True)
    def eliminate(chunk_e, v, diagonal, e_col0, gradient, cells_of_e, cell_f, w, v_inv, vg, schur_jacobi,
                  y_work, p_priv, rhs_priv, failures):
        """Per e-block p (chunked, one chunk per thread): v_inv[p] = (V_p + D_p)^-1, vg[p] = v_inv[p] g_p;
        per cell a of p: rhs_priv[ch, f(a)] += W_a vg_p and (schur_jacobi) p_priv[ch, f(a)] += W_a V_p^-1 W_a^T
        (lower triangle). No allocation inside prange (numba may hoist it out of the loop and share it
        between threads): scratch comes in per chunk."""
        for ch in numba.prange(chunk_e.shape[0] - 1):
            failures[ch] = 0
            rp = rhs_priv[ch]
            rp[:] = 0.0
            if schur_jacobi:
                pp = p_priv[ch]
                pp[:] = 0.0
            y = y_work[ch]
            for p in range(chunk_e[ch], chunk_e[ch + 1]):
                a = v_inv[p]
                if not invert_point(v, diagonal, gradient, e_col0, p, v_inv, vg):
                    failures[ch] += 1
                    continue
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
            if not spd_inverse_inplace(P, k):
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
def gather_values(src, values, diag_slot, diagonal, out):
    """out[k] = values[src[k]] (a full symmetric CSR from lower(CSC) values); out[diag_slot[c]] += diagonal[c]
    when diag_slot is not empty."""
    for k in numba.prange(src.shape[0]):
        out[k] = values[src[k]]
    for c in range(diag_slot.shape[0]):
        out[diag_slot[c]] += diagonal[c]


# ---------------------------------------------------------------------------------------------
# Per CG iteration.

def csr_matvec_dot(indptr, indices, data, x, y_priv, col_block, col_within, y):
    """y = A x - sum_ch y_priv[ch, block(i), within(i)] (A full CSR; y_priv may have 0 chunks); returns x . y."""
    return _csr_matvec_dot_in_chunks(indptr, indices, data, x, y_priv, col_block, col_within, y,
                                     numba.get_num_threads())


@numba.njit(parallel=True, cache=True)
def _csr_matvec_dot_in_chunks(indptr, indices, data, x, y_priv, col_block, col_within, y, n_parts):
    # one chunk per thread, summed in chunk order (see sparselm.util.numerics.chunk_range)
    n_chunks = y_priv.shape[0]
    partial = np.zeros(n_parts)
    for part in numba.prange(n_parts):
        start, stop = chunk_range(part, n_parts, y.shape[0])
        acc = 0.0
        for i in range(start, stop):
            s = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                s += data[k] * x[indices[k]]
            if n_chunks:
                f = col_block[i]
                r = col_within[i]
                for ch in range(n_chunks):
                    s -= y_priv[ch, f, r]
            y[i] = s
            acc += x[i] * s
        partial[part] = acc
    return sum_in_order(partial)


def cg_update(alpha, p, q, b, x, r):
    """x += alpha p, r -= alpha q; returns (r . r, Q(x)) with Q(x) = x^T S x - 2 b^T x = -x . (b + r)."""
    return _cg_update_in_chunks(alpha, p, q, b, x, r, numba.get_num_threads())


@numba.njit(parallel=True, cache=True)
def _cg_update_in_chunks(alpha, p, q, b, x, r, n_parts):
    # one chunk per thread, summed in chunk order (see sparselm.util.numerics.chunk_range)
    partial_rr = np.zeros(n_parts)
    partial_quad = np.zeros(n_parts)
    for part in numba.prange(n_parts):
        start, stop = chunk_range(part, n_parts, x.shape[0])
        rr = 0.0
        quad = 0.0
        for i in range(start, stop):
            xi = x[i] + alpha * p[i]
            x[i] = xi
            ri = r[i] - alpha * q[i]
            r[i] = ri
            rr += ri * ri
            quad -= xi * (b[i] + ri)
        partial_rr[part] = rr
        partial_quad[part] = quad
    return sum_in_order(partial_rr), sum_in_order(partial_quad)


def apply_block_inverse(f_col, f_size, p_inv, r, z):
    """z_i = P_i^-1 r_i per f-block; returns r . z."""
    return _apply_block_inverse_in_chunks(f_col, f_size, p_inv, r, z, numba.get_num_threads())


@numba.njit(parallel=True, cache=True)
def _apply_block_inverse_in_chunks(f_col, f_size, p_inv, r, z, n_parts):
    # one chunk per thread, summed in chunk order (see sparselm.util.numerics.chunk_range)
    partial = np.zeros(n_parts)
    for part in numba.prange(n_parts):
        start, stop = chunk_range(part, n_parts, f_col.shape[0])
        total = 0.0
        for f in range(start, stop):
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
        partial[part] = total
    return sum_in_order(partial)


@numba.njit(parallel=True, cache=True)
def cg_direction(beta, z, p, col_block, col_within, p_pad):
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

