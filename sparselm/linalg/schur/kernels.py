"""Back-substitution of the eliminated blocks after the reduced solve.

The per-linearisation products live in :mod:`sparselm.linalg.schur.linearize`, the per-trial
elimination and S in :mod:`sparselm.linalg.schur.eliminate`.
"""
from __future__ import annotations

from functools import lru_cache

import numba

from sparselm.linalg.schur.unrolled import CONTRACT, cacheable_kernel, transposed_product_accumulator


@lru_cache(maxsize=None)
def back_substitution_kernel(kf: int, ke: int):
    """``back_substitute`` for f-blocks padded to kf and e-blocks of size ke (call it inside
    :func:`sparselm.linalg.schur.unrolled.slp_vectorization`).

    step_e(p) = -V_p^-1 (g_p + sum over p's cells of W_cell^T step_f(cell)); step_f already set.
    ``work`` is an (n_e, ke) scratch array. W_cell^T step_f is straight-line code summed in registers
    (a loop adding into ``work`` waited on its own stores, one chain per e column)."""
    def back_substitute(cells_of_e, cell_f, block_col, block_size, e_col0, gradient, w, v_inv, work, step):
        for p in numba.prange(v_inv.shape[0]):
            c0 = e_col0 + p * ke
            t = work[p]
            for k in range(ke):
                t[k] = gradient[c0 + k]
            for cell in range(cells_of_e[p], cells_of_e[p + 1]):
                f = cell_f[cell]
                fc = block_col[f]
                if block_size[f] == kf:
                    add_transposed_product(t, w[cell], step, fc)
                else:  # a block smaller than the padded size: only its own columns of step
                    for a in range(block_size[f]):
                        x = step[fc + a]
                        for k in range(ke):
                            t[k] += w[cell, a, k] * x
            for a in range(ke):
                s = 0.0
                for k in range(ke):
                    s += v_inv[p, a, k] * t[k]
                step[c0 + a] = -s

    return cacheable_kernel(back_substitute, numba.njit(parallel=True, cache=True, fastmath=CONTRACT),
                            add_transposed_product=transposed_product_accumulator(ke, kf))
