"""The structure kernels that replaced scans and numpy chains, against plain references on random
inputs: group_cells (stamp arrays) against a dictionary of the distinct (e, f) pairs, sort_small on both
sides of its insertion-sort limit, number_u_blocks against np.unique, and marked_s_pattern's early stop
(a dense S) against the same pattern built with no stop."""
from __future__ import annotations

import numpy as np
import pytest

from sparselm.core.layout import counting_order
from sparselm.linalg.schur.structure_kernels import (SMALL_SORT_MAX, group_cells, marked_s_pattern, number_u_blocks,
                                                     s_pattern_columns, sort_small)


def _reference_cells(entry_e, entry_f):
    """Cells sorted by (e, f), each entry's cell and whether it is its cell's first entry, by a dict."""
    keys = sorted(set(zip(entry_e.tolist(), entry_f.tolist())))
    cell = {key: c for c, key in enumerate(keys)}
    cell_of_entry = np.array([cell[key] for key in zip(entry_e.tolist(), entry_f.tolist())], dtype=np.int64)
    first = np.zeros(entry_e.size, dtype=bool)
    first[np.unique(cell_of_entry, return_index=True)[1]] = True
    return np.array([k[0] for k in keys], np.int64), np.array([k[1] for k in keys], np.int64), cell_of_entry, first


@pytest.mark.parametrize("seed, n_e, n_f, n_entries", [(0, 30, 5, 200), (1, 50, 200, 3000), (2, 7, 90, 900),
                                                       (3, 40, 3, 0)])
def test_group_cells_matches_a_plain_reference(seed, n_e, n_f, n_entries):
    """Random entries, some e-blocks with none, some with more than SMALL_SORT_MAX distinct f-blocks."""
    rng = np.random.default_rng(seed)
    entry_e = rng.integers(0, n_e, n_entries).astype(np.int64)
    entry_f = rng.integers(0, n_f, n_entries).astype(np.int64)
    cell_e, cell_f, cells_of_e, cell_of_entry, first_of_cell = group_cells(entry_e, entry_f, n_e, n_f)
    ref_e, ref_f, ref_cell, ref_first = _reference_cells(entry_e, entry_f)
    np.testing.assert_array_equal(cell_e, ref_e)
    np.testing.assert_array_equal(cell_f, ref_f)
    np.testing.assert_array_equal(cells_of_e, np.searchsorted(ref_e, np.arange(n_e + 1)))
    np.testing.assert_array_equal(cell_of_entry, ref_cell)
    np.testing.assert_array_equal(first_of_cell, ref_first)
    if n_f > SMALL_SORT_MAX:
        assert np.diff(cells_of_e).max() > SMALL_SORT_MAX  # the np.sort branch ran


@pytest.mark.parametrize("n", [0, 1, 5, SMALL_SORT_MAX, SMALL_SORT_MAX + 1, 200])
def test_sort_small_sorts_only_its_range(n):
    rng = np.random.default_rng(n)
    values = rng.integers(0, 50, n + 6).astype(np.int64)
    expected = values.copy()
    expected[3:3 + n] = np.sort(expected[3:3 + n])
    sort_small(values, 3, 3 + n)
    np.testing.assert_array_equal(values, expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_number_u_blocks_matches_unique(seed):
    rng = np.random.default_rng(seed)
    u_flat = rng.integers(0, 40, 300).astype(np.int64)
    targets = u_flat.copy()
    u_blocks, u_ranked = number_u_blocks(u_flat, 60)
    np.testing.assert_array_equal(u_blocks, np.unique(targets))
    np.testing.assert_array_equal(u_blocks[u_ranked], targets)
    assert u_ranked is u_flat  # renumbered in place
    empty_blocks, empty_ranked = number_u_blocks(np.zeros(0, np.int64), 60)
    assert empty_blocks.size == 0 and empty_ranked.size == 0


@pytest.mark.parametrize("first_point_sees_all", [True, False])
def test_marked_s_pattern_stops_once_s_is_dense_with_the_same_result(first_point_sees_all):
    """A dense S (every f-block pair shares a point): the sweep may stop early, marking the same
    pattern and numbering as the bucketed build, U's blocks included."""
    rng = np.random.default_rng(7)
    n_f, n_e = 9, 30
    sets = [np.sort(rng.choice(n_f, rng.integers(1, 5), replace=False)) for _ in range(n_e)]
    if first_point_sees_all:
        sets[0] = np.arange(n_f)  # marks every block at once
    else:
        sets[-1] = np.arange(n_f)  # the last point completes it
    cells_of_e = np.r_[0, np.cumsum([len(x) for x in sets])].astype(np.int64)
    cell_f = np.concatenate(sets).astype(np.int64)
    n = np.diff(cells_of_e)
    pair_start = np.r_[0, np.cumsum(n * (n + 1) // 2)].astype(np.int64)
    u_lo = rng.integers(0, n_f, 15).astype(np.int64)
    u_hi = np.maximum(u_lo, rng.integers(0, n_f, 15)).astype(np.int64)
    u_ptr, u_order = counting_order(u_lo, n_f)
    col_ptr, rows = s_pattern_columns(n_f, cells_of_e, cell_f, pair_start, u_ptr, u_order, u_hi)
    marked_ptr, marked_rows, table = marked_s_pattern(n_f, cells_of_e, cell_f, u_hi, u_lo)
    assert col_ptr[-1] == n_f * (n_f + 1) // 2  # dense
    np.testing.assert_array_equal(marked_ptr, col_ptr)
    np.testing.assert_array_equal(marked_rows, rows)
    for b in range(n_f):
        for r in range(b, n_f):
            assert rows[table[b, r]] == r and col_ptr[b] <= table[b, r] < col_ptr[b + 1]
