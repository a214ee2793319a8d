"""Sparse structure, built once per problem: column layout, block-use lists and the normal matrix.

Column layout. Free parameter blocks are numbered in column order: the blocks of groups that are
*not* eliminated come first (the reduced / camera system of a Schur solver), then the eliminated
groups; within a group, block order. Constant blocks get no columns. Coordinates held constant
inside free blocks keep their columns: their Jacobian columns are zeroed and the damping diagonal
gets a 1 there, so the step in them is exactly zero.

Jacobian storage. Residual group g stores its Jacobian in one C-contiguous array (n, m, K) with
K = sum of its slots' tangent sizes (the block sizes for Euclidean groups); slot j occupies columns
slot_offset[j] : slot_offset[j] + k_j.
``block[i, j]`` is the free block id instance i touches in slot j (-1 if that block is constant).

Block uses. For every free block b, the (instance, slot) pairs that touch it, as a CSR list per
residual group. Gradient g_b = sum J_s^T r_i and the column norms diag(J^T J) are gathered per
block with it, so parallel loops over blocks never race.

Normal matrix. H = J^T J is stored as the lower triangle of a CSC matrix (CHOLMOD reads the lower
triangle). Its nonzero blocks ("targets") are the pairs (row block >= column block) that share a
residual instance, plus every diagonal block. Targets are sorted by (column block, row block), so
each block-column starts with its diagonal block, and all columns of a block-column list the same
row blocks. For target t with column offset c0, row offset r0 and offset ``within_t`` (rows of
the targets before it in its block-column), entry (r0 + rr, c0 + cc) of H lives at

    data[colptr[c0 + cc] + within_t + rr - cc]        (rr >= cc on the diagonal block)

and the diagonal entry of column c at data[colptr[c]]. Contributions J_a^T J_b are gathered per
target, again race-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numba
import numpy as np
import scipy.sparse as sp

from sparselm.core.problem import Problem
from sparselm.util.numerics import chunk_range, sum_in_order


@dataclass
class ResidualLayout:
    """Per residual group, in *internal instance order*: the instances sorted (stably) by the
    highest free block they touch, so that all residuals of one eliminated block (BA: one point)
    are contiguous. ``order[k]`` is the user's index of internal instance k; ``index``, ``data``
    and ``sqrt_information`` are the group's arrays permuted once. Also: slot offsets in the
    Jacobian array, free block ids, block-use CSR."""

    order: np.ndarray        # (n,) int64 user index of each internal instance
    index: np.ndarray        # (n, n_slots) int64 block indices, internal order
    data: np.ndarray         # (n, data_size) float64, internal order
    sqrt_information: object  # as ResidualGroup.sqrt_information, permuted if per instance
    slot_offset: np.ndarray  # (n_slots,) int64 column offset of each slot in the (n, m, K) Jacobian
    slot_size: np.ndarray    # (n_slots,) int64
    block: np.ndarray        # (n, n_slots) int64 free block id or -1
    use_ptr: np.ndarray      # (n_free_blocks + 1,) int64
    use_instance: np.ndarray  # (n_uses,) int64
    use_slot: np.ndarray     # (n_uses,) int64

    @property
    def jacobian_width(self) -> int:
        return int(self.slot_offset[-1] + self.slot_size[-1])


@dataclass
class Layout:
    """Column layout of the free parameters and the per-residual-group maps into it."""

    group_order: List[str]              # parameter groups in column order
    block_id: Dict[str, np.ndarray]     # group -> (n_blocks,) free block id or -1
    block_col: np.ndarray               # (n_free_blocks,) first column of each free block
    block_size: np.ndarray              # (n_free_blocks,)
    n_columns: int                      # number of free parameters
    n_reduced_blocks: int               # free blocks of non-eliminated groups (they come first)
    n_reduced_columns: int
    constant_columns: np.ndarray        # (n_columns,) bool: coordinates held constant
    residuals: List[ResidualLayout]
    #: results computed from the layout on demand and kept for the rest of the solve, by name (the
    #: co-visibility pattern: :func:`sparselm.linalg.schur.factor_estimate.schur_block_pattern`)
    derived: Dict[str, object] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def n_blocks(self) -> int:
        return int(self.block_col.shape[0])


def build_layout(problem: Problem) -> Layout:
    """Number the free blocks and columns and build each residual group's block-use lists."""
    if not problem.residual_groups:
        raise ValueError("the problem has no residual groups")
    groups = list(problem.parameter_groups.values())
    order = [g for g in groups if not g.eliminate] + [g for g in groups if g.eliminate]
    block_id, cols, sizes, const_cols = {}, [], [], []
    next_block, next_col, n_reduced_blocks, n_reduced_cols = 0, 0, 0, 0
    for g in order:
        free = ~g.constant
        ids = np.full(g.n_blocks, -1, dtype=np.int64)
        n_free = int(free.sum())
        ids[free] = np.arange(next_block, next_block + n_free)
        block_id[g.name] = ids
        cols.append(next_col + g.tangent_size * np.arange(n_free, dtype=np.int64))
        sizes.append(np.full(n_free, g.tangent_size, dtype=np.int64))
        const_cols.append(np.tile(g.constant_coordinates, n_free))
        next_block += n_free
        next_col += n_free * g.tangent_size
        if not g.eliminate:
            n_reduced_blocks, n_reduced_cols = next_block, next_col
    if next_col == 0:
        raise ValueError("every parameter block is constant: nothing to optimise")
    block_col = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    residual_layouts = []
    for rg in problem.residual_groups:
        k = np.array([problem.parameter_groups[gname].tangent_size for gname in rg.groups], dtype=np.int64)
        slot_offset = np.concatenate([[0], np.cumsum(k)[:-1]]).astype(np.int64)
        slot_ids = [block_id[gname] for gname in rg.groups]
        id_offset = np.concatenate([[0], np.cumsum([ids.size for ids in slot_ids])[:-1]]).astype(np.int64)
        index = np.ascontiguousarray(rg.index, dtype=np.int64)
        perm, block, use_ptr, use_instance, use_slot = instance_order_and_uses(
            index, np.concatenate(slot_ids), id_offset, next_block)
        sqrt_info, data = rg.sqrt_information, np.ascontiguousarray(rg.data)
        if perm is not None:  # not yet in order: permute the per-instance arrays once
            index, data = gather_rows(index, perm), gather_rows(data, perm)
            if isinstance(sqrt_info, np.ndarray):
                sqrt_info = gather_rows(np.ascontiguousarray(sqrt_info), perm)
        else:
            perm = np.arange(index.shape[0], dtype=np.int64)
        residual_layouts.append(ResidualLayout(perm, index, data, sqrt_info, slot_offset, k, block, use_ptr,
                                               use_instance, use_slot))
    return Layout([g.name for g in order], block_id, block_col, np.concatenate(sizes), next_col,
                  n_reduced_blocks, n_reduced_cols, np.concatenate(const_cols).astype(bool), residual_layouts)


@numba.njit(cache=True)
def instance_order_and_uses(index, slot_ids, id_offset, n_blocks):
    """One residual group's internal order, free-block ids and block-use lists, in O(n + n_blocks).

    index (n, s): the user's block indices; slot_ids[id_offset[j] + b]: free block id of block b of
    slot j's group (-1 if constant). Instances are stably counting-sorted by their highest free block
    (-1 first). Returns (perm or None when the instances are already in that order, block (n, s) in
    internal order, use_ptr, use_instance, use_slot): the uses (i, j) of each block b, in instance
    then slot order, are use_ptr[b]:use_ptr[b+1]."""
    n, s = index.shape
    raw = np.empty((n, s), np.int64)
    key = np.empty(n, np.int64)
    use_ptr = np.zeros(n_blocks + 1, np.int64)  # uses counted here: their number does not depend on the order
    in_order = True
    for i in range(n):
        top = -1
        for j in range(s):
            b = slot_ids[id_offset[j] + index[i, j]]
            raw[i, j] = b
            top = max(top, b)
            if b >= 0:
                use_ptr[b + 1] += 1
        key[i] = top + 1
        if i > 0 and key[i] < key[i - 1]:
            in_order = False
    perm = None
    block = raw
    if not in_order:
        ptr, order = counting_order(key, n_blocks + 1)
        block = np.empty((n, s), np.int64)
        for i in range(n):
            for j in range(s):
                block[i, j] = raw[order[i], j]
        perm = order
    for b in range(n_blocks):
        use_ptr[b + 1] += use_ptr[b]
    fill = use_ptr[:-1].copy()
    use_instance = np.empty(use_ptr[n_blocks], np.int64)
    use_slot = np.empty(use_ptr[n_blocks], np.int64)
    for i in range(n):
        for j in range(s):
            b = block[i, j]
            if b >= 0:
                use_instance[fill[b]] = i
                use_slot[fill[b]] = j
                fill[b] += 1
    return perm, block, use_ptr, use_instance, use_slot


@numba.njit(parallel=True, cache=True)
def gather_rows(array, perm):
    """array[perm] for a C-contiguous array of any rank >= 1, rows copied in parallel."""
    n = perm.shape[0]
    flat = array.reshape(array.shape[0], -1)
    out = np.empty((n, flat.shape[1]), array.dtype)
    for i in numba.prange(n):
        src = perm[i]
        for c in range(flat.shape[1]):
            out[i, c] = flat[src, c]
    return out.reshape((n,) + array.shape[1:])


# ---------------------------------------------------------------------------------------------
# Gradient and column norms, gathered per block.

@numba.njit(parallel=True, cache=True)
def accumulate_gradient_and_column_norms(use_ptr, use_instance, use_slot, slot_offset, block_col, block_size,
                                         residuals, jacobian, gradient, column_norms):
    """gradient[cols(b)] += J_s^T r_i and column_norms[cols(b)] += sum_r J_s[r, c]^2 over b's uses."""
    m = residuals.shape[1]
    for b in numba.prange(block_col.shape[0]):
        c0 = block_col[b]
        k = block_size[b]
        for u in range(use_ptr[b], use_ptr[b + 1]):
            i = use_instance[u]
            off = slot_offset[use_slot[u]]
            for c in range(k):
                g = 0.0
                n2 = 0.0
                for r in range(m):
                    v = jacobian[i, r, off + c]
                    g += v * residuals[i, r]
                    n2 += v * v
                gradient[c0 + c] += g
                column_norms[c0 + c] += n2


def model_decrease(block, slot_offset, block_col, block_size, jacobian, residuals, x):
    """-(J x)^T (r + J x / 2) summed over the instances: the decrease of the linear model
    1/2 |r + J x|^2 from x = 0 to x. Each (J x)_ir is formed where it is used, so nothing is stored
    per instance."""
    return _model_decrease_in_chunks(block, slot_offset, block_col, block_size, jacobian, residuals, x,
                                     numba.get_num_threads())


@numba.njit(parallel=True, cache=True)
def _model_decrease_in_chunks(block, slot_offset, block_col, block_size, jacobian, residuals, x, n_chunks):
    # one chunk per thread, summed in chunk order (see sparselm.util.numerics.chunk_range)
    n, m = residuals.shape
    n_slots = block.shape[1]
    partial = np.zeros(n_chunks)
    for ch in numba.prange(n_chunks):
        start, stop = chunk_range(ch, n_chunks, n)
        acc = 0.0
        for i in range(start, stop):
            part = 0.0
            for r in range(m):
                jx = 0.0
                for j in range(n_slots):
                    b = block[i, j]
                    if b < 0:
                        continue
                    c0 = block_col[b]
                    off = slot_offset[j]
                    for c in range(block_size[b]):
                        jx += jacobian[i, r, off + c] * x[c0 + c]
                part += jx * (residuals[i, r] + 0.5 * jx)
            acc -= part
        partial[ch] = acc
    return sum_in_order(partial)


# ---------------------------------------------------------------------------------------------
# The normal matrix H = J^T J (lower triangle, CSC).

@dataclass
class BlockPattern:
    """CSC pattern of the lower triangle of a symmetric block matrix, with its target blocks.

    Targets are sorted by (column block, row block); see the module docstring for the address
    of entry (rr, cc) of target t: ``colptr[target_col[t] + cc] + target_within[t] + rr - cc``.
    The row indices (``indices``, nnz int64) are built on first use: a solver that never hands the
    matrix to a sparse factorization (dense_schur, PCG) never pays for them.
    """

    colptr: np.ndarray
    target_col: np.ndarray     # (n_targets,) first column c0
    target_row: np.ndarray     # (n_targets,) first row r0
    target_ncol: np.ndarray
    target_nrow: np.ndarray
    target_within: np.ndarray
    target_diag: np.ndarray    # (n_targets,) bool
    unique_keys: np.ndarray    # sorted keys row_block * n_blocks + col_block
    target_of_key: np.ndarray  # position in unique_keys -> target id
    n_key_blocks: int
    row_indices: Optional[np.ndarray] = None

    @property
    def nnz(self) -> int:
        return int(self.colptr[-1])

    @property
    def indices(self) -> np.ndarray:
        """Row index of every stored entry (CSC order), built once on first use."""
        if self.row_indices is None:
            self.row_indices = np.empty(self.nnz, dtype=np.int64)
            _fill_row_indices(self.colptr, self.target_col, self.target_row, self.target_ncol, self.target_nrow,
                              self.target_within, self.target_diag, self.row_indices)
        return self.row_indices

    @property
    def n_targets(self) -> int:
        return int(self.target_col.shape[0])

    @property
    def diagonal_positions(self) -> np.ndarray:
        return self.colptr[:-1]

    def targets_of(self, row_block: np.ndarray, col_block: np.ndarray) -> np.ndarray:
        """Target ids of the blocks (row_block, col_block), row_block >= col_block."""
        keys = row_block * self.n_key_blocks + col_block
        return self.target_of_key[np.searchsorted(self.unique_keys, keys)]

    def matrix(self, data: np.ndarray) -> sp.csc_matrix:
        """A scipy CSC view of the lower triangle with the given values (shares ``data``)."""
        n = self.colptr.shape[0] - 1
        mat = sp.csc_matrix((data, self.indices, self.colptr), shape=(n, n), copy=False)
        mat.has_sorted_indices = True
        return mat


def build_block_pattern(keys: np.ndarray, block_col: np.ndarray, block_size: np.ndarray) -> BlockPattern:
    """Lower-triangle CSC pattern over blocks 0..nb-1 (columns block_col, sizes block_size).

    keys: row_block * nb + col_block of the nonzero blocks (row_block >= col_block; repeats
    allowed). Every diagonal block is included whether named or not.
    """
    nb = int(block_col.shape[0])
    diag_keys = np.arange(nb, dtype=np.int64) * (nb + 1)
    unique_keys = np.unique(np.concatenate([diag_keys, keys]))  # sorted by row block then col block
    row_blk, col_blk = unique_keys // nb, unique_keys % nb
    by_col = np.lexsort((row_blk, col_blk))  # target order: by column block, then row block
    return block_pattern_from_targets(row_blk[by_col], col_blk[by_col], block_col, block_size)


def block_pattern_from_targets(row_blk: np.ndarray, col_blk: np.ndarray, block_col: np.ndarray,
                               block_size: np.ndarray) -> BlockPattern:
    """The pattern whose targets are the blocks (row_blk, col_blk), already distinct, row >= col, sorted
    by (column block, row block), every diagonal block present (the order BlockPattern uses)."""
    nb = int(block_col.shape[0])
    n_columns = int(block_size.sum())
    keys = row_blk * nb + col_blk
    by_key = np.argsort(keys, kind="stable")
    unique_keys, target_of_key = keys[by_key], by_key.astype(np.int64)
    n_targets = row_blk.size
    nrow = block_size[row_blk]
    ncol = block_size[col_blk]
    # rows of the targets before each one in its block-column
    starts = np.flatnonzero(np.r_[True, col_blk[1:] != col_blk[:-1]])
    csum = np.cumsum(nrow) - nrow
    within = csum - np.repeat(csum[starts], np.diff(np.r_[starts, n_targets]))
    col_rows = np.bincount(col_blk, weights=nrow, minlength=nb).astype(np.int64)
    col_counts = np.repeat(col_rows, block_size) - _within_block_index(block_size)
    colptr = np.zeros(n_columns + 1, dtype=np.int64)
    np.cumsum(col_counts, out=colptr[1:])
    tcol = block_col[col_blk]
    trow = block_col[row_blk]
    tdiag = row_blk == col_blk
    return BlockPattern(colptr, tcol, trow, ncol, nrow, within, tdiag, unique_keys, target_of_key, nb)


def csr_by_target(target: np.ndarray, n_targets: int):
    """(ptr, order): ``order`` sorts items by target (stable); ptr[t]:ptr[t+1] are target t's."""
    return counting_order(np.ascontiguousarray(target, dtype=np.int64), n_targets)


@numba.njit(cache=True)
def counting_order(key, n_keys):
    """(ptr, order): items stably sorted by ``key`` (ints in 0..n_keys-1) in O(n + n_keys);
    ptr[k]:ptr[k+1] index key k's items in ``order``."""
    ptr = np.zeros(n_keys + 1, np.int64)
    for x in key:
        ptr[x + 1] += 1
    for k in range(n_keys):
        ptr[k + 1] += ptr[k]
    fill = ptr[:-1].copy()
    order = np.empty(key.shape[0], np.int64)
    for i in range(key.shape[0]):
        order[fill[key[i]]] = i
        fill[key[i]] += 1
    return ptr, order


@dataclass
class NormalPattern:
    """lower(J^T J): its block pattern and, per residual group, contributions (ptr, inst, slot_a, slot_b)."""

    pattern: BlockPattern
    contributions: List[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def slot_pairs(block: np.ndarray, max_block: int):
    """All (instance, slot a, slot b) with both blocks free, below max_block, and block_a >= block_b."""
    n_slots = block.shape[1]
    inst, sa, sb = [], [], []
    for a in range(n_slots):
        for b in range(n_slots):
            ba, bb = block[:, a], block[:, b]
            ok = np.flatnonzero((ba >= 0) & (bb >= 0) & (ba < max_block) & (bb < max_block) & (ba >= bb))
            inst.append(ok)
            sa.append(np.full(ok.size, a, dtype=np.int64))
            sb.append(np.full(ok.size, b, dtype=np.int64))
    return np.concatenate(inst).astype(np.int64), np.concatenate(sa), np.concatenate(sb)


def gather_slot_pairs(layout: Layout, pattern: BlockPattern, max_block: int):
    """Per residual group, the slot-pair contributions to ``pattern`` sorted by target (ptr, inst, a, b)."""
    out = []
    for rl in layout.residuals:
        inst, sa, sb = slot_pairs(rl.block, max_block)
        tid = pattern.targets_of(rl.block[inst, sa], rl.block[inst, sb])
        ptr, order = csr_by_target(tid, pattern.n_targets)
        out.append((ptr, inst[order], sa[order], sb[order]))
    return out


def build_normal_pattern(layout: Layout) -> NormalPattern:
    """Find the nonzero blocks of lower(J^T J), build its CSC pattern and the per-target lists."""
    nb = layout.n_blocks
    keys = []
    for rl in layout.residuals:
        inst, sa, sb = slot_pairs(rl.block, nb)
        keys.append(rl.block[inst, sa] * nb + rl.block[inst, sb])
    pattern = build_block_pattern(np.concatenate(keys), layout.block_col, layout.block_size)
    return NormalPattern(pattern, gather_slot_pairs(layout, pattern, nb))


def _within_block_index(block_size: np.ndarray) -> np.ndarray:
    """For each column, its index inside its block (0..k-1)."""
    starts = np.cumsum(block_size) - block_size
    return np.arange(int(block_size.sum())) - np.repeat(starts, block_size)


@numba.njit(cache=True)
def _fill_row_indices(colptr, tcol, trow, ncol, nrow, within, tdiag, indices):
    for t in range(tcol.shape[0]):
        for cc in range(ncol[t]):
            base = colptr[tcol[t] + cc] + within[t] - cc
            start = cc if tdiag[t] else 0
            for rr in range(start, nrow[t]):
                indices[base + rr] = trow[t] + rr


@numba.njit(parallel=True, cache=True)
def accumulate_normal_matrix(ptr, inst, slot_a, slot_b, slot_offset, colptr, tcol, ncol, nrow, within, tdiag,
                             jacobian, data):
    """data[lower(H) slots] += J_a^T J_b for every contribution, gathered per target (race-free)."""
    m = jacobian.shape[1]
    for t in numba.prange(tcol.shape[0]):
        for q in range(ptr[t], ptr[t + 1]):
            i = inst[q]
            oa = slot_offset[slot_a[q]]
            ob = slot_offset[slot_b[q]]
            for cc in range(ncol[t]):
                base = colptr[tcol[t] + cc] + within[t] - cc
                start = cc if tdiag[t] else 0
                for rr in range(start, nrow[t]):
                    v = 0.0
                    for r in range(m):
                        v += jacobian[i, r, oa + rr] * jacobian[i, r, ob + cc]
                    data[base + rr] += v
