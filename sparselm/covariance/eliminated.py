"""Covariance blocks of eliminated blocks (BA: points) from the selected inverse of S.

With G the gauge-fixed inverse of H in the Schur form (see :mod:`sparselm.covariance.estimate`),
Z = S_g^-1 and Y_a = W_a V_p^+ for each cell a (kept block f(a) seen with p),

    G_pp = V_p^+ + V_p^+ W_p^T Z W_p V_p^+ = V_p^+ + sum_{a, b in cells(p)} Y_a^T Z_{f(a) f(b)} Y_b.

Every Z_{f(a) f(b)} is a block of S's pattern (f(a) and f(b) see the same point), so it lies on the
pattern of S's Cholesky factor and comes from the selected inverse: no solve is needed per point.
"""
from __future__ import annotations

import numba
import numpy as np

from sparselm.covariance.selected_inverse import lookup


@numba.njit(cache=True)
def eliminated_blocks(points, cells_of_e, cell_f, block_col, block_size, w, v_pinv, colptr, rowind, zval,
                      inverse_perm, zeroed, y, out):
    """out[t] = G_pp for p = points[t] (see the module docstring); ``zeroed`` marks kept columns
    whose rows and columns of Z are zero (held or gauge-fixed); y is (max_cells, kf, ke) scratch."""
    ke = w.shape[2]
    kf = w.shape[1]
    for t in range(points.shape[0]):
        p = points[t]
        c0 = cells_of_e[p]
        n_cells = cells_of_e[p + 1] - c0
        for i in range(n_cells):
            for r in range(kf):
                for x in range(ke):
                    s = 0.0
                    for z in range(ke):
                        s += w[c0 + i, r, z] * v_pinv[p, z, x]
                    y[i, r, x] = s
        for a in range(ke):
            for b in range(ke):
                out[t, a, b] = v_pinv[p, a, b]
        for i in range(n_cells):
            fi = cell_f[c0 + i]
            ci = block_col[fi]
            for j in range(n_cells):
                fj = cell_f[c0 + j]
                cj = block_col[fj]
                for r in range(block_size[fi]):
                    if zeroed[ci + r]:
                        continue
                    for s in range(block_size[fj]):
                        if zeroed[cj + s]:
                            continue
                        zrs = lookup(colptr, rowind, zval, inverse_perm, ci + r, cj + s)
                        for a in range(ke):
                            yz = y[i, r, a] * zrs
                            for b in range(ke):
                                out[t, a, b] += yz * y[j, s, b]
