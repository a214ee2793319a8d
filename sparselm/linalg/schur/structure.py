"""Structure of the Schur complement, built once per problem.

Split the free blocks into f-blocks (kept; BA: cameras) and e-blocks (eliminated; BA: points;
all from one group, of one size ke). Ordering f first, the damped normal equations are

    [ U   W ] [df]     [gf]          S  = U - W V^-1 W^T                   (reduced camera matrix)
    [ W^T V ] [de] = - [ge],   =>    S df = -gf + W V^-1 ge,    de = -V^-1 (ge + W^T df),

with V block-diagonal (one ke x ke block per e-block), U = J_f^T J_f + D_f, W = J_f^T J_e. This
needs every residual block to touch at most one e-block (true for BA).

Objects built here:
- per residual group, each instance's e-block (local id, or -1) and the slot it sits in;
- *cells*: the distinct (e-block, f-block) pairs that share a residual block, sorted by e-block
  then f-block, each holding W_{f,e} = sum J_f^T J_e (usually one instance); per residual group
  the cell of each (instance, f-slot) and whether it is the cell's first contribution;
- the block pattern of lower(S) over the f-blocks: every pair of cells of one e-block gives a
  block (f(a), f(b)), plus U's own f-f blocks; for every cell pair, in point order, the S block
  it updates, or, for few f-blocks, an n_f x n_f table of S's block positions to look pairs up in
  (see :mod:`sparselm.linalg.schur.eliminate` for how they are accumulated).

All of it is built by the linear-time kernels of :mod:`sparselm.linalg.schur.structure_kernels`
(counting sorts and marker arrays, no global sort of keys, nothing per observation in Python).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

from sparselm.core.layout import BlockPattern, Layout, block_pattern_from_targets, counting_order
from sparselm.linalg.schur.structure_kernels import (TARGET_TABLE_MAX_BLOCKS, f_slot_pairs, group_cells,
                                                     group_entries, group_maps, instance_e_blocks,
                                                     instance_touching_two_eliminated,
                                                     marked_s_pattern, number_u_blocks, pair_and_u_targets,
                                                     s_pattern_columns, u_table_targets)


@dataclass
class SchurGroupMaps:
    """Per residual group (internal instance order): where each instance's products go.

    e_local   (n,) local e-block id or -1;   cell_of (n, n_slots) cell of each f-slot or -1;
    cell_first (n, n_slots) the (instance, slot) is its cell's first contribution (groups in order,
              then instances, then slots: the order the linearisation pass adds them in);
    combo_a/b unordered pairs of slots (a <= b) that can both hold f-blocks;
    u_target  (n, n_combos) the U block (index into SchurStructure.u_blocks) receiving J_a^T J_b
              (rows: the larger block id) or -1.
    """

    e_local: np.ndarray
    cell_of: np.ndarray
    cell_first: np.ndarray
    combo_a: np.ndarray
    combo_b: np.ndarray
    u_target: np.ndarray


class SchurNotApplicable(ValueError):
    """The problem has no eliminable group, or a residual block touches two eliminated blocks."""


@dataclass
class SchurStructure:
    """Everything the Schur kernels need that does not change between iterations."""

    n_f_blocks: int
    n_e_blocks: int
    e_size: int
    e_col0: int                       # first column of the e-blocks (= number of reduced columns)
    e_slot: List[np.ndarray]          # per group: (n,) slot of the e-block or -1
    cell_e: np.ndarray                # (n_cells,) local e-block id
    cell_f: np.ndarray                # (n_cells,) f-block id
    cells_of_e: np.ndarray            # (n_e + 1,) ptr: cells of e-block p are cells_of_e[p]:cells_of_e[p+1]
    groups: List["SchurGroupMaps"]    # per residual group: maps from its instances into cells and S
    pattern: BlockPattern             # lower(S)
    u_blocks: np.ndarray              # (n_u,) the S targets that U itself touches (BA: the camera diagonal)
    pair_start: np.ndarray            # (n_e + 1,) first pair of each e-block (pairs la >= lb of its cells)
    pair_target: np.ndarray           # (n_pairs,) S target of each pair, in point order; empty with a table
    table: np.ndarray                 # (n_f, n_f) S target of block [col, row] for few f-blocks, else (0, 0)
    max_cells: int                    # most cells of one e-block


    @property
    def n_cells(self) -> int:
        return int(self.cell_e.shape[0])

    @property
    def n_pairs(self) -> int:
        return int(self.pair_start[-1])


def schur_applicable(layout: Layout) -> bool:
    """True when there are e-blocks, of one size, and no residual block touches two of them."""
    try:
        _eliminated_block_size(layout)
    except SchurNotApplicable:
        return False
    return True


def _eliminated_block_size(layout: Layout) -> int:
    """ke, the size of every e-block; raises SchurNotApplicable (naming the first offending instance)."""
    n_f = layout.n_reduced_blocks
    if n_f == layout.n_blocks:
        raise SchurNotApplicable("no parameter group is marked eliminate=True (or all its blocks are constant)")
    if n_f == 0:
        raise SchurNotApplicable("every free parameter block is in an eliminated group: nothing is left to reduce to")
    e_sizes = layout.block_size[n_f:]
    if e_sizes.min() != e_sizes.max():  # no sort of the sizes unless they differ
        raise SchurNotApplicable(f"eliminated blocks must all have one size, got sizes "
                                 f"{np.unique(e_sizes).tolist()}")
    for g, rl in enumerate(layout.residuals):
        bad = instance_touching_two_eliminated(rl.block, n_f)
        if bad >= 0:
            count = int((rl.block[bad] >= n_f).sum())
            raise SchurNotApplicable(f"residual group {g}, instance {bad} touches {count} eliminated blocks; "
                                     "Schur elimination needs at most one: use sparse_normal_cholesky")
    return int(e_sizes[0])


def build_schur_structure(layout: Layout) -> SchurStructure:
    """Build the cells, the pattern of lower(S) and the cell pairs' targets (once per problem)."""
    e_size = _eliminated_block_size(layout)
    n_f = layout.n_reduced_blocks
    slots = [instance_e_blocks(rl.block, n_f) for rl in layout.residuals]  # (e_slot, e_local) per group
    n_e = layout.n_blocks - n_f
    # (e, f) entries of every (instance, f-slot) whose instance has an e-block -> cells
    combos, entries = [], []
    for rl, (_, e_local) in zip(layout.residuals, slots):
        combos.append(f_slot_pairs(rl.block, n_f))
        entries.append(group_entries(rl.block, e_local, n_f, *combos[-1]))
    entry_e, entry_f, u_hi, u_lo = (_joined([x[k] for x in entries]) for k in range(4))
    cell_e, cell_f, cells_of_e, cell_of_entry, first_of_cell = group_cells(entry_e, entry_f, n_e, n_f)
    cells_per_e = np.diff(cells_of_e)
    pair_start = np.zeros(n_e + 1, dtype=np.int64)
    np.cumsum(cells_per_e * (cells_per_e + 1) // 2, out=pair_start[1:])
    # U's own blocks J_a^T J_b (BA: the camera diagonal) go into S's pattern too
    if n_f <= TARGET_TABLE_MAX_BLOCKS:
        col_ptr, rows, table = marked_s_pattern(n_f, cells_of_e, cell_f, u_hi, u_lo)
        pair_target, u_flat = np.zeros(0, dtype=np.int64), u_table_targets(table, u_hi, u_lo)
    else:
        u_ptr, u_order = counting_order(u_lo, n_f)
        col_ptr, rows = s_pattern_columns(n_f, cells_of_e, cell_f, pair_start, u_ptr, u_order, u_hi)
        table = np.zeros((0, 0), dtype=np.int64)
        pair_target, u_flat = pair_and_u_targets(col_ptr, rows, cells_of_e, cell_f, pair_start, u_hi, u_lo)
    cols = np.repeat(np.arange(n_f, dtype=np.int64), np.diff(col_ptr))
    pattern = block_pattern_from_targets(rows, cols, layout.block_col[:n_f], layout.block_size[:n_f])
    # U touches few S blocks (BA: only the diagonal): number them compactly, so the per-thread U
    # accumulators scale with U, not with S.
    u_blocks, u_ranked = number_u_blocks(u_flat, pattern.n_targets)
    groups, done_entries, done_u = [], 0, 0
    for rl, (_, e_local), (combo_a, combo_b), entry in zip(layout.residuals, slots, combos, entries):
        cell_of, cell_first, u_target = group_maps(rl.block, e_local, n_f, combo_a, combo_b, cell_of_entry,
                                                   first_of_cell, done_entries, u_ranked, done_u)
        done_entries += entry[0].shape[0]
        done_u += entry[2].shape[0]
        groups.append(SchurGroupMaps(e_local, cell_of, cell_first, combo_a, combo_b, u_target))
    return SchurStructure(n_f, n_e, e_size, layout.n_reduced_columns, [s for s, _ in slots], cell_e, cell_f,
                          cells_of_e, groups, pattern, u_blocks, pair_start, pair_target, table,
                          int(cells_per_e.max(initial=0)))


def _joined(arrays: List[np.ndarray]) -> np.ndarray:
    """The arrays one after the other: the array itself when there is one (no copy)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
