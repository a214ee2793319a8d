"""What the Schur solvers allocate, for :func:`sparselm.lm.memory.estimate_memory` (bytes; see
:mod:`sparselm.linalg.memory_model`), and the cap on their per-thread private copies of S.

    schur: point blocks   V, V^-1 (n_e ke x ke blocks) and the eliminated blocks' vectors
    schur: cell blocks    W (one kf x ke block per cell) and the cells' indices
    schur: accumulators   the per-chunk private copies of S's and U's blocks (one chunk per thread,
                          capped by PRIVATE_S_BYTES), right-hand sides and the Y = W V^-1 scratch
    schur: structure      cell pairs (for each eliminated block, every pair of its cells) and the
                          temporaries of the pattern build
    schur: stacked factors  dense_schur's stacked elimination: per thread, a cache-sized block of
                          stacked factors Z and a private Gram product of S's size
    S values              lower(S) values (twice) and row indices
then per solver: the Cholesky factor of S (sparse_schur: its analysed size when known, else the dense
triangle when small, else the block-graph estimate of
:func:`~sparselm.linalg.schur.factor_estimate.estimate_schur_factor`), the dense S (dense_schur), or
the preconditioner blocks and CG vectors (iterative_schur).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparselm.linalg.memory_model import (EXACT_PAIRS_ABOVE, F8, MemoryContext, csr_by_key, distinct_lower_pairs,
                                          factor_items, lower_dense)
from sparselm.linalg.schur.eliminate import stack_block_points, stacked_elimination_pays
from sparselm.linalg.schur.factor_estimate import estimate_schur_factor, schur_block_pattern
from sparselm.util.units import format_bytes

PRIVATE_S_BYTES = 512 * 2**20  # cap on the per-chunk copies of S's blocks


def chunk_count(threads: int, n_targets: int, kf: int) -> int:
    """Chunks of the point pass: one per thread, fewer if their private S copies would exceed
    PRIVATE_S_BYTES (read at call time)."""
    per_chunk = n_targets * kf * kf * 8
    return max(1, min(threads, PRIVATE_S_BYTES // max(per_chunk, 1)))


@dataclass(frozen=True)
class SchurCounts:
    """Kept (f) and eliminated (e) blocks, their sizes, reduced columns n_r, U's own blocks n_u and
    the nonzeros of lower(S)."""

    n_f: int
    n_e: int
    kf: int
    ke: int
    n_r: int
    n_u: int
    nnz_s: int
    n_pairs: int = 0


def schur_factor_nnz(ctx: MemoryContext, n_r: int):
    """Nonzeros of the factor of S: the analysed/estimated size given in ``ctx.factor_nnz``, the dense
    triangle when that is small, else the block-graph estimate from the layout; None without one."""
    if ctx.factor_nnz is not None:
        return int(ctx.factor_nnz)
    if lower_dense(n_r) * F8 <= EXACT_PAIRS_ABOVE:
        return lower_dense(n_r)
    if ctx.layout is None:
        return None
    return int(estimate_schur_factor(ctx.layout)["nnz"])


def schur_items(ctx: MemoryContext) -> SchurCounts:
    """Add what every Schur solver allocates (V, W, the private accumulators of S and U, the cell-pair
    structure, S's values) to ``ctx``; return the counts the solver-specific parts need."""
    problem, c, threads = ctx.problem, ctx.counts, ctx.threads
    n_f, n_e, kf, ke, n_r = c.n_f, c.n_e, c.kf, c.ke, c.n_reduced_columns
    # free block ids: f-blocks (non-eliminated groups) and e-blocks (eliminated) numbered separately
    f_base, e_base, nf_, ne_ = {}, {}, 0, 0
    for g in problem.parameter_groups.values():
        if c.eliminate[g.name]:
            e_base[g.name], ne_ = ne_, ne_ + c.n_free[g.name]
        else:
            f_base[g.name], nf_ = nf_, nf_ + c.n_free[g.name]
    local = {g.name: np.cumsum(~g.constant) - 1 for g in problem.parameter_groups.values()}
    cells = np.zeros(n_e, dtype=np.int64)  # per e-block: its (instance, free f-slot) uses, an upper bound of its cells
    cell_e, cell_f = [], []
    dense_targets = lower_dense(n_f)
    # the cells' (e, f) ids are kept only to count S's blocks without a layout (with one, its co-visibility
    # pattern gives the count) and only when the bound below may be too loose
    may_count_pairs = ctx.layout is None and dense_targets * kf * kf * F8 > EXACT_PAIRS_ABOVE
    u_pairs = u_entries = 0  # f-f blocks of instances touching two f-blocks (none in BA)
    for rg in problem.residual_groups:
        f_slots = [j for j, g in enumerate(rg.groups) if not c.eliminate[g]]
        e_slots = [j for j, g in enumerate(rg.groups) if c.eliminate[g]]
        n = rg.n_instances
        u_pairs += n * len(f_slots) * (len(f_slots) - 1) // 2
        u_entries += n * len(f_slots) * (len(f_slots) + 1) // 2
        if not e_slots or not f_slots or n_e == 0:
            continue
        e_group = problem.parameter_groups[rg.groups[e_slots[0]]]
        e_idx = rg.index[:, e_slots[0]]
        e_free = ~e_group.constant[e_idx]
        e_id = (e_base[e_group.name] + local[e_group.name][e_idx]).astype(np.int32 if n_e < 2**31 else np.int64)
        uses = None  # per e-block its instances, shared by the f-slots where no block is constant
        for jf in f_slots:
            f_group = problem.parameter_groups[rg.groups[jf]]
            f_idx = rg.index[:, jf]
            if not may_count_pairs and not e_group.constant.any() and not f_group.constant.any():
                if uses is None:
                    uses = np.bincount(e_id, minlength=n_e)
                cells += uses
                continue
            ok = e_free & ~f_group.constant[f_idx]
            cells += np.bincount(e_id[ok], minlength=n_e)
            if may_count_pairs:
                cell_e.append(e_id[ok])
                cell_f.append((f_base[f_group.name] + local[f_group.name][f_idx[ok]]).astype(e_id.dtype))
    n_cells = int(cells.sum())
    n_pairs = int(np.sum(cells * (cells + 1) // 2))
    bound = n_f + int(np.sum(cells * (cells - 1) // 2)) + u_pairs
    if min(bound, dense_targets) * kf * kf * F8 <= EXACT_PAIRS_ABOVE or n_cells == 0:
        n_targets = min(bound, dense_targets)
        exact = False
    elif ctx.layout is not None:  # S's blocks from the layout's co-visibility (the auto choice computed it)
        rows, cols = schur_block_pattern(ctx.layout)
        n_targets = min(n_f + int(np.count_nonzero(rows != cols)) + u_pairs, dense_targets)
        exact = u_pairs == 0
    else:  # count the distinct f-block pairs that share an e-block (O(pairs) time, O(cells) memory)
        e_all = np.concatenate(cell_e)
        f_all = np.concatenate(cell_f)
        del cell_e[:], cell_f[:]
        e_ptr, e_to_f = csr_by_key(e_all, f_all, n_e)
        f_ptr, f_to_e = csr_by_key(f_all, e_all, n_f)
        del e_all, f_all
        shared = int(distinct_lower_pairs(f_ptr, f_to_e, e_ptr, e_to_f, max(1, min(threads, 64))))
        n_targets = min(n_f + shared + u_pairs, dense_targets)
        exact = u_pairs == 0
    nnz_s = min(c.diag_lower_f + (n_targets - n_f) * kf * kf, lower_dense(n_r))
    per_chunk = max(n_targets * kf * kf * F8, 1)
    n_chunks = max(1, min(threads, PRIVATE_S_BYTES // per_chunk))
    max_cells = int(cells.max(initial=0))
    n_u = min(n_f + u_pairs, dense_targets)  # U's own blocks (BA: the camera diagonal)

    ctx.add("schur: point blocks", (2 * n_e * ke * ke + 2 * n_e * ke) * F8)
    ctx.add("schur: cell blocks", n_cells * kf * ke * F8 + 4 * n_cells * F8)
    ctx.add("schur: accumulators", n_chunks * (per_chunk + n_u * kf * kf * F8) + 3 * n_chunks * n_r * F8
        + n_chunks * max_cells * ke * kf * F8)
    ctx.add("schur: structure", 6 * n_pairs * F8 + 2 * n_e * F8 + 3 * u_entries * F8)
    ctx.add("S values", 3 * nnz_s * F8 + n_r * F8)
    ctx.notes.append(f"{n_chunks} private S accumulator(s) of {format_bytes(per_chunk)} for {threads} thread(s); "
                 f"{n_pairs} cell pairs; S has {'' if exact else 'at most '}{n_targets} blocks")
    return SchurCounts(n_f=n_f, n_e=n_e, kf=kf, ke=ke, n_r=n_r, n_u=n_u, nnz_s=nnz_s, n_pairs=n_pairs)


def sparse_schur_memory(ctx: MemoryContext) -> None:
    """sparse_schur: the shared Schur items and CHOLMOD's factor of S."""
    s = schur_items(ctx)
    factor_items(ctx, s.nnz_s, schur_factor_nnz(ctx, s.n_r), "S")


def dense_schur_memory(ctx: MemoryContext) -> None:
    """dense_schur: the shared Schur items and two dense copies of S; with the stacked elimination also a
    block of stacked factors and a private Gram product per thread (the cell-pair accumulators it does
    not allocate stay counted: an overestimate)."""
    s = schur_items(ctx)
    ctx.add("dense matrices", 2 * s.n_r * s.n_r * F8)
    if stacked_elimination_pays(s.n_r, s.n_e, s.ke, s.n_pairs, s.kf):
        block_rows = stack_block_points(s.n_r, s.ke) * s.ke
        ctx.add("schur: stacked factors", max(1, ctx.threads) * (block_rows + s.n_r) * s.n_r * F8)


def _one_eliminating_group(problem) -> bool:
    """True when exactly one residual group touches the eliminated groups (bundle adjustment): then
    ``iterative_schur`` multiplies through the Jacobian (:mod:`sparselm.linalg.schur.implicit`)."""
    eliminated = {g.name for g in problem.parameter_groups.values() if g.eliminate}
    return sum(1 for rg in problem.residual_groups if eliminated & set(rg.groups)) == 1


def jacobian_schur_memory(ctx: MemoryContext) -> None:
    """iterative_schur through the Jacobian: per point V, V^-1, V^-1 g and the instance range; per
    instance 32-bit e-slot, e-block and U-target entries; U's own blocks (values, pattern, the
    per-thread accumulators, a symmetric CSR copy); per-thread camera vectors; CG vectors."""
    c, threads = ctx.counts, max(1, ctx.threads)
    n_f, n_e, kf, ke, n_r = c.n_f, c.n_e, c.kf, c.ke, c.n_reduced_columns
    n_inst = sum(rg.n_instances for rg in ctx.problem.residual_groups)
    ctx.add("schur: point blocks", (2 * n_e * ke * ke + n_e * ke + n_e) * F8)
    ctx.add("schur: instance maps", 3 * 4 * n_inst)
    u_block = kf * kf * F8
    ctx.add("iterative solver", n_f * u_block * (4 + 2 * threads) + 2 * threads * n_r * F8
            + 3 * threads * n_f * kf * F8 + 7 * n_r * F8 + c.n_columns * F8)


def iterative_schur_memory(ctx: MemoryContext) -> None:
    """iterative_schur: through the Jacobian (:func:`jacobian_schur_memory`) for bundle adjustment;
    otherwise (W formed) the shared Schur items, preconditioner blocks and their per-thread copies, CG
    vectors, U's blocks as a symmetric CSR (values, column indices, source positions)."""
    if _one_eliminating_group(ctx.problem):
        jacobian_schur_memory(ctx)
        return
    s = schur_items(ctx)
    pc_threads = max(1, min(ctx.threads, s.n_e))
    ctx.add("iterative solver", (pc_threads + 1) * s.n_f * s.kf * s.kf * F8 + 2 * pc_threads * s.n_r * F8
            + 8 * s.n_r * F8 + s.n_e * s.ke * F8 + 2 * s.n_u * s.kf * s.kf * 3 * F8)
