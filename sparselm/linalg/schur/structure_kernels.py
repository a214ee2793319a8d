"""Numba kernels that build the Schur structure in time linear in the observations.

Used by :func:`sparselm.linalg.schur.structure.build_schur_structure`; no Python-level work per
observation, cell or pair, and no global sort of keys:

- :func:`instance_touching_two_eliminated`, :func:`instance_e_blocks`: whether Schur elimination
  applies, then each instance's eliminated block and the slot holding it (one pass each);
- :func:`f_slot_pairs`, :func:`group_entries`, :func:`group_maps`: each group's (e, f) entries and U
  contributions in instance order, and afterwards its maps from instances to cells and U targets;
- :func:`group_cells`: the cells (distinct (e-block, f-block) pairs) by a counting sort of the
  (e, f) entries on e, a stamp array that finds each e-block's distinct f-blocks and a small sort of
  those (:func:`sort_small`);
- :func:`sparselm.core.layout.counting_order`: a stable counting sort (cells by f-block, U's
  pairs by column block);
- :func:`s_pattern_columns`: the block rows of each block column of lower(S) (column b gets row
  f(a) for every cell a sharing an e-block with a cell of b, plus U's own blocks): the pairs'
  rows bucketed by column in two sequential sweeps over the points, then deduplicated with a
  marker array and sorted per column;
- :func:`marked_s_pattern`: the same pattern and its table of positions for few f-blocks (up to
  ``TARGET_TABLE_MAX_BLOCKS``), by marking every pair's block in the table in one sweep (that stops
  once every block is marked);
- :func:`pair_and_u_targets`: for many f-blocks, the S target of every cell pair in point order
  and of every U contribution (parallel over points), by a binary search of the row among its
  column's sorted rows. The pattern of S is small next to the points, so those searches stay in
  cache while the points' cells are read and their pairs' targets written sequentially (a sweep
  over S's columns instead jumped between points at random and was ~3x slower at 10^6
  observations). With few f-blocks :func:`u_table_targets` looks the U contributions up in
  :func:`marked_s_pattern`'s table of positions and :func:`pair_block` the pairs, and no per-pair
  array is built;
- :func:`number_u_blocks`: U's own S blocks numbered compactly, and each U contribution's number.
"""
from __future__ import annotations

import numba
import numpy as np

from sparselm.core.layout import counting_order


@numba.njit(cache=True)
def instance_touching_two_eliminated(block, n_f):
    """The first instance whose blocks include two eliminated ones (ids >= n_f), or -1 (no allocation:
    the ``auto`` choice asks this before any structure is built)."""
    n, n_slots = block.shape
    for i in range(n):
        seen = False
        for j in range(n_slots):
            if block[i, j] >= n_f:
                if seen:
                    return i
                seen = True
    return -1


@numba.njit(cache=True)
def instance_e_blocks(block, n_f):
    """(e_slot, e_local): per instance the slot of its eliminated block and that block's local id (-1, -1
    when none; at most one per instance, see :func:`instance_touching_two_eliminated`)."""
    n, n_slots = block.shape
    e_slot = np.full(n, -1, np.int64)
    e_local = np.full(n, -1, np.int64)
    for i in range(n):
        for j in range(n_slots):
            b = block[i, j]
            if b >= n_f:
                e_slot[i] = j
                e_local[i] = b - n_f
    return e_slot, e_local


@numba.njit(cache=True)
def f_slot_pairs(block, n_f):
    """(combo_a, combo_b): the unordered slot pairs (a <= b) that can both hold f-blocks (block ids < n_f)."""
    n, n_slots = block.shape
    has_f = np.zeros(n_slots, np.bool_)
    for i in range(n):
        for j in range(n_slots):
            if 0 <= block[i, j] < n_f:
                has_f[j] = True
    n_combos = 0
    for a in range(n_slots):
        for b in range(a, n_slots):
            if has_f[a] and has_f[b]:
                n_combos += 1
    combo_a = np.empty(n_combos, np.int64)
    combo_b = np.empty(n_combos, np.int64)
    q = 0
    for a in range(n_slots):
        for b in range(a, n_slots):
            if has_f[a] and has_f[b]:
                combo_a[q], combo_b[q] = a, b
                q += 1
    return combo_a, combo_b


@numba.njit(cache=True)
def group_entries(block, e_local, n_f, combo_a, combo_b):
    """One residual group's entries, instance by instance (slots, then slot pairs, in order):
    (entry_e, entry_f) of every f-slot of an instance that has an e-block, and (u_hi, u_lo), the larger
    and smaller block of every slot pair (combo_a, combo_b) whose slots both hold f-blocks."""
    n, n_slots = block.shape
    entry_e = np.empty(n * n_slots, np.int64)  # at most one entry per (instance, slot): filled in one pass
    entry_f = np.empty(n * n_slots, np.int64)
    u_hi = np.empty(n * combo_a.shape[0], np.int64)
    u_lo = np.empty(n * combo_a.shape[0], np.int64)
    k = ku = 0
    for i in range(n):
        for j in range(n_slots):
            if e_local[i] >= 0 and 0 <= block[i, j] < n_f:
                entry_e[k] = e_local[i]
                entry_f[k] = block[i, j]
                k += 1
        for q in range(combo_a.shape[0]):
            a, b = block[i, combo_a[q]], block[i, combo_b[q]]
            if 0 <= a < n_f and 0 <= b < n_f:
                u_hi[ku], u_lo[ku] = max(a, b), min(a, b)
                ku += 1
    return entry_e[:k], entry_f[:k], u_hi[:ku], u_lo[:ku]


@numba.njit(cache=True)
def group_maps(block, e_local, n_f, combo_a, combo_b, cell_of_entry, first_of_cell, entry0, u_ranked, u0):
    """(cell_of, cell_first, u_target) of one residual group (see SchurGroupMaps), from the per-entry
    results of all groups; this group's entries start at entry0 and its U contributions at u0, in
    :func:`group_entries`' order; ``u_ranked``: each U contribution's compact U block
    (:func:`number_u_blocks`). Every element is written once (no fill beforehand)."""
    n, n_slots = block.shape
    cell_of = np.empty((n, n_slots), np.int64)
    cell_first = np.empty((n, n_slots), np.bool_)
    u_target = np.empty((n, combo_a.shape[0]), np.int64)
    k, ku = entry0, u0
    for i in range(n):
        for j in range(n_slots):
            if e_local[i] >= 0 and 0 <= block[i, j] < n_f:
                cell_of[i, j] = cell_of_entry[k]
                cell_first[i, j] = first_of_cell[k]
                k += 1
            else:
                cell_of[i, j] = -1
                cell_first[i, j] = False
        for q in range(combo_a.shape[0]):
            if 0 <= block[i, combo_a[q]] < n_f and 0 <= block[i, combo_b[q]] < n_f:
                u_target[i, q] = u_ranked[ku]
                ku += 1
            else:
                u_target[i, q] = -1
    return cell_of, cell_first, u_target


SMALL_SORT_MAX = 32  # up to this many cells of one e-block are sorted by insertion, more by np.sort


@numba.njit(cache=True)
def sort_small(values, start, end):
    """Sort values[start:end] in place: insertion sort for up to SMALL_SORT_MAX items, else np.sort."""
    if end - start > SMALL_SORT_MAX:
        values[start:end] = np.sort(values[start:end])
        return
    for u in range(start + 1, end):
        v = values[u]
        k = u
        while k > start and values[k - 1] > v:
            values[k] = values[k - 1]
            k -= 1
        values[k] = v


@numba.njit(cache=True)
def group_cells(entry_e, entry_f, n_e, n_f):
    """Cells of the (e, f) entries (f-blocks < n_f): (cell_e, cell_f, cells_of_e, cell_of_entry,
    first_of_cell), cells sorted by e then f; ``first_of_cell`` marks each cell's first entry (in entry
    order).

    The entries are counting-sorted by e-block (stable: each e-block's entries stay in entry order); per
    e-block a stamp array over the f-blocks finds its distinct f-blocks in one sweep (the first entry of
    each is its cell's first), they are sorted (few: :func:`sort_small`), and each entry finds its cell
    through a position array over the f-blocks: O(1) per entry, no scan of the e-block's cells."""
    ptr, order = counting_order(entry_e, n_e)
    n_entries = entry_e.shape[0]
    unique_f = np.empty(n_entries, np.int64)  # e-block p's distinct f-blocks at unique_f[ptr[p]:]
    cell_of_entry = np.empty(n_entries, np.int64)
    first_of_cell = np.zeros(n_entries, np.bool_)
    cells_of_e = np.zeros(n_e + 1, np.int64)
    stamp = np.full(n_f, -1, np.int64)  # stamp[f] == p: f already seen in e-block p
    local = np.empty(n_f, np.int64)  # local[f]: f's cell among e-block p's, once they are sorted
    for p in range(n_e):
        s, t = ptr[p], ptr[p + 1]
        n_unique = 0
        for u in range(s, t):
            f = entry_f[order[u]]
            if stamp[f] != p:
                stamp[f] = p
                unique_f[s + n_unique] = f
                n_unique += 1
                first_of_cell[order[u]] = True
        sort_small(unique_f, s, s + n_unique)
        c0 = cells_of_e[p]
        for k in range(n_unique):
            local[unique_f[s + k]] = c0 + k
        for u in range(s, t):
            cell_of_entry[order[u]] = local[entry_f[order[u]]]
        cells_of_e[p + 1] = c0 + n_unique
    n_cells = cells_of_e[n_e]
    cell_e = np.empty(n_cells, np.int64)
    cell_f = np.empty(n_cells, np.int64)
    for p in range(n_e):
        c0, s = cells_of_e[p], ptr[p]
        for k in range(cells_of_e[p + 1] - c0):
            cell_e[c0 + k] = p
            cell_f[c0 + k] = unique_f[s + k]
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
def marked_s_pattern(n_f, cells_of_e, cell_f, u_hi, u_lo):
    """(col_ptr, rows, table) of lower(S) for few f-blocks, in one sweep over the points and no bucket.

    The same (col_ptr, rows) as :func:`s_pattern_columns`, and ``table``, n_f x n_f: [b, r] = position
    of block row r in block column b of ``rows``, -1 if absent. Every block a cell pair or a U
    contribution touches is marked in the table, then the marks are numbered column by column, rows
    ascending. The sweep stops once every block is marked (S dense: every pair of f-blocks shares an
    e-block, as in small SfM models, where the first points usually mark them all)."""
    n_e = cells_of_e.shape[0] - 1
    table = np.full((n_f, n_f), -1, np.int64)
    for b in range(n_f):
        table[b, b] = 0
    unmarked = n_f * (n_f - 1) // 2  # blocks below the diagonal not marked yet: none left, nothing to do
    for p in range(n_e):
        if unmarked == 0:
            break
        first = cells_of_e[p]
        n = cells_of_e[p + 1] - first
        for lb in range(n):
            b = cell_f[first + lb]
            for la in range(lb + 1, n):
                r = cell_f[first + la]  # cells are sorted by f-block: row >= column
                if table[b, r] < 0:
                    table[b, r] = 0
                    unmarked -= 1
    for u in range(u_hi.shape[0] if unmarked > 0 else 0):
        if table[u_lo[u], u_hi[u]] < 0:
            table[u_lo[u], u_hi[u]] = 0
            unmarked -= 1
    col_ptr = np.zeros(n_f + 1, np.int64)
    for b in range(n_f):
        n = 0
        for r in range(b, n_f):
            if table[b, r] == 0:
                n += 1
        col_ptr[b + 1] = col_ptr[b] + n
    rows = np.empty(col_ptr[n_f], np.int64)
    x = 0
    for b in range(n_f):
        for r in range(b, n_f):
            if table[b, r] == 0:
                table[b, r] = x
                rows[x] = r
                x += 1
    return col_ptr, rows, table


@numba.njit(inline="always")
def pair_block(table, pair_target, q, f_lo, f_hi):
    """The S target of cell pair number q, whose block is (f_hi, f_lo), f_hi >= f_lo: a look-up in
    :func:`marked_s_pattern`'s table when there is one (then ``pair_target`` is empty), else pair_target[q]."""
    if table.shape[0] > 0:
        return table[f_lo, f_hi]
    return pair_target[q]


@numba.njit(parallel=True, cache=True)
def pair_and_u_targets(col_ptr, rows, cells_of_e, cell_f, pair_start, u_hi, u_lo):
    """(pair_target, u_target) for many f-blocks (no table): the target id (position in ``rows``) of
    every cell pair, in point order (pair (la, lb), la >= lb, of e-block p is number
    pair_start[p] + la (la + 1) / 2 + lb; its block is (f(la), f(lb)), f(la) >= f(lb) as each point's
    cells are sorted by f-block), and of every U contribution (block (u_hi, u_lo)), each by a binary
    search among its column's rows. With few f-blocks :func:`u_table_targets` looks up the U
    contributions and :func:`pair_block` the pairs instead (no per-pair array)."""
    n_e = cells_of_e.shape[0] - 1
    pair_target = np.empty(pair_start[-1], np.int64)
    u_target = np.empty(u_hi.shape[0], np.int64)
    for p in numba.prange(n_e):
        first = cells_of_e[p]
        q = pair_start[p]
        for la in range(cells_of_e[p + 1] - first):
            r = cell_f[first + la]
            for lb in range(la + 1):
                pair_target[q] = row_position(rows, col_ptr[cell_f[first + lb]], col_ptr[cell_f[first + lb] + 1], r)
                q += 1
    for u in numba.prange(u_hi.shape[0]):
        u_target[u] = row_position(rows, col_ptr[u_lo[u]], col_ptr[u_lo[u] + 1], u_hi[u])
    return pair_target, u_target


@numba.njit(cache=True)
def u_table_targets(table, u_hi, u_lo):
    """The target id of every U contribution (block (u_hi, u_lo)) from :func:`marked_s_pattern`'s table:
    one serial look-up each (a parallel region would cost more to launch than the look-ups)."""
    u_target = np.empty(u_hi.shape[0], np.int64)
    for u in range(u_hi.shape[0]):
        u_target[u] = table[u_lo[u], u_hi[u]]
    return u_target


@numba.njit(cache=True)
def number_u_blocks(u_flat, n_targets):
    """(u_blocks, u_ranked): the S targets U touches (sorted; BA: the camera diagonal), and for every U
    contribution (target ``u_flat[u]``) the position of its target in u_blocks, so that per-thread U
    accumulators scale with U's few blocks, not with S. ``u_ranked`` is ``u_flat`` itself, overwritten
    (a scratch array the size of U's contributions less)."""
    rank = np.zeros(n_targets, np.int64)
    for u in range(u_flat.shape[0]):
        rank[u_flat[u]] = 1
    n_used = 0
    for t in range(n_targets):
        if rank[t]:
            rank[t] = n_used
            n_used += 1
        else:
            rank[t] = -1
    u_blocks = np.empty(n_used, np.int64)
    for t in range(n_targets):
        if rank[t] >= 0:
            u_blocks[rank[t]] = t
    for u in range(u_flat.shape[0]):
        u_flat[u] = rank[u_flat[u]]
    return u_blocks, u_flat
