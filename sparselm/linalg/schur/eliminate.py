"""The per-trial Schur kernel, one pass over the eliminated blocks ("points"), fused.

For each e-block p, with its cells a (distinct f-blocks sharing a residual with p), and the
Cholesky factor L_p of the damped block V_p + D_p = L_p L_p^T:

    V_p^-1 = L_p^-T L_p^-1,   vg_p = V_p^-1 g_p,   Z_a = W_a L_p^-T   (kf x ke),
    S_{f(a) f(b)} -= W_a V_p^-1 W_b^T = Z_a Z_b^T   for every pair a >= b of p's cells,
    rhs_{f(a)}    += W_a vg_p.

The pair update Z_a Z_b^T (BA: 9x9 from 9x3 factors, 2 kf^2 ke = 486 flops) is the hot loop; a
diagonal pair (a = b, one f-block's diagonal block of S) updates only the lower triangle, which is
all that the reduction reads (45 of 81 entries for BA). It
is straight-line code from :mod:`sparselm.linalg.schur.unrolled`, compiled with LLVM's SLP
vectoriser (4-wide FMA here), with Z_a held k-major (``z[la, k, r]``) so each of its rows is
contiguous. Forming Z by triangular substitution instead of Y_a = W_a V^-1 also halves the per-cell
work and makes S's contributions symmetric by construction.

Everything p needs is contiguous (its V, its cells' W), so each point's data is read once; the
alternative, gathering per S block, rereads every cell once per pair and was ~3x slower on
problem-16-22106 (memory-bound). Writes to S and rhs would race between points sharing a
camera, so each chunk of points (one per thread, balanced by pair count, fixed at set-up)
accumulates into a private block array; a second loop over S blocks (:func:`reduce_chunks`, parallel
only when S is large enough to repay waking the threads) reduces the chunks in a fixed order, so
results are bitwise reproducible for a given thread count.
f-blocks smaller than kf are zero-padded in W and cost nothing extra in correctness.

The stacked elimination (:func:`stacked_point_pass_kernel`, taken by dense_schur when the points touch
most of S). A point seen by c of the n_f kept blocks costs c (c + 1) / 2 pair updates, and when c is
close to n_f those updates add up to the dense product Z^T Z of the stacked factors: Z has one row
per eliminated coordinate (row p ke + k holds Z_a[r, k] at column block_col[f(a)] + r, zero where p
has no cell) and the reduced columns as columns, so sum_p sum_{a,b} Z_a Z_b^T = Z^T Z. BLAS ``dsyrk``
forms it at the speed of a large dense product (~40 GFLOP/s per core on the benchmarks' Intel Xeon
against ~16 for the 6x6x3 pair updates; COLMAP models with a few dozen images, whose points each see
most of them, spend half as long in this phase) without padding the smaller f-blocks. Z is never
whole in memory: each thread stacks a cache-sized block of its points' rows (:data:`STACK_BLOCK_BYTES`)
and adds that block's Gram product to its own before stacking the next (a COLMAP model of 1500 points
and 24 images: its first iteration no longer touches 5.3 MB of fresh pages, and the benchmark's time to
pycolmap's cost fell from 51 to 48 ms). The per-point steps (the damped V's factor, V^-1 g, Z, the right-hand side) are
the same inlined code in both passes (:func:`point_helpers`).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numba
import numpy as np

from sparselm.linalg.numba_blas import gram_lower
from sparselm.linalg.schur.structure_kernels import pair_block
from sparselm.linalg.schur.unrolled import CONTRACT, cacheable_kernel, outer_product_accumulator


def pair_update_flops(n_pairs: int, kf: int, ke: int) -> float:
    """Floating-point operations of the S pair updates of one point pass (2 kf^2 ke per pair)."""
    return 2.0 * kf * kf * ke * n_pairs


@lru_cache(maxsize=None)
def point_pass_kernel(kf: int, ke: int):
    """eliminate_and_accumulate specialised for f-block size kf, e-block size ke (its chunks are summed
    by :func:`reduce_chunks`).

    Call it inside :func:`sparselm.linalg.schur.unrolled.slp_vectorization`."""
    def eliminate_and_accumulate(chunk_points, v, diagonal, e_col0, gradient, cells_of_e, cell_f, pair_start,
                                 pair_target, table, w, v_inv, vg, z_work, chol_work, s_priv, rhs_priv, failures):
        # No allocation inside the prange body: numba may hoist it out of the loop and share it
        # between threads (seen here as heap corruption). All scratch comes in per chunk.
        n_chunks = chunk_points.shape[0] - 1
        for ch in numba.prange(n_chunks):
            failures[ch] = 0
            sp = s_priv[ch]
            rp = rhs_priv[ch]
            for t in range(sp.shape[0]):
                for i in range(kf):
                    for j in range(kf):
                        sp[t, i, j] = 0.0
            for f in range(rp.shape[0]):
                for i in range(kf):
                    rp[f, i] = 0.0
            z = z_work[ch]
            L = chol_work[ch, 0]
            M = chol_work[ch, 1]
            for p in range(chunk_points[ch], chunk_points[ch + 1]):
                c0 = e_col0 + p * ke
                if not factor_point(p, v, diagonal, c0, gradient, L, M, v_inv, vg):
                    failures[ch] += 1
                    continue
                first = cells_of_e[p]
                n_cells = cells_of_e[p + 1] - first
                for la in range(n_cells):
                    cell = first + la
                    add_cell_rhs(rp[cell_f[cell]], w, cell, vg, p)
                    cell_factor(z[la], kf, w, cell, M)
                q = pair_start[p]
                for la in range(n_cells):
                    za = z[la]
                    fa = cell_f[first + la]
                    for lb in range(la):
                        pair_update(sp[pair_block(table, pair_target, q, cell_f[first + lb], fa)], za, 0, z[lb], 0)
                        q += 1
                    # a diagonal block: its lower part
                    diagonal_update(sp[pair_block(table, pair_target, q, fa, fa)], za, 0, za, 0)
                    q += 1

    eliminate_and_accumulate = cacheable_kernel(
        eliminate_and_accumulate, numba.njit(parallel=True, cache=True, fastmath=CONTRACT),
        pair_update=outer_product_accumulator(kf, kf, ke),
        diagonal_update=outer_product_accumulator(kf, kf, ke, lower=True), **point_helpers(kf, ke))

    return eliminate_and_accumulate


@lru_cache(maxsize=None)
def point_helpers(kf: int, ke: int) -> dict:
    """The per-point steps both point passes share, inlined, for f-blocks padded to kf and e-blocks of ke:

    factor_point(p, v, diagonal, c0, gradient, L, M, v_inv, vg) -> ok
        L L^T = V_p + D_p (False, nothing else written, when not positive definite), M = L^-1,
        v_inv[p] = M^T M = (V_p + D_p)^-1 and vg[p] = v_inv[p] g_p.
    add_cell_rhs(rhs_f, w, cell, vg, p)
        rhs_f += W_cell vg_p (kf entries).
    cell_factor(out, n_rows, w, cell, M)
        out[k, r] = (W_cell M^T)[r, k] = sum_{j <= k} W_cell[r, j] M[k, j] for r < n_rows: Z_a, k-major.
    """
    @numba.njit(inline="always", fastmath=CONTRACT)
    def factor_point(p, v, diagonal, c0, gradient, L, M, v_inv, vg):
        for j in range(ke):
            s = v[p, j, j] + diagonal[c0 + j]
            for k in range(j):
                s -= L[j, k] * L[j, k]
            if not (s > 0.0):
                return False
            d = math.sqrt(s)
            L[j, j] = d
            inv_d = 1.0 / d  # one division per column: the rest multiplies (shorter latency chain)
            M[j, j] = inv_d
            for i in range(j + 1, ke):
                t = v[p, i, j]
                for k in range(j):
                    t -= L[i, k] * L[j, k]
                L[i, j] = t * inv_d
        # M = L^-1 (lower triangular; its diagonal 1 / L[i, i] is already there)
        for c in range(ke):
            for i in range(ke):
                if i < c:
                    M[i, c] = 0.0
                elif i > c:
                    t = 0.0
                    for k in range(c, i):
                        t -= L[i, k] * M[k, c]
                    M[i, c] = t * M[i, i]
        for a in range(ke):
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
        return True

    @numba.njit(inline="always", fastmath=CONTRACT)
    def add_cell_rhs(rhs_f, w, cell, vg, p):
        for r in range(kf):
            acc = 0.0
            for k in range(ke):
                acc += w[cell, r, k] * vg[p, k]
            rhs_f[r] += acc

    @numba.njit(inline="always", fastmath=CONTRACT)
    def cell_factor(out, n_rows, w, cell, M):
        for k in range(ke):
            for r in range(n_rows):
                s = 0.0
                for j in range(k + 1):
                    s += w[cell, r, j] * M[k, j]
                out[k, r] = s

    return {"factor_point": factor_point, "add_cell_rhs": add_cell_rhs, "cell_factor": cell_factor}


def stacked_flops(n_reduced: int, n_e: int, ke: int) -> float:
    """Floating-point operations of the stacked elimination's Gram product Z^T Z (lower triangle)."""
    return float(n_reduced) * (n_reduced + 1) * n_e * ke


#: the stacked elimination stacks this many bytes of factors (a whole number of points, at least one)
#: per thread before each Gram product, so that the block is still in the core's cache when ``dsyrk``
#: reads it back
STACK_BLOCK_BYTES = 512 * 2**10


def stack_block_points(n_reduced: int, ke: int) -> int:
    """How many points' factors the stacked elimination stacks per thread between Gram products."""
    return max(1, STACK_BLOCK_BYTES // (ke * n_reduced * 8))


@lru_cache(maxsize=None)
def stacked_point_pass_kernel(kf: int, ke: int):
    """eliminate_into_stack specialised for f-block size kf, e-block size ke: the point pass of the stacked
    elimination (a dense S that most points touch throughout; see :class:`sparselm.linalg.schur.direct.DenseSchur`).

    Each chunk walks its points in blocks of ``stack.shape[1] // ke`` (:func:`stack_block_points`). Each
    point p of a block writes its factors Z_a = W_a L_p^-T into its ke rows of the chunk's block
    ``stack[ch]`` ((block points ke, n_reduced): row k of p holds Z_a[r, k] at column block_col[f(a)] + r,
    zero where p has no cell), and one BLAS ``dsyrk`` adds the block's Z^T Z into ``gram_priv[ch]``
    (:func:`sparselm.linalg.numba_blas.gram_lower`; the first block overwrites), so that the chunk ends
    with sum_p Z_p Z_p^T over its points; :func:`reduce_stacked` sums the chunks. The right-hand side goes
    to ``rhs_priv`` as in :func:`point_pass_kernel`."""
    def eliminate_into_stack(chunk_points, v, diagonal, e_col0, gradient, cells_of_e, cell_f, block_col, block_size,
                             w, v_inv, vg, stack, chol_work, gram_priv, rhs_priv, failures):
        n_chunks = chunk_points.shape[0] - 1
        block_points = stack.shape[1] // ke
        for ch in numba.prange(n_chunks):
            failures[ch] = 0
            rp = rhs_priv[ch]
            for f in range(rp.shape[0]):
                for i in range(kf):
                    rp[f, i] = 0.0
            L = chol_work[ch, 0]
            M = chol_work[ch, 1]
            block = stack[ch]
            beta = 0.0
            p0, end = chunk_points[ch], chunk_points[ch + 1]
            while True:  # at least one Gram product, so that a chunk without points still writes its zeros
                p1 = min(p0 + block_points, end)
                for p in range(p0, p1):
                    rows = block[(p - p0) * ke:(p - p0 + 1) * ke]
                    rows[:, :] = 0.0
                    c0 = e_col0 + p * ke
                    if not factor_point(p, v, diagonal, c0, gradient, L, M, v_inv, vg):
                        failures[ch] += 1
                        continue
                    for cell in range(cells_of_e[p], cells_of_e[p + 1]):
                        f = cell_f[cell]
                        add_cell_rhs(rp[f], w, cell, vg, p)
                        col = block_col[f]
                        cell_factor(rows[:, col:col + block_size[f]], block_size[f], w, cell, M)
                gram_lower(block[:(p1 - p0) * ke], gram_priv[ch], beta)
                beta = 1.0
                p0 = p1
                if p0 >= end:
                    break

    return cacheable_kernel(eliminate_into_stack, numba.njit(parallel=True, cache=True, fastmath=CONTRACT),
                            **point_helpers(kf, ke))


#: the stacked elimination is used when its Gram product costs at most this many times the pair
#: updates' flops (BLAS dsyrk ran at ~40 GFLOP/s per core on the Intel Xeon of the benchmarks, the pair
#: updates at ~16)
STACKED_MAX_FLOP_RATIO = 2.0


def stacked_elimination_pays(n_reduced: int, n_e: int, ke: int, n_pairs: int, kf: int) -> bool:
    """True when a dense S is better formed by the stacked elimination (Gram products of the points'
    stacked factors) than by the cell-pair updates: when the points touch most of S (threshold above)."""
    return stacked_flops(n_reduced, n_e, ke) <= STACKED_MAX_FLOP_RATIO * pair_update_flops(n_pairs, kf, ke)


def reduce_stacked(gram_priv, rhs_priv, u_values, diag_positions, diagonal, block_col, block_size, gradient,
                   s_values, rhs):
    """The dense S (column-major n x n, lower triangle) = U - sum of the chunks' Gram products (+ the damping
    on its diagonal), and the reduced right-hand side as in :func:`reduce_chunks`; sums in chunk order."""
    _subtract_grams(gram_priv, u_values, s_values)
    _add_diagonal_and_rhs(rhs_priv, diag_positions, diagonal, block_col, block_size, gradient, s_values, rhs)


@numba.njit(cache=True)
def _subtract_grams(gram_priv, u_values, s_values):
    n_chunks, n = gram_priv.shape[0], gram_priv.shape[1]
    for c in range(n):
        for r in range(c, n):
            s = u_values[c * n + r]
            for ch in range(n_chunks):
                s -= gram_priv[ch, c, r]
            s_values[c * n + r] = s


#: below this many scalar additions (S's lower blocks x kf^2 x chunks) the chunks are summed serially:
#: less than waking numba's worker threads (0.1-0.2 ms per parallel region on numba's workqueue layer, on a
#: 2-core virtual machine, when this was measured; ~0.02 ms on TBB, not measured again)
PARALLEL_REDUCE_MIN_ADDS = 1 << 18


def reduce_chunks(s_priv, rhs_priv, u_values, diag_positions, diagonal, colptr, tcol, ncol, nrow, within, tdiag,
                  block_col, block_size, gradient, s_values, rhs):
    """S = U - sum of the chunks' private accumulators (+ the damping on its diagonal), and the reduced
    right-hand side -g_f + sum of the chunks' ones; the per-entry sums run in chunk order either way."""
    work = tcol.shape[0] * s_priv.shape[2] * s_priv.shape[3] * s_priv.shape[0]
    subtract = _subtract_chunks_in_parallel if work >= PARALLEL_REDUCE_MIN_ADDS else _subtract_chunks
    subtract(s_priv, u_values, colptr, tcol, ncol, nrow, within, tdiag, s_values)
    _add_diagonal_and_rhs(rhs_priv, diag_positions, diagonal, block_col, block_size, gradient, s_values, rhs)


@numba.njit(inline="always")
def _subtract_chunks_at(t, s_priv, u_values, colptr, tcol, ncol, nrow, within, tdiag, s_values):
    n_chunks = s_priv.shape[0]
    for cc in range(ncol[t]):
        base = colptr[tcol[t] + cc] + within[t] - cc
        start = cc if tdiag[t] else 0
        for rr in range(start, nrow[t]):
            s = u_values[base + rr]
            for ch in range(n_chunks):
                s -= s_priv[ch, t, cc, rr]
            s_values[base + rr] = s


@numba.njit(cache=True)
def _subtract_chunks(s_priv, u_values, colptr, tcol, ncol, nrow, within, tdiag, s_values):
    for t in range(tcol.shape[0]):
        _subtract_chunks_at(t, s_priv, u_values, colptr, tcol, ncol, nrow, within, tdiag, s_values)


@numba.njit(parallel=True, cache=True)
def _subtract_chunks_in_parallel(s_priv, u_values, colptr, tcol, ncol, nrow, within, tdiag, s_values):
    for t in numba.prange(tcol.shape[0]):
        _subtract_chunks_at(t, s_priv, u_values, colptr, tcol, ncol, nrow, within, tdiag, s_values)


@numba.njit(cache=True)
def _add_diagonal_and_rhs(rhs_priv, diag_positions, diagonal, block_col, block_size, gradient, s_values, rhs):
    n_chunks = rhs_priv.shape[0]
    for c in range(diag_positions.shape[0]):
        s_values[diag_positions[c]] += diagonal[c]
    for f in range(rhs_priv.shape[1]):
        c0 = block_col[f]
        for a in range(block_size[f]):
            s = -gradient[c0 + a]
            for ch in range(n_chunks):
                s += rhs_priv[ch, f, a]
            rhs[c0 + a] = s


def chunk_points_by_pairs(pair_start: np.ndarray, n_chunks: int) -> np.ndarray:
    """Point boundaries cutting the points into n_chunks of about equal pair count."""
    n_points = pair_start.shape[0] - 1
    work = pair_start + np.arange(n_points + 1)  # pairs + a unit cost per point
    goals = np.linspace(0, work[-1], n_chunks + 1)
    bounds = np.searchsorted(work, goals, side="left")
    bounds[0], bounds[-1] = 0, n_points
    return np.maximum.accumulate(np.clip(bounds, 0, n_points)).astype(np.int64)
