"""Numba kernels that build the Schur structure in time linear in the observations.

Used by :func:`sparselm.linalg.schur.structure.build_schur_structure`; no Python-level work per
observation, cell or pair, and no global sort of keys:

- :func:`instance_e_blocks`: each instance's eliminated block and the slot holding it (one pass);
- :func:`group_cells`: the cells (distinct (e-block, f-block) pairs) by a counting sort of the
  (e, f) entries on e and a small insertion sort of each e-block's few f-blocks;
- :func:`sparselm.core.layout.counting_order`: a stable counting sort (cells by f-block, U's
  pairs by column block);
- :func:`s_pattern_columns`: the block rows of each block column of lower(S) (column b gets row
  f(a) for every cell a sharing an e-block with a cell of b, plus U's own blocks): the pairs'
  rows bucketed by column in two sequential sweeps over the points, then deduplicated with a
  marker array and sorted per column;
- :func:`pair_and_u_targets`: the S target of every cell pair and of every U contribution, in
  point order (parallel over points): a look-up in an n_f x n_f table of positions when there are
  few f-blocks (:func:`target_table`), else a binary search of the row among its column's sorted rows.
  The pattern of S is small next to the points, so those searches stay in cache while the points'
  cells are read and their pairs' targets written sequentially (a sweep over S's columns instead
  jumped between points at random and was ~3x slower at 10^6 observations).
"""
from __future__ import annotations

import numba
import numpy as np

from sparselm.core.layout import counting_order


@numba.njit(cache=True)
def instance_e_blocks(block, n_f):
    """(e_slot, e_local, bad): per instance the slot of its eliminated block and that block's local id
    (-1, -1 when none); ``bad`` is the first instance touching two eliminated blocks, or -1."""
    n, n_slots = block.shape
    e_slot = np.full(n, -1, np.int64)
    e_local = np.full(n, -1, np.int64)
    for i in range(n):
        for j in range(n_slots):
            b = block[i, j]
            if b >= n_f:
                if e_slot[i] >= 0:
                    return e_slot, e_local, i
                e_slot[i] = j
                e_local[i] = b - n_f
    return e_slot, e_local, -1


@numba.njit(cache=True)
def group_cells(entry_e, entry_f, n_e):
    """Cells of the (e, f) entries: (cell_e, cell_f, cells_of_e, cell_of_entry, first_of_cell), cells sorted
    by e then f; ``first_of_cell`` marks each cell's first entry (in entry order)."""
    ptr, order = counting_order(entry_e, n_e)
    sorted_f = np.empty(order.shape[0], np.int64)
    cells_of_e = np.zeros(n_e + 1, np.int64)
    for p in range(n_e):
        s, t = ptr[p], ptr[p + 1]
        n_unique = 0
        for u in range(s, t):  # insertion of f into p's sorted unique list
            f = entry_f[order[u]]
            k = n_unique
            while k > 0 and sorted_f[s + k - 1] > f:
                k -= 1
            if k > 0 and sorted_f[s + k - 1] == f:
                continue
            for m in range(n_unique, k, -1):
                sorted_f[s + m] = sorted_f[s + m - 1]
            sorted_f[s + k] = f
            n_unique += 1
        cells_of_e[p + 1] = cells_of_e[p] + n_unique
    n_cells = cells_of_e[n_e]
    cell_e = np.empty(n_cells, np.int64)
    cell_f = np.empty(n_cells, np.int64)
    cell_of_entry = np.empty(entry_e.shape[0], np.int64)
    first_of_cell = np.zeros(entry_e.shape[0], np.bool_)
    seen = np.zeros(n_cells, np.bool_)
    for p in range(n_e):
        c0, s = cells_of_e[p], ptr[p]
        nc = cells_of_e[p + 1] - c0
        for k in range(nc):
            cell_e[c0 + k] = p
            cell_f[c0 + k] = sorted_f[s + k]
        for u in range(s, ptr[p + 1]):
            f = entry_f[order[u]]
            k = 0
            while cell_f[c0 + k] != f:
                k += 1
            cell_of_entry[order[u]] = c0 + k
            if not seen[c0 + k]:  # the counting sort is stable: p's entries come in entry order
                seen[c0 + k] = True
                first_of_cell[order[u]] = True
    return cell_e, cell_f, cells_of_e, cell_of_entry, first_of_cell


@numba.njit(cache=True)
def s_pattern_columns(n_f, cells_of_e, cell_f, pair_start, u_ptr, u_order, u_hi):
    """(col_ptr, rows): the sorted block rows (>= b) of each block column b of lower(S), diagonal included.

    Column b: every f(a) with a a cell of an e-block that also has a cell on b, and every U
    block (u_hi, b) (U's contributions ``u_order[u_ptr[b]:u_ptr[b+1]]``). The points are swept in
    order twice (count, then bucket each pair's row f(la) under its column f(lb)), then each
    column's bucket is deduplicated with a marker array and sorted."""
    n_e = cells_of_e.shape[0] - 1
    ptr = np.zeros(n_f + 1, np.int64)
    for p in range(n_e):
        first = cells_of_e[p]
        n = cells_of_e[p + 1] - first
        for lb in range(n):
            ptr[cell_f[first + lb] + 1] += n - lb - 1  # pairs la > lb: rows above the diagonal
    for b in range(n_f):
        ptr[b + 1] += ptr[b] + u_ptr[b + 1] - u_ptr[b]
    fill = ptr[:-1].copy()
    bucket = np.empty(ptr[n_f], np.int64)
    for p in range(n_e):
        first = cells_of_e[p]
        n = cells_of_e[p + 1] - first
        for lb in range(n):
            b = cell_f[first + lb]
            for la in range(lb + 1, n):
                bucket[fill[b]] = cell_f[first + la]
                fill[b] += 1
    for b in range(n_f):
        for u in range(u_ptr[b], u_ptr[b + 1]):
            bucket[fill[b]] = u_hi[u_order[u]]
            fill[b] += 1
    rows = np.empty(ptr[n_f] + n_f, np.int64)
    col_ptr = np.zeros(n_f + 1, np.int64)
    mark = np.full(n_f, -1, np.int64)
    n = 0
    for b in range(n_f):
        start = n
        mark[b] = b
        rows[n] = b
        n += 1
        for x in range(ptr[b], ptr[b + 1]):
            r = bucket[x]
            if mark[r] != b:
                mark[r] = b
                rows[n] = r
                n += 1
        rows[start:n] = np.sort(rows[start:n])
        col_ptr[b + 1] = n
    return col_ptr, rows[:n].copy()


@numba.njit(cache=True)
def row_position(rows, start, end, r):
    """Position of row r among the sorted rows[start:end] (it must be there)."""
    lo, hi = start, end - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if rows[mid] < r:
            lo = mid + 1
        else:
            hi = mid
    return lo


TARGET_TABLE_MAX_BLOCKS = 1024  # up to this many f-blocks, targets come from an n_f x n_f table (<= 8 MiB)


@numba.njit(cache=True)
def target_table(col_ptr, rows):
    """(n_f, n_f) table: [b, r] = position of block row r in block column b of ``rows``, -1 if absent."""
    n_f = col_ptr.shape[0] - 1
    table = np.full((n_f, n_f), -1, np.int64)
    for b in range(n_f):
        for x in range(col_ptr[b], col_ptr[b + 1]):
            table[b, rows[x]] = x
    return table


@numba.njit(cache=True)
def block_target(table, col_ptr, rows, b, r):
    """Position of block (r, b) of lower(S) in ``rows``: a table look-up when ``table`` is given (non-empty),
    else a binary search among column b's sorted rows."""
    if table.shape[0] > 0:
        return table[b, r]
    return row_position(rows, col_ptr[b], col_ptr[b + 1], r)


@numba.njit(parallel=True, cache=True)
def pair_and_u_targets(col_ptr, rows, cells_of_e, cell_f, pair_start, u_hi, u_lo, table):
    """(pair_target, u_target): the target id (position in ``rows``) of every cell pair, in point
    order (pair (la, lb), la >= lb, of e-block p is number pair_start[p] + la (la + 1) / 2 + lb;
    its block is (f(la), f(lb)), f(la) >= f(lb) as each point's cells are sorted by f-block), and of
    every U contribution (block (u_hi, u_lo)). ``table``: :func:`target_table`, or an empty (0, 0)
    array for binary searches (many f-blocks)."""
    n_e = cells_of_e.shape[0] - 1
    pair_target = np.empty(pair_start[-1], np.int64)
    u_target = np.empty(u_hi.shape[0], np.int64)
    for p in numba.prange(n_e):
        first = cells_of_e[p]
        q = pair_start[p]
        for la in range(cells_of_e[p + 1] - first):
            r = cell_f[first + la]
            for lb in range(la + 1):
                pair_target[q] = block_target(table, col_ptr, rows, cell_f[first + lb], r)
                q += 1
    for u in numba.prange(u_hi.shape[0]):
        u_target[u] = block_target(table, col_ptr, rows, u_lo[u], u_hi[u])
    return pair_target, u_target
