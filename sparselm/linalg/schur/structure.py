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
  the cell of each (instance, f-slot), and the cells grouped by f-block;
- the block pattern of lower(S) over the f-blocks: every pair of cells of one e-block gives a
  block (f(a), f(b)), plus U's own f-f blocks; for every cell pair, in point order, the S block
  it updates (see :mod:`sparselm.linalg.schur.eliminate` for how they are accumulated).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numba
import numpy as np

from sparselm.core.layout import BlockPattern, Layout, build_block_pattern, csr_by_target, slot_pairs


@dataclass
class SchurGroupMaps:
    """Per residual group (internal instance order): where each instance's products go.

    e_local   (n,) local e-block id or -1;   cell_of (n, n_slots) cell of each f-slot or -1;
    combo_a/b unordered pairs of slots (a <= b) that can both hold f-blocks;
    u_target  (n, n_combos) the U block (index into SchurStructure.u_blocks) receiving J_a^T J_b
              (rows: the larger block id) or -1.
    """

    e_local: np.ndarray
    cell_of: np.ndarray
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
    cells_of_f_ptr: np.ndarray        # (n_f + 1,)
    cells_of_f: np.ndarray            # cell ids grouped by f-block
    pattern: BlockPattern             # lower(S)
    u_blocks: np.ndarray              # (n_u,) the S targets that U itself touches (BA: the camera diagonal)
    pair_start: np.ndarray            # (n_e + 1,) first pair of each e-block (pairs la >= lb of its cells)
    pair_target: np.ndarray           # (n_pairs,) S target of each pair, in point order
    max_cells: int                    # most cells of one e-block


    @property
    def n_cells(self) -> int:
        return int(self.cell_e.shape[0])

    @property
    def n_pairs(self) -> int:
        return int(self.pair_target.shape[0])


def schur_applicable(layout: Layout) -> bool:
    """True when there are e-blocks, of one size, and no residual block touches two of them."""
    try:
        _e_slots(layout)
    except SchurNotApplicable:
        return False
    return True


def _e_slots(layout: Layout):
    n_f = layout.n_reduced_blocks
    if n_f == layout.n_blocks:
        raise SchurNotApplicable("no parameter group is marked eliminate=True (or all its blocks are constant)")
    if n_f == 0:
        raise SchurNotApplicable("every free parameter block is in an eliminated group: nothing is left to reduce to")
    e_sizes = np.unique(layout.block_size[n_f:])
    if e_sizes.size != 1:
        raise SchurNotApplicable(f"eliminated blocks must all have one size, got sizes {e_sizes.tolist()}")
    out = []
    for g, rl in enumerate(layout.residuals):
        is_e = rl.block >= n_f
        count = is_e.sum(axis=1)
        if (count > 1).any():
            i = int(np.flatnonzero(count > 1)[0])
            raise SchurNotApplicable(f"residual group {g}, instance {i} touches {int(count[i])} eliminated blocks; "
                                     "Schur elimination needs at most one: use sparse_normal_cholesky")
        slot = np.where(count == 1, np.argmax(is_e, axis=1), -1).astype(np.int64)
        out.append(slot)
    return out, int(e_sizes[0])


@numba.njit(cache=True)
def _cell_pairs(cells_of_e):
    n_pairs = 0
    for p in range(cells_of_e.shape[0] - 1):
        c = cells_of_e[p + 1] - cells_of_e[p]
        n_pairs += c * (c + 1) // 2
    a = np.empty(n_pairs, np.int64)
    b = np.empty(n_pairs, np.int64)
    q = 0
    for p in range(cells_of_e.shape[0] - 1):
        s = cells_of_e[p]
        for i in range(cells_of_e[p + 1] - s):
            for j in range(i + 1):
                a[q] = s + i
                b[q] = s + j
                q += 1
    return a, b


def build_schur_structure(layout: Layout) -> SchurStructure:
    """Build the cells, the pattern of lower(S) and the cell pairs' targets (once per problem)."""
    e_slot, e_size = _e_slots(layout)
    n_f = layout.n_reduced_blocks
    n_e = layout.n_blocks - n_f
    # cells: distinct (e, f) pairs
    keys, e_locals = [], []
    for rl, es in zip(layout.residuals, e_slot):
        e_local = np.where(es >= 0, rl.block[np.arange(es.size), np.maximum(es, 0)] - n_f, -1).astype(np.int64)
        e_locals.append(e_local)
        f_ok = (rl.block >= 0) & (rl.block < n_f) & (e_local >= 0)[:, None]
        keys.append(np.where(f_ok, e_local[:, None] * n_f + rl.block, -1))
    cell_keys = np.unique(np.concatenate([k[k >= 0] for k in keys]))
    cell_e, cell_f = cell_keys // n_f, cell_keys % n_f
    cells_of_e = np.zeros(n_e + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell_e, minlength=n_e), out=cells_of_e[1:])
    cells_of_f_ptr, cells_of_f = csr_by_target(cell_f, n_f)
    # S pattern: cell pairs and U's f-f blocks
    pair_a, pair_b = _cell_pairs(cells_of_e)
    u_keys = []
    for rl in layout.residuals:
        inst, sa, sb = slot_pairs(rl.block, n_f)
        u_keys.append(rl.block[inst, sa] * n_f + rl.block[inst, sb])
    f_col = layout.block_col[:n_f]
    f_size = layout.block_size[:n_f]
    pattern = build_block_pattern(np.concatenate([cell_f[pair_a] * n_f + cell_f[pair_b]] + u_keys), f_col, f_size)
    groups = [_group_maps(rl, e_local, k, cell_keys, pattern, n_f)
              for rl, e_local, k in zip(layout.residuals, e_locals, keys)]
    # U touches few S blocks (BA: only the diagonal): number them compactly, so the per-thread U
    # accumulators scale with U, not with S.
    u_blocks = np.unique(np.concatenate([gm.u_target[gm.u_target >= 0] for gm in groups]))
    for gm in groups:
        ok = gm.u_target >= 0
        gm.u_target[ok] = np.searchsorted(u_blocks, gm.u_target[ok])
    pair_target = pattern.targets_of(cell_f[pair_a], cell_f[pair_b])
    cells_per_e = np.diff(cells_of_e)
    pair_start = np.zeros(n_e + 1, dtype=np.int64)
    np.cumsum(cells_per_e * (cells_per_e + 1) // 2, out=pair_start[1:])
    return SchurStructure(n_f, n_e, e_size, layout.n_reduced_columns, e_slot, cell_e, cell_f, cells_of_e,
                          groups, cells_of_f_ptr, cells_of_f.astype(np.int64), pattern, u_blocks.astype(np.int64),
                          pair_start, pair_target.astype(np.int64), int(cells_per_e.max(initial=0)))



def _group_maps(rl, e_local, keys, cell_keys, pattern: BlockPattern, n_f: int) -> SchurGroupMaps:
    """Cells and S targets of one residual group's instances (see SchurGroupMaps)."""
    n, n_slots = rl.block.shape
    cell_of = np.where(keys >= 0, np.searchsorted(cell_keys, np.maximum(keys, 0)), -1).astype(np.int64)
    is_f = (rl.block >= 0) & (rl.block < n_f)
    combos = [(a, b) for a in range(n_slots) for b in range(a, n_slots) if is_f[:, a].any() and is_f[:, b].any()]
    combo_a = np.array([c[0] for c in combos], dtype=np.int64)
    combo_b = np.array([c[1] for c in combos], dtype=np.int64)
    u_target = np.full((n, len(combos)), -1, dtype=np.int64)
    for q, (a, b) in enumerate(combos):
        ok = np.flatnonzero(is_f[:, a] & is_f[:, b])
        hi = np.maximum(rl.block[ok, a], rl.block[ok, b])
        lo = np.minimum(rl.block[ok, a], rl.block[ok, b])
        u_target[ok, q] = pattern.targets_of(hi, lo)
    return SchurGroupMaps(e_local, np.ascontiguousarray(cell_of), combo_a, combo_b, u_target)
