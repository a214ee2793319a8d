"""Numba kernels of the Schur complement (see :mod:`sparselm.linalg.schur_structure` for the math).

Per linearisation: V_p = sum J_e^T J_e (per e-block), W_cell = sum J_f^T J_e (per cell).
Per damping trial: V_p^-1 of V_p + D_p by Cholesky, Y_cell = W_cell V_p^-1 (stored transposed,
(ke, kf), so the S update's innermost loop runs over contiguous rows of a CSC column),
S -= Y_a W_b^T over the cell pairs, the reduced right-hand side, and back-substitution.
Every parallel loop runs over outputs (e-blocks, cells, chunks of S targets, f-blocks), so no two
threads write the same entry.
"""
from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def accumulate_v(use_ptr, use_instance, use_slot, slot_offset, n_f, jacobian, v):
    """v[p] += sum over uses of e-block p of J_s^T J_s (ke x ke)."""
    m = jacobian.shape[1]
    ke = v.shape[1]
    for p in numba.prange(v.shape[0]):
        b = n_f + p
        for u in range(use_ptr[b], use_ptr[b + 1]):
            i = use_instance[u]
            o = slot_offset[use_slot[u]]
            for a in range(ke):
                for c in range(a + 1):
                    s = 0.0
                    for r in range(m):
                        s += jacobian[i, r, o + a] * jacobian[i, r, o + c]
                    v[p, a, c] += s
                    if c != a:
                        v[p, c, a] += s


@numba.njit(parallel=True, cache=True)
def accumulate_w(cell_ptr, inst, f_slot, e_slot, slot_offset, slot_size, jacobian, w):
    """w[cell] += J_f^T J_e for each contribution of the cell: (kf, ke), zero-padded to kf_max."""
    m = jacobian.shape[1]
    ke = w.shape[2]
    for cell in numba.prange(w.shape[0]):
        for q in range(cell_ptr[cell], cell_ptr[cell + 1]):
            i = inst[q]
            of = slot_offset[f_slot[q]]
            kf = slot_size[f_slot[q]]
            oe = slot_offset[e_slot[i]]
            for a in range(kf):
                for c in range(ke):
                    s = 0.0
                    for r in range(m):
                        s += jacobian[i, r, of + a] * jacobian[i, r, oe + c]
                    w[cell, a, c] += s


@numba.njit(parallel=True, cache=True)
def eliminate_points(v, diagonal, e_col0, gradient, cells_of_e, w, lower, lower_inv, v_inv, y_t, vg):
    """Per e-block p: V_p + D_p -> its inverse (Cholesky L, then L^-T L^-1), Y_cell^T =
    (W_cell V_p^-1)^T for p's cells, and vg_p = V_p^-1 g_p. ``lower`` and ``lower_inv`` are
    (n_e, ke, ke) work arrays. Returns the number of e-blocks that were not positive definite."""
    ke = v.shape[1]
    kf = w.shape[1]
    failures = 0
    for p in numba.prange(v.shape[0]):
        c0 = e_col0 + p * ke
        L = lower[p]
        M = lower_inv[p]
        ok = True
        for j in range(ke):  # Cholesky of V_p + D_p
            s = v[p, j, j] + diagonal[c0 + j]
            for k in range(j):
                s -= L[j, k] * L[j, k]
            if not (s > 0.0):
                ok = False
                break
            d = math.sqrt(s)
            L[j, j] = d
            for i in range(j + 1, ke):
                t = v[p, i, j]
                for k in range(j):
                    t -= L[i, k] * L[j, k]
                L[i, j] = t / d
        if not ok:
            failures += 1
            continue
        for c in range(ke):  # M = L^-1, lower triangular
            for i in range(ke):
                if i < c:
                    M[i, c] = 0.0
                    continue
                t = 1.0 if i == c else 0.0
                for k in range(c, i):
                    t -= L[i, k] * M[k, c]
                M[i, c] = t / L[i, i]
        for a in range(ke):  # V^-1 = M^T M
            for c in range(ke):
                s = 0.0
                for k in range(max(a, c), ke):
                    s += M[k, a] * M[k, c]
                v_inv[p, a, c] = s
        for a in range(ke):
            s = 0.0
            for c in range(ke):
                s += v_inv[p, a, c] * gradient[c0 + c]
            vg[p, a] = s
        for cell in range(cells_of_e[p], cells_of_e[p + 1]):
            for c in range(ke):
                for a in range(kf):
                    s = 0.0
                    for k in range(ke):
                        s += w[cell, a, k] * v_inv[p, k, c]
                    y_t[cell, c, a] = s
    return failures


@numba.njit(parallel=True, cache=True)
def subtract_cell_pairs(chunk_ptr, pair_ptr, pair_a, pair_b, colptr, tcol, ncol, nrow, within, tdiag,
                        y_t, w, data):
    """data(S) -= Y_a W_b^T for every cell pair, chunk by chunk of S targets (race-free)."""
    ke = w.shape[2]
    for chunk in numba.prange(chunk_ptr.shape[0] - 1):
        for t in range(chunk_ptr[chunk], chunk_ptr[chunk + 1]):
            nr = nrow[t]
            diag = tdiag[t]
            for q in range(pair_ptr[t], pair_ptr[t + 1]):
                a = pair_a[q]
                b = pair_b[q]
                for cc in range(ncol[t]):
                    base = colptr[tcol[t] + cc] + within[t] - cc
                    start = cc if diag else 0
                    for k in range(ke):
                        wbk = w[b, cc, k]
                        for rr in range(start, nr):
                            data[base + rr] -= y_t[a, k, rr] * wbk


@numba.njit(parallel=True, cache=True)
def reduced_rhs(cells_of_f_ptr, cells_of_f, cell_e, block_col, block_size, gradient, w, vg, rhs):
    """rhs_f = -g_f + sum over f's cells of W_cell vg_e(cell)."""
    ke = w.shape[2]
    for f in numba.prange(cells_of_f_ptr.shape[0] - 1):
        c0 = block_col[f]
        for a in range(block_size[f]):
            s = -gradient[c0 + a]
            for q in range(cells_of_f_ptr[f], cells_of_f_ptr[f + 1]):
                cell = cells_of_f[q]
                p = cell_e[cell]
                for k in range(ke):
                    s += w[cell, a, k] * vg[p, k]
            rhs[c0 + a] = s


@numba.njit(parallel=True, cache=True)
def back_substitute(cells_of_e, cell_f, block_col, block_size, e_col0, gradient, w, v_inv, work, step):
    """step_e(p) = -V_p^-1 (g_p + sum over p's cells of W_cell^T step_f(cell)); step_f already set.
    ``work`` is an (n_e, ke) scratch array."""
    ke = w.shape[2]
    for p in numba.prange(v_inv.shape[0]):
        c0 = e_col0 + p * ke
        t = work[p]
        for k in range(ke):
            t[k] = gradient[c0 + k]
        for cell in range(cells_of_e[p], cells_of_e[p + 1]):
            f = cell_f[cell]
            fc = block_col[f]
            for a in range(block_size[f]):
                x = step[fc + a]
                for k in range(ke):
                    t[k] += w[cell, a, k] * x
        for a in range(ke):
            s = 0.0
            for k in range(ke):
                s += v_inv[p, a, k] * t[k]
            step[c0 + a] = -s
