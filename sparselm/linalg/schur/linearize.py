"""The per-linearisation Schur kernel: V, W, U and the gradient in one pass over the residuals.

Residual instances are stored sorted by their eliminated block (see
:class:`sparselm.core.layout.ResidualLayout`), so the instances of one point are contiguous and
the pass reads the Jacobian sequentially, once. For each instance i with e-block p:

    V_p += J_e^T J_e,   g_e += J_e^T r,   diag(J^T J)_e += col norms of J_e     (owned by p's chunk)
    W_cell(i, f) += J_f^T J_e                                                  (the cell is p's)
    U_{f f'} += J_f^T J_f',  g_f += J_f^T r,  diag_f += col norms of J_f       (private per chunk)

Chunks are cut at point boundaries, so everything indexed by a point is written by one thread;
f-block quantities (few cameras, but shared by many points) go to per-chunk private arrays
(zeroed by their chunk in the first group's pass) reduced afterwards in a fixed order (bitwise
reproducible for a given thread count). W is never zeroed: each cell's first contribution
(``SchurGroupMaps.cell_first``) is stored, later ones added, which saves a write and a read of
every cell per linearisation (BA: one instance per cell, so W is written once and never read here).
Block sizes are compile-time constants: m (rows of the residual), kf (padded f size), ke. The
block products (V: ke x ke, W: kf x ke, U: kf x kf, each from m Jacobian rows; U's diagonal
blocks J_f^T J_f only in their lower triangle, which is all the reduction reads) and the gradient
and column-norm sums are straight-line
code from :mod:`sparselm.linalg.schur.unrolled` (SIMD through the SLP vectoriser); call the pass
inside :func:`sparselm.linalg.schur.unrolled.slp_vectorization`.

Two passes, one contract. Most residual groups have at most two slots that hold f-blocks (BA: the
camera; COLMAP: the pose and the camera's intrinsics; a prior: none): :func:`slot_pass_kernel` is
specialised on those slots' positions, column offsets and sizes, so every product is straight-line
code of its exact size with no per-slot dispatch (a COLMAP SIMPLE_PINHOLE pass, 6-column poses beside
3-column intrinsics, went from 78 to ~50 ns per observation on one core). Other groups take
:func:`linearize_kernel`, which loops over the slots and slot pairs, and runs the products of
smaller blocks as loops.
"""
from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np

from sparselm.linalg.schur.unrolled import CONTRACT, cacheable_kernel, gradient_accumulator, outer_product_accumulator


@numba.njit(inline="always")
def zero_chunk_sums(up, gp, npv):
    """Zero a chunk's private U blocks, gradient and column norms (explicit loops: no allocation in a prange)."""
    for t in range(up.shape[0]):
        for a in range(up.shape[1]):
            for c in range(up.shape[2]):
                up[t, a, c] = 0.0
    for c in range(gp.shape[0]):
        gp[c] = 0.0
        npv[c] = 0.0


@lru_cache(maxsize=None)
def linearize_kernel(m: int, kf: int, ke: int):
    """The fused pass for residuals of size m, f-blocks padded to kf, e-blocks of size ke."""
    def linearize_pass(chunk_inst, e_slot, e_local, block, slot_offset, slot_size, cell_of, cell_first, combo_a,
                       combo_b, u_target, n_f, e_col0, block_col, residuals, jacobian, v, w, gradient, column_norms,
                       u_priv, g_priv, n_priv, first_group):
        n_slots = block.shape[1]
        n_combos = combo_a.shape[0]
        for ch in numba.prange(chunk_inst.shape[0] - 1):
            up = u_priv[ch]
            gp = g_priv[ch]
            npv = n_priv[ch]
            if first_group:  # the chunk's private sums start here
                zero_chunk_sums(up, gp, npv)
            for i in range(chunk_inst[ch], chunk_inst[ch + 1]):
                es = e_slot[i]
                if es >= 0:
                    p = e_local[i]
                    oe = slot_offset[es]
                    add_gradient_e(gradient, column_norms, e_col0 + p * ke, jacobian[i], oe, residuals[i])
                    add_v(v[p], jacobian[i], oe, jacobian[i], oe)
                for j in range(n_slots):
                    b = block[i, j]
                    if b < 0 or b >= n_f:
                        continue
                    of = slot_offset[j]
                    kj = slot_size[j]
                    fc = block_col[b]
                    if kj == kf:
                        add_gradient_f(gp, npv, fc, jacobian[i], of, residuals[i])
                    else:
                        for a in range(kj):
                            g = 0.0
                            nn = 0.0
                            for r in range(m):
                                x = jacobian[i, r, of + a]
                                g += x * residuals[i, r]
                                nn += x * x
                            gp[fc + a] += g
                            npv[fc + a] += nn
                    cell = cell_of[i, j]
                    if cell < 0:
                        continue
                    first = cell_first[i, j]  # W is not zeroed: its first contribution is stored
                    if kj == kf and first:
                        set_w(w[cell], jacobian[i], slot_offset[e_slot[i]], jacobian[i], of)
                    elif kj == kf:
                        add_w(w[cell], jacobian[i], slot_offset[e_slot[i]], jacobian[i], of)
                    else:
                        for a in range(kf):
                            for c in range(ke):
                                s = 0.0
                                if a < kj:  # rows past the block's size stay zero (padding)
                                    for r in range(m):
                                        s += jacobian[i, r, of + a] * jacobian[i, r, oe + c]
                                if first:
                                    w[cell, a, c] = s
                                else:
                                    w[cell, a, c] += s
                for q in range(n_combos):
                    t = u_target[i, q]
                    if t < 0:
                        continue
                    sa = combo_a[q]
                    sb = combo_b[q]
                    # rows from the slot with the larger block id, columns from the other
                    if block[i, sa] < block[i, sb]:
                        sa, sb = sb, sa
                    oa = slot_offset[sa]
                    ob = slot_offset[sb]
                    blk = up[t]
                    if slot_size[sa] == kf and sa == sb:  # J_a^T J_a, a diagonal block: its lower part
                        add_u_lower(blk, jacobian[i], oa, jacobian[i], oa)
                    elif slot_size[sa] == kf and slot_size[sb] == kf:
                        add_u(blk, jacobian[i], oa, jacobian[i], ob)
                    else:
                        for cc in range(slot_size[sb]):
                            for rr in range(slot_size[sa]):
                                s = 0.0
                                for r in range(m):
                                    s += jacobian[i, r, oa + rr] * jacobian[i, r, ob + cc]
                                blk[cc, rr] += s

    return cacheable_kernel(linearize_pass, numba.njit(parallel=True, cache=True, fastmath=CONTRACT),
                            add_v=outer_product_accumulator(ke, ke, m), add_w=outer_product_accumulator(ke, kf, m),
                            set_w=outer_product_accumulator(ke, kf, m, assign=True),
                            add_u=outer_product_accumulator(kf, kf, m),
                            add_u_lower=outer_product_accumulator(kf, kf, m, lower=True),
                            add_gradient_e=gradient_accumulator(ke, m), add_gradient_f=gradient_accumulator(kf, m))


@lru_cache(maxsize=None)
def slot_pass_kernel(m: int, kf: int, ke: int, s0: int, o0: int, k0: int, s1: int, o1: int, k1: int):
    """The fused pass for a residual group whose f-blocks sit in at most two slots: slot s0 (columns
    o0:o0 + k0 of the Jacobian) and s1 (o1:o1 + k1), s0 < s1, -1 for an absent one. Its slot pairs
    (the group's combo_a, combo_b) must be (s0, s0), (s0, s1), (s1, s1), in this order, those that
    exist. Same arguments and results as :func:`linearize_kernel` (slot_size, combo_a and combo_b are
    not read)."""
    def linearize_slots(chunk_inst, e_slot, e_local, block, slot_offset, slot_size, cell_of, cell_first, combo_a,
                        combo_b, u_target, n_f, e_col0, block_col, residuals, jacobian, v, w, gradient, column_norms,
                        u_priv, g_priv, n_priv, first_group):
        sizes = (m, kf, k0, k1)  # read here so that they are cells: numba's cache key (see cacheable_kernel)
        q01 = 1 if s0 >= 0 else 0  # the slot pairs' columns in u_target
        q11 = q01 + 1 if s0 >= 0 else 0
        for ch in numba.prange(chunk_inst.shape[0] - 1):
            up = u_priv[ch]
            gp = g_priv[ch]
            npv = n_priv[ch]
            if first_group:  # the chunk's private sums start here
                zero_chunk_sums(up, gp, npv)
            for i in range(chunk_inst[ch], chunk_inst[ch + 1]):
                ji = jacobian[i]
                ri = residuals[i]
                es = e_slot[i]
                oe = 0
                if es >= 0:
                    p = e_local[i]
                    oe = slot_offset[es]
                    add_gradient_e(gradient, column_norms, e_col0 + p * ke, ji, oe, ri)
                    add_v(v[p], ji, oe, ji, oe)
                b0 = -1
                if s0 >= 0:
                    b0 = block[i, s0]
                    if 0 <= b0 < n_f:
                        add_gradient_0(gp, npv, block_col[b0], ji, o0, ri)
                        cell = cell_of[i, s0]
                        if cell >= 0 and cell_first[i, s0]:  # W is not zeroed: its first contribution is stored
                            set_w0(w[cell], ji, oe, ji, o0)
                        elif cell >= 0:
                            add_w0(w[cell], ji, oe, ji, o0)
                    t = u_target[i, 0]
                    if t >= 0:
                        add_u00(up[t], ji, o0, ji, o0)
                if s1 >= 0:
                    b1 = block[i, s1]
                    if 0 <= b1 < n_f:
                        add_gradient_1(gp, npv, block_col[b1], ji, o1, ri)
                        cell = cell_of[i, s1]
                        if cell >= 0 and cell_first[i, s1]:
                            set_w1(w[cell], ji, oe, ji, o1)
                        elif cell >= 0:
                            add_w1(w[cell], ji, oe, ji, o1)
                    if s0 >= 0:
                        t = u_target[i, q01]
                        if t >= 0 and b0 < b1:  # rows from the slot with the larger block id
                            add_u10(up[t], ji, o1, ji, o0)
                        elif t >= 0:
                            add_u01(up[t], ji, o0, ji, o1)
                    t = u_target[i, q11]
                    if t >= 0:
                        add_u11(up[t], ji, o1, ji, o1)

    return cacheable_kernel(linearize_slots, numba.njit(parallel=True, cache=True, fastmath=CONTRACT),
                            add_v=outer_product_accumulator(ke, ke, m), add_gradient_e=gradient_accumulator(ke, m),
                            add_gradient_0=gradient_accumulator(k0, m), add_gradient_1=gradient_accumulator(k1, m),
                            set_w0=outer_product_accumulator(ke, k0, m, assign=True),
                            add_w0=outer_product_accumulator(ke, k0, m),
                            set_w1=outer_product_accumulator(ke, k1, m, assign=True),
                            add_w1=outer_product_accumulator(ke, k1, m),
                            add_u00=outer_product_accumulator(k0, k0, m, lower=True),
                            add_u11=outer_product_accumulator(k1, k1, m, lower=True),
                            add_u01=outer_product_accumulator(k0, k1, m),
                            add_u10=outer_product_accumulator(k1, k0, m))


def group_pass_kernel(m: int, kf: int, ke: int, slot_offset: np.ndarray, slot_size: np.ndarray, combo_a: np.ndarray,
                      combo_b: np.ndarray):
    """The linearisation pass for one residual group (m rows, its slots' Jacobian offsets and sizes, its
    f-slot pairs): :func:`slot_pass_kernel` when its f-blocks sit in at most two slots, else
    :func:`linearize_kernel`."""
    f_slots = sorted({int(a) for a in combo_a} | {int(b) for b in combo_b})
    if len(f_slots) > 2:
        return linearize_kernel(m, kf, ke)
    expected = [(a, b) for k, a in enumerate(f_slots) for b in f_slots[k:]]
    assert list(zip(combo_a.tolist(), combo_b.tolist())) == expected, "slot pairs out of the expected order"
    slots = [(s, int(slot_offset[s]), int(slot_size[s])) for s in f_slots] + [(-1, 0, 0)] * (2 - len(f_slots))
    return slot_pass_kernel(m, kf, ke, *slots[0], *slots[1])


@numba.njit(cache=True)
def reduce_linearization(u_priv, g_priv, n_priv, u_blocks, colptr, tcol, ncol, nrow, within, tdiag, u_values,
                         gradient, column_norms):
    """U's blocks (u_blocks: their S targets) in the lower S pattern = sum of chunks; gradient and
    column norms of the f columns likewise. S entries outside U's blocks stay 0. Serial: U has one
    block per camera in BA, a few thousand kf x kf sums at most, less than waking the worker threads."""
    n_chunks = u_priv.shape[0]
    for k in range(u_blocks.shape[0]):
        t = u_blocks[k]
        for cc in range(ncol[t]):
            base = colptr[tcol[t] + cc] + within[t] - cc
            start = cc if tdiag[t] else 0
            for rr in range(start, nrow[t]):
                s = 0.0
                for ch in range(n_chunks):
                    s += u_priv[ch, k, cc, rr]
                u_values[base + rr] = s
    for c in range(g_priv.shape[1]):
        s = 0.0
        nn = 0.0
        for ch in range(n_chunks):
            s += g_priv[ch, c]
            nn += n_priv[ch, c]
        gradient[c] = s
        column_norms[c] = nn


def chunk_instances(e_local: np.ndarray, n_chunks: int) -> np.ndarray:
    """Instance boundaries of n_chunks about-equal chunks that never split one e-block's run."""
    n = e_local.shape[0]
    goals = np.linspace(0, n, n_chunks + 1).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, e_local[1:] != e_local[:-1]])  # first instance of each run
    cut = starts[np.clip(np.searchsorted(starts, goals, side="left"), 0, starts.size - 1)]
    cut[0], cut[-1] = 0, n
    return np.maximum.accumulate(cut).astype(np.int64)
