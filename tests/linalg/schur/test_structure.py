"""The Schur structure built by the linear-time kernels (issue 18) against a direct numpy
construction from its definition: cells = distinct (e-block, f-block) pairs sharing a residual,
the targets of lower(S) = every (f(a), f(b)) of two cells of one e-block plus U's own f-f blocks
plus the diagonal, the target of every cell pair in point order, and each instance's cell and U
target, and whether it is its cell's first contribution, with S's pattern built both ways (marked in a
table for few f-blocks, bucketed per column for many); the two pattern kernels and the targets' table
look-up against the binary search on random cells. Problems: BA with duplicate observations and constant blocks, plus a second residual group
touching two f-blocks and an e-block, and a group with no e-block (f-f only)."""
from __future__ import annotations

import numpy as np
import pytest

import sparselm
from sparselm import ResidualType
from sparselm.bal.camera import BAL_REPROJECTION
from sparselm.bal.synthetic import synthetic_problem
from sparselm.core.layout import build_layout, counting_order
from sparselm.linalg.schur import structure
from sparselm.linalg.schur.structure import SchurNotApplicable, build_schur_structure
from sparselm.linalg.schur.structure_kernels import (marked_s_pattern, pair_and_u_targets, pair_block,
                                                     s_pattern_columns, u_table_targets)


def _unused(*args):
    """A residual kernel the structure never calls (only the residual types' sizes matter)."""
    raise AssertionError("not evaluated")


def _problem(seed, extra_groups):
    rng = np.random.default_rng(seed)
    bp = synthetic_problem(7, 50, seed=seed).initial
    ci, pi = bp.camera_index, bp.point_index
    pick = rng.choice(ci.size, 15, replace=False)  # duplicate observations: cells with two instances
    p = sparselm.Problem()
    p.add_parameter_group("cameras", bp.cameras, constant=[2])
    p.add_parameter_group("points", bp.points, eliminate=True, constant=[5, 6])
    p.add_residual_group("obs", BAL_REPROJECTION, [("cameras", np.r_[ci, ci[pick]]), ("points", np.r_[pi, pi[pick]])],
                         np.r_[bp.observations, bp.observations[pick]])
    if extra_groups:
        n = 30
        # (camera, camera, point): two f-blocks and an e-block per instance; a residual type is
        # only needed for its sizes here (the structure never evaluates it)
        three = ResidualType("three", 2, (9, 9, 3), 0, _unused)
        c0 = rng.integers(0, 7, n)
        c1 = (c0 + rng.integers(1, 7, n)) % 7  # distinct blocks per instance
        p.add_residual_group("three", three, [("cameras", c0), ("cameras", c1), ("points", rng.integers(0, 50, n))],
                             np.zeros((n, 0)))
        pair = ResidualType("pair", 2, (9, 9), 0, _unused)
        c0 = rng.integers(0, 7, 10)
        p.add_residual_group("pair", pair, [("cameras", c0), ("cameras", (c0 + rng.integers(1, 7, 10)) % 7)],
                             np.zeros((10, 0)))
    return p


def _reference(layout):
    n_f = layout.n_reduced_blocks
    cells, u_keys = set(), set()
    for rl in layout.residuals:
        for row in rl.block:
            es = [b - n_f for b in row if b >= n_f]
            fs = [int(b) for b in row if 0 <= b < n_f]
            if es:
                cells.update((es[0], f) for f in fs)
            u_keys.update((max(a, b), min(a, b)) for a in fs for b in fs)
    cells = sorted(cells)
    by_e = {}
    for e, f in cells:
        by_e.setdefault(e, []).append(f)
    s_keys = set(u_keys) | {(f, f) for f in range(n_f)}
    for fs in by_e.values():
        s_keys.update((a, b) for a in fs for b in fs if a >= b)
    return cells, by_e, sorted(s_keys, key=lambda k: (k[1], k[0]))


@pytest.mark.parametrize("table_max_blocks", [structure.TARGET_TABLE_MAX_BLOCKS, 0], ids=["marked", "bucketed"])
@pytest.mark.parametrize("seed, extra_groups", [(1, False), (2, True), (3, True)])
def test_structure_matches_its_definition(seed, extra_groups, table_max_blocks, monkeypatch):
    monkeypatch.setattr(structure, "TARGET_TABLE_MAX_BLOCKS", table_max_blocks)
    layout = build_layout(_problem(seed, extra_groups))
    st = build_schur_structure(layout)
    n_f = layout.n_reduced_blocks
    cells, by_e, targets = _reference(layout)
    assert list(zip(st.cell_e.tolist(), st.cell_f.tolist())) == cells
    assert np.array_equal(np.diff(st.cells_of_e), [len(by_e.get(e, [])) for e in range(st.n_e_blocks)])
    pat = st.pattern
    rows = (pat.target_row // 9).tolist()  # every f-block here is a camera of size 9
    cols = (pat.target_col // 9).tolist()
    assert list(zip(rows, cols)) == targets
    target_of = {k: t for t, k in enumerate(targets)}
    q = 0
    for e in range(st.n_e_blocks):
        fs = by_e.get(e, [])
        for la in range(len(fs)):
            for lb in range(la + 1):
                assert pair_block(st.table, st.pair_target, q, fs[lb], fs[la]) == target_of[(fs[la], fs[lb])]
                q += 1
    assert q == st.n_pairs
    cell_id = {c: i for i, c in enumerate(cells)}
    seen = set()  # cells met so far in the order the linearisation pass adds into them
    for rl, gm in zip(layout.residuals, st.groups):
        for i, row in enumerate(rl.block):
            e = [b - n_f for b in row if b >= n_f]
            for j, b in enumerate(row):
                expect = cell_id[(e[0], int(b))] if (e and 0 <= b < n_f) else -1
                assert gm.cell_of[i, j] == expect
                assert gm.cell_first[i, j] == (expect >= 0 and expect not in seen)
                seen.add(expect)
            for q, (sa, sb) in enumerate(zip(gm.combo_a, gm.combo_b)):
                a, b = row[sa], row[sb]
                if 0 <= a < n_f and 0 <= b < n_f:
                    assert st.u_blocks[gm.u_target[i, q]] == target_of[(max(a, b), min(a, b))]
                else:
                    assert gm.u_target[i, q] == -1


@pytest.mark.parametrize("seed", [5, 6])
def test_marked_and_bucketed_patterns_and_their_targets_agree(seed):
    """Few f-blocks: S's pattern marked in a table, targets looked up in it; many: bucketed per column,
    targets by binary search. Random cells and U blocks: the same pattern and the same targets."""
    rng = np.random.default_rng(seed)
    n_f, n_e = 12, 40
    cells_of_e = np.r_[0, np.cumsum(rng.integers(1, 5, n_e))].astype(np.int64)
    cell_f = np.concatenate([np.sort(rng.choice(n_f, k, replace=False)) for k in np.diff(cells_of_e)]).astype(np.int64)
    n = np.diff(cells_of_e)
    pair_start = np.r_[0, np.cumsum(n * (n + 1) // 2)].astype(np.int64)
    u_lo = rng.integers(0, n_f, 20).astype(np.int64)
    u_hi = (u_lo + rng.integers(0, n_f, 20) % (n_f - u_lo)).astype(np.int64)
    u_ptr, u_order = counting_order(u_lo, n_f)
    col_ptr, rows = s_pattern_columns(n_f, cells_of_e, cell_f, pair_start, u_ptr, u_order, u_hi)
    marked_ptr, marked_rows, table = marked_s_pattern(n_f, cells_of_e, cell_f, u_hi, u_lo)
    np.testing.assert_array_equal(marked_ptr, col_ptr)
    np.testing.assert_array_equal(marked_rows, rows)
    assert col_ptr[-1] < n_f * (n_f + 1) // 2  # not every block is touched: the test sees absent ones
    for b in range(n_f):
        present = set(rows[col_ptr[b]:col_ptr[b + 1]].tolist())
        for r in range(n_f):
            assert (table[b, r] >= 0) == (r in present)
            if r in present:
                assert rows[table[b, r]] == r and col_ptr[b] <= table[b, r] < col_ptr[b + 1]
    no_table = np.zeros((0, 0), dtype=np.int64)
    searched_pairs, searched_u = pair_and_u_targets(col_ptr, rows, cells_of_e, cell_f, pair_start, u_hi, u_lo)
    unnumbered_pairs = np.zeros(0, dtype=np.int64)
    assert searched_pairs.size == pair_start[-1]
    np.testing.assert_array_equal(u_table_targets(table, u_hi, u_lo), searched_u)
    q = 0
    for p in range(n_e):
        fs = cell_f[cells_of_e[p]:cells_of_e[p + 1]]
        for la in range(fs.size):
            for lb in range(la + 1):
                searched = pair_block(no_table, searched_pairs, q, fs[lb], fs[la])
                assert searched == pair_block(table, unnumbered_pairs, q, fs[lb], fs[la]) >= 0
                q += 1
    assert (searched_u >= 0).all()


def test_two_eliminated_blocks_in_one_instance_are_named():
    p = _problem(4, False)
    p.add_residual_group("pp", ResidualType("pp", 1, (3, 3), 0, _unused),
                         [("points", np.array([0, 1])), ("points", np.array([2, 3]))], np.zeros((2, 0)))
    with pytest.raises(SchurNotApplicable, match="residual group 1, instance 0 touches 2 eliminated blocks"):
        build_schur_structure(build_layout(p))


def test_counting_order_is_a_stable_sort():
    key = np.random.default_rng(0).integers(0, 13, 500)
    ptr, order = counting_order(key, 13)
    assert np.array_equal(order, np.argsort(key, kind="stable"))
    assert np.array_equal(ptr, np.r_[0, np.cumsum(np.bincount(key, minlength=13))])
