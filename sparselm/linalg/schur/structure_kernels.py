"""Numba kernels that build the Schur structure in time linear in the observations.

Used by :func:`sparselm.linalg.schur.structure.build_schur_structure`; no Python-level work per
observation, cell or pair, and no global sort of keys:

- :func:`instance_e_blocks`: each instance's eliminated block and the slot holding it (one pass);
- :func:`group_cells`: the cells (distinct (e-block, f-block) pairs) by a counting sort of the
  (e, f) entries on e and a small insertion sort of each e-block's few f-blocks;
- :func:`sparselm.core.layout.counting_order`: a stable counting sort (cells by f-block, U's
  pairs by column block);
- :func:`s_pattern_columns`: the block rows of each block column of lower(S), found with a marker
  array as in a symbolic sparse product (column b gets row f(a) for every cell a sharing an
  e-block with a cell of b, plus U's own blocks), then sorted per column;
- :func:`pair_and_u_targets`: the S target of every cell pair (in point order) and of every U
  contribution, by a second sweep over the columns with the marker holding target ids.
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
    """Cells of the (e, f) entries: (cell_e, cell_f, cells_of_e, cell_of_entry), cells sorted by e then f."""
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
    return cell_e, cell_f, cells_of_e, cell_of_entry


@numba.njit(cache=True)
def s_pattern_columns(n_f, cells_of_f_ptr, cells_of_f, cell_e, cells_of_e, cell_f, u_ptr, u_order, u_hi):
    """(col_ptr, rows): the sorted block rows (>= b) of each block column b of lower(S), diagonal included.

    Column b: every f(a) with a a cell of an e-block that also has a cell on b, and every U
    block (u_hi, b) (U's contributions ``u_order[u_ptr[b]:u_ptr[b+1]]``)."""
    bound = n_f + u_hi.shape[0]
    for b in range(n_f):
        for x in range(cells_of_f_ptr[b], cells_of_f_ptr[b + 1]):
            p = cell_e[cells_of_f[x]]
            bound += cells_of_e[p + 1] - cells_of_e[p]
    rows = np.empty(bound, np.int64)
    col_ptr = np.zeros(n_f + 1, np.int64)
    mark = np.full(n_f, -1, np.int64)
    n = 0
    for b in range(n_f):
        start = n
        mark[b] = b
        rows[n] = b
        n += 1
        for x in range(cells_of_f_ptr[b], cells_of_f_ptr[b + 1]):
            p = cell_e[cells_of_f[x]]
            for a in range(cells_of_e[p], cells_of_e[p + 1]):
                r = cell_f[a]
                if r > b and mark[r] != b:
                    mark[r] = b
                    rows[n] = r
                    n += 1
        for u in range(u_ptr[b], u_ptr[b + 1]):
            r = u_hi[u_order[u]]
            if mark[r] != b:
                mark[r] = b
                rows[n] = r
                n += 1
        rows[start:n] = np.sort(rows[start:n])
        col_ptr[b + 1] = n
    return col_ptr, rows[:n].copy()


@numba.njit(cache=True)
def pair_and_u_targets(col_ptr, rows, cells_of_f_ptr, cells_of_f, cell_e, cells_of_e, cell_f, pair_start,
                       u_ptr, u_order, u_hi):
    """(pair_target, u_target): the target id (position in ``rows``) of every cell pair, in point
    order (pair (la, lb), la >= lb, of e-block p is number pair_start[p] + la (la + 1) / 2 + lb),
    and of every U contribution (in the order of u_hi)."""
    n_f = col_ptr.shape[0] - 1
    tid = np.full(n_f, -1, np.int64)
    pair_target = np.empty(pair_start[-1], np.int64)
    u_target = np.empty(u_hi.shape[0], np.int64)
    for b in range(n_f):
        for t in range(col_ptr[b], col_ptr[b + 1]):
            tid[rows[t]] = t
        for x in range(cells_of_f_ptr[b], cells_of_f_ptr[b + 1]):
            cb = cells_of_f[x]
            p = cell_e[cb]
            first = cells_of_e[p]
            lb = cb - first
            for la in range(lb, cells_of_e[p + 1] - first):
                pair_target[pair_start[p] + la * (la + 1) // 2 + lb] = tid[cell_f[first + la]]
        for u in range(u_ptr[b], u_ptr[b + 1]):
            u_target[u_order[u]] = tid[u_hi[u_order[u]]]
    return pair_target, u_target
