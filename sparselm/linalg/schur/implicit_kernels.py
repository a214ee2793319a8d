"""Kernels of :class:`~sparselm.linalg.schur.implicit.ImplicitSchur`: the Schur products read the
Jacobian itself, so W = J_f^T J_e is never stored.

For one residual group whose instances are sorted by their eliminated block p (point), instance i
with e-slot J_e,i (m x ke) and f-slots J_f,ij (m x kf, block b = block[i, j]):

    eliminate      V_p^-1 = (V_p + D_p)^-1,  vg_p = V_p^-1 g_p,
                   rhs_b  += J_f,ij^T (J_e,i vg_p)                        (= W vg)
                   P_b    += W_ij V_p^-1 W_i'j'^T  over the uses (i, j), (i', j') of p with the same b,
                             W_ij = J_f,ij^T J_e,i formed on the fly      (Schur-Jacobi blocks)
    product        s_p = sum_i J_e,i^T (sum_j J_f,ij x_b),  t_p = V_p^-1 s_p,
                   y_b += J_f,ij^T (J_e,i t_p)                            (= W V^-1 W^T x)
    back-substitute step_p = -V_p^-1 (g_p + sum_i J_e,i^T sum_j J_f,ij step_b)

Per observation this reads the m x (kf + ke) Jacobian (BA: 24 doubles) instead of a kf x ke W
block (27 doubles), with fewer flops (m (kf + ke) per direction instead of kf ke). Points are cut
into one chunk per thread; camera outputs go to per-chunk private arrays reduced in a fixed order
afterwards (bitwise reproducible for a given thread count). No allocation inside prange: scratch
comes in per chunk. Block sizes m, kf, ke are compile-time constants (closures per size).
"""
from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np

from sparselm.linalg.schur.pcg import invert_point
from sparselm.linalg.schur.unrolled import cacheable_kernel


@numba.njit(parallel=True, cache=True)
def slot_block_counts(block, n_f):
    """One pass over a residual group's (n, n_slots) block ids, for the set-up's structural tests:
    (instances holding an eliminated block (id >= n_f) per slot, the same for kept blocks
    (0 <= id < n_f), instances holding more than one eliminated block, instances holding more than
    one kept block)."""
    n, n_slots = block.shape
    e_in_slot = np.zeros(n_slots, dtype=np.int64)
    f_in_slot = np.zeros(n_slots, dtype=np.int64)
    for j in range(n_slots):
        n_e = 0
        n_k = 0
        for i in numba.prange(n):
            b = block[i, j]
            if b >= n_f:
                n_e += 1
            elif b >= 0:
                n_k += 1
        e_in_slot[j] = n_e
        f_in_slot[j] = n_k
    multi_e = 0
    multi_f = 0
    for i in numba.prange(n):
        k_e = 0
        k_f = 0
        for j in range(n_slots):
            b = block[i, j]
            if b >= n_f:
                k_e += 1
            elif b >= 0:
                k_f += 1
        if k_e > 1:
            multi_e += 1
        if k_f > 1:
            multi_f += 1
    return e_in_slot, f_in_slot, multi_e, multi_f


@numba.njit(parallel=True, cache=True)
def instance_points(block, e_col, n_f, e_slot, e_local):
    """For the group whose eliminated blocks are all in slot ``e_col``: per instance its e-slot
    (``e_col``, or -1 without one) and its point (block id - n_f, or -1), written into the given
    arrays; returns the number of instances out of order (0 when sorted by point, instances
    without a point first)."""
    n = block.shape[0]
    unsorted = 0
    for i in numba.prange(n):
        b = block[i, e_col]
        p = b - n_f if b >= n_f else -1
        e_local[i] = p
        e_slot[i] = e_col if p >= 0 else -1
        if i > 0:
            b0 = block[i - 1, e_col]
            if (b0 - n_f if b0 >= n_f else -1) > p:
                unsorted += 1
    return unsorted


@numba.njit(cache=True)
def point_instance_ranges(e_local, n_e):
    """(n_e + 1,) start of each point's run of instances in ``e_local`` (sorted, -1 first)."""
    inst_ptr = np.zeros(n_e + 1, dtype=np.int64)
    none = 0
    for i in range(e_local.shape[0]):
        p = e_local[i]
        if p < 0:
            none += 1
        else:
            inst_ptr[p + 1] += 1
    inst_ptr[0] = none
    for p in range(n_e):
        inst_ptr[p + 1] += inst_ptr[p]
    return inst_ptr


@numba.njit(parallel=True, cache=True)
def diagonal_u_targets(block, n_f, combo_a, combo_b, u_target):
    """u_target[i, q] = the kept block of instance i in slot combo_a[q] when combo_a[q] == combo_b[q]
    (U's diagonal block, when U has no other blocks), else -1."""
    for i in numba.prange(block.shape[0]):
        for q in range(combo_a.shape[0]):
            b = block[i, combo_a[q]]
            u_target[i, q] = b if combo_a[q] == combo_b[q] and 0 <= b < n_f else -1


@numba.njit(parallel=True, cache=True)
def points_with_repeated_blocks(inst_ptr, block, n_f):
    """(n_e,) True for a point whose uses (instance, f-slot) name one f-block more than once."""
    n_e = inst_ptr.shape[0] - 1
    out = np.zeros(n_e, dtype=np.bool_)
    n_slots = block.shape[1]
    for p in numba.prange(n_e):
        for i in range(inst_ptr[p], inst_ptr[p + 1]):
            for j in range(n_slots):
                b = block[i, j]
                if b < 0 or b >= n_f:
                    continue
                for i2 in range(inst_ptr[p], i + 1):
                    for j2 in range(n_slots if i2 < i else j):
                        if block[i2, j2] == b:
                            out[p] = True
    return out


def slot_helpers(m: int, ke: int, f_slots: tuple, f_offsets: tuple, f_sizes: tuple, e_offset: int) -> dict:
    """The inlined per-instance products of :func:`jacobian_schur_kernels`, by name, for one slot structure."""
    n_fs = len(f_slots)

    @numba.njit(cache=True)
    def jf_times(jac, i, block, n_f, x_pad, u):
        """u[:m] = sum over instance i's f-slots of J_f x_f (x per f-block, padded)."""
        for r in range(m):
            u[r] = 0.0
        for k in range(n_fs):
            b = block[i, f_slots[k]]
            if b < 0 or b >= n_f:
                continue
            of = f_offsets[k]
            for q in range(f_sizes[k]):
                xq = x_pad[b, q]
                for r in range(m):
                    u[r] += jac[i, r, of + q] * xq

    @numba.njit(cache=True)
    def add_jf_transpose_times(jac, i, block, n_f, u, out):
        """out[b, :] += J_f^T u[:m] for each f-slot of instance i (block b)."""
        for k in range(n_fs):
            b = block[i, f_slots[k]]
            if b < 0 or b >= n_f:
                continue
            of = f_offsets[k]
            for q in range(f_sizes[k]):
                acc = 0.0
                for r in range(m):
                    acc += jac[i, r, of + q] * u[r]
                out[b, q] += acc

    @numba.njit(cache=True)
    def je_times(jac, i, t, u):
        """u[:m] = J_e t of instance i."""
        for r in range(m):
            acc = 0.0
            for c in range(ke):
                acc += jac[i, r, e_offset + c] * t[c]
            u[r] = acc

    @numba.njit(cache=True)
    def add_je_transpose_times(jac, i, u, s):
        """s[:ke] += J_e^T u[:m] of instance i."""
        for c in range(ke):
            acc = 0.0
            for r in range(m):
                acc += jac[i, r, e_offset + c] * u[r]
            s[c] += acc

    @numba.njit(cache=True)
    def small_matvec(a, s, t):
        """t[:ke] = a s (a: ke x ke)."""
        for c in range(ke):
            acc = 0.0
            for d in range(ke):
                acc += a[c, d] * s[d]
            t[c] = acc

    @numba.njit(cache=True)
    def add_lower_product(y, w, kj, out):
        """lower(out[:kj, :kj]) += y w^T (y, w: kj x ke)."""
        for q in range(kj):
            for c in range(q + 1):
                t = 0.0
                for d in range(ke):
                    t += y[q, d] * w[c, d]
                out[q, c] += t

    @numba.njit(cache=True)
    def w_block(jac, i, of, kj, out):
        """out[:kj, :] = J_f^T J_e of instance i (f columns from of)."""
        for a in range(kj):
            for c in range(ke):
                s = 0.0
                for r in range(m):
                    s += jac[i, r, of + a] * jac[i, r, e_offset + c]
                out[a, c] = s

    return dict(jf_times=jf_times, add_jf_transpose_times=add_jf_transpose_times, je_times=je_times,
                add_je_transpose_times=add_je_transpose_times, small_matvec=small_matvec,
                add_lower_product=add_lower_product, w_block=w_block)


@lru_cache(maxsize=None)
def jacobian_schur_kernels(m: int, ke: int, f_slots: tuple, f_offsets: tuple, f_sizes: tuple, e_offset: int):
    """(eliminate, product, back_substitute) for one residual group's slot structure, all compile-time
    constants: residuals of size m, eliminated blocks of size ke in Jacobian columns e_offset..; the slots
    that can hold f-blocks, their first Jacobian column and size.

    The per-instance helpers (:func:`slot_helpers`) reach the three kernels as globals bound by
    :func:`~sparselm.linalg.schur.unrolled.cacheable_kernel`, not as closure cells, so that numba's disk
    cache finds the kernels again in the next process. numba keys a cached kernel by its code and its
    closure cells, not its globals: every kernel therefore reads all six parameters (a never-taken
    branch), so that they are cells and two specialisations never share a cache entry (they did: a
    3-row, 2-column-point problem loaded BA's product kernel and wrote past its arrays)."""
    n_fs = len(f_slots)
    helpers = slot_helpers(m, ke, f_slots, f_offsets, f_sizes, e_offset)
    parallel = numba.njit(parallel=True, cache=True)

    def eliminate(chunk_pts, inst_ptr, block, n_f, jac, v, diagonal, e_col0, gradient, repeated, schur_jacobi,
                  v_inv, vg, w_work, vec_work, p_priv, rhs_priv, failures):
        if m + ke + e_offset + len(f_slots) + len(f_offsets) + len(f_sizes) < 0:  # the cache key: see above
            return
        for ch in numba.prange(chunk_pts.shape[0] - 1):
            failures[ch] = 0
            rp = rhs_priv[ch]
            rp[:] = 0.0
            if schur_jacobi:
                pp = p_priv[ch]
                pp[:] = 0.0
            wa = w_work[ch, 0]
            y = w_work[ch, 1]
            w2 = w_work[ch, 2]
            u = vec_work[ch, 0]
            for p in range(chunk_pts[ch], chunk_pts[ch + 1]):
                a = v_inv[p]
                if not invert_point(v, diagonal, gradient, e_col0, p, v_inv, vg):
                    failures[ch] += 1
                    continue
                for i in range(inst_ptr[p], inst_ptr[p + 1]):
                    je_times(jac, i, vg[p], u)
                    add_jf_transpose_times(jac, i, block, n_f, u, rp)
                    if not schur_jacobi:
                        continue
                    for k in range(n_fs):
                        b = block[i, f_slots[k]]
                        if b < 0 or b >= n_f:
                            continue
                        kj = f_sizes[k]
                        w_block(jac, i, f_offsets[k], kj, wa)
                        for q in range(kj):
                            for c in range(ke):
                                t = 0.0
                                for d in range(ke):
                                    t += wa[q, d] * a[d, c]
                                y[q, c] = t
                        if not repeated[p]:  # the common case: b seen once by p
                            add_lower_product(y, wa, kj, pp[b])
                            continue
                        for i2 in range(inst_ptr[p], inst_ptr[p + 1]):
                            for k2 in range(n_fs):
                                if block[i2, f_slots[k2]] == b:
                                    w_block(jac, i2, f_offsets[k2], kj, w2)
                                    add_lower_product(y, w2, kj, pp[b])

    def product(chunk_pts, inst_ptr, block, n_f, jac, v_inv, x_pad, vec_work, y_priv):
        """y_priv[ch] = the chunk's part of W V^-1 W^T x, per f-block (padded); x given per f-block."""
        if m + ke + e_offset + len(f_slots) + len(f_offsets) + len(f_sizes) < 0:  # the cache key: see above
            return
        for ch in numba.prange(chunk_pts.shape[0] - 1):
            yp = y_priv[ch]
            yp[:] = 0.0
            s = vec_work[ch, 0]
            t = vec_work[ch, 1]
            u = vec_work[ch, 2]
            for p in range(chunk_pts[ch], chunk_pts[ch + 1]):
                s[:] = 0.0
                for i in range(inst_ptr[p], inst_ptr[p + 1]):
                    jf_times(jac, i, block, n_f, x_pad, u)
                    add_je_transpose_times(jac, i, u, s)
                small_matvec(v_inv[p], s, t)
                for i in range(inst_ptr[p], inst_ptr[p + 1]):
                    je_times(jac, i, t, u)
                    add_jf_transpose_times(jac, i, block, n_f, u, yp)

    def back_substitute(chunk_pts, inst_ptr, block, n_f, jac, v_inv, gradient, e_col0, x_pad, vec_work, step):
        """step_p = -V_p^-1 (g_p + W_p^T step_f) for every point; step_f given per f-block in x_pad."""
        if m + ke + e_offset + len(f_slots) + len(f_offsets) + len(f_sizes) < 0:  # the cache key: see above
            return
        for ch in numba.prange(chunk_pts.shape[0] - 1):
            s = vec_work[ch, 0]
            t = vec_work[ch, 1]
            u = vec_work[ch, 2]
            for p in range(chunk_pts[ch], chunk_pts[ch + 1]):
                c0 = e_col0 + p * ke
                for c in range(ke):
                    s[c] = gradient[c0 + c]
                for i in range(inst_ptr[p], inst_ptr[p + 1]):
                    jf_times(jac, i, block, n_f, x_pad, u)
                    add_je_transpose_times(jac, i, u, s)
                small_matvec(v_inv[p], s, t)
                for c in range(ke):
                    step[c0 + c] = -t[c]

    return tuple(cacheable_kernel(kernel, parallel, **helpers) for kernel in (eliminate, product, back_substitute))
