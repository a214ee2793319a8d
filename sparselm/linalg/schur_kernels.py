"""Numba kernels of the Schur complement (see :mod:`sparselm.linalg.schur_structure` for the math).

Per linearisation: V_p = sum J_e^T J_e (per e-block), W_cell = sum J_f^T J_e (per cell).
After the reduced solve: back-substitution of the e-blocks. (The per-trial elimination and the
forming of S live in :mod:`sparselm.linalg.schur_point_pass`.) Every parallel loop runs over
outputs (e-blocks, cells), so no two threads write the same entry.
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
