"""sparselm.core.layout: column layout, block-use lists, the CSC pattern of lower(J^T J) and the
numba gathers (normal matrix, gradient, column norms, J x), all against a dense J built here from
random Jacobian values (no residual kernel involved)."""
from __future__ import annotations

import numpy as np
import pytest

import sparselm
from sparselm import ResidualType
from sparselm.core.layout import (accumulate_gradient_and_column_norms, accumulate_normal_matrix, build_layout,
                                build_normal_pattern, model_decrease)


def _noop(*args):
    raise AssertionError("structure code must not call residual kernels")


def _mixed_problem(rng):
    """Groups a (4 x 3, block 1 constant, coordinate 2 constant), c (3 x 1), b (5 x 2, eliminated);
    residual groups over (a, b), (b, b) with some self-pairs, and (c, a, b)."""
    p = sparselm.Problem()
    p.add_parameter_group("a", rng.normal(size=(4, 3)), constant=[1], constant_coordinates=[2])
    p.add_parameter_group("b", rng.normal(size=(5, 2)), eliminate=True)
    p.add_parameter_group("c", rng.normal(size=(3, 1)))
    t_ab = ResidualType("ab", 2, (3, 2), 0, _noop)
    t_bb = ResidualType("bb", 1, (2, 2), 0, _noop)
    t_cab = ResidualType("cab", 3, (1, 3, 2), 0, _noop)
    p.add_residual_group("g_ab", t_ab, [("a", [0, 1, 2, 3, 0, 2]), ("b", [0, 1, 2, 3, 4, 4])])
    p.add_residual_group("g_bb", t_bb, [("b", [0, 1, 3, 2, 4]), ("b", [1, 2, 0, 4, 3])])
    p.add_residual_group("g_cab", t_cab, [("c", [0, 1, 2, 2]), ("a", [3, 1, 0, 2]), ("b", [2, 2, 0, 4])])
    return p


# column of coordinate 0 of each free block, as the layout rules say: non-eliminated groups first
# (a then c, in insertion order), constant blocks skipped, then the eliminated group b.
EXPECTED_COLS = {"a": {0: 0, 2: 3, 3: 6}, "c": {0: 9, 1: 10, 2: 11}, "b": {i: 12 + 2 * i for i in range(5)}}


def _dense_jacobian(problem, layout, jacobians):
    """Rows in the layout's internal instance order (rl.index), as the Jacobian arrays are."""
    rows = []
    for rg, rl, jac in zip(problem.residual_groups, layout.residuals, jacobians):
        n, m, _ = jac.shape
        dense = np.zeros((n * m, layout.n_columns))
        for i in range(n):
            for j, g in enumerate(rg.groups):
                blk = int(rl.index[i, j])
                if blk not in EXPECTED_COLS[g]:
                    continue
                c0 = EXPECTED_COLS[g][blk]
                k = rg.residual_type.block_sizes[j]
                off = int(rl.slot_offset[j])
                dense[i * m:(i + 1) * m, c0:c0 + k] += jac[i, :, off:off + k]
        rows.append(dense)
    return np.vstack(rows)


@pytest.fixture
def setup(rng):
    problem = _mixed_problem(rng)
    layout = build_layout(problem)
    jacobians = [rng.normal(size=(rg.n_instances, rg.residual_size, rl.jacobian_width))
                 for rg, rl in zip(problem.residual_groups, layout.residuals)]
    residuals = [rng.normal(size=(rg.n_instances, rg.residual_size)) for rg in problem.residual_groups]
    return problem, layout, jacobians, residuals, _dense_jacobian(problem, layout, jacobians)


def test_layout_columns(setup):
    problem, layout, *_ = setup
    assert layout.group_order == ["a", "c", "b"]
    assert layout.n_columns == 22 and layout.n_blocks == 11
    assert layout.n_reduced_blocks == 6 and layout.n_reduced_columns == 12
    np.testing.assert_array_equal(layout.block_id["a"], [0, -1, 1, 2])
    np.testing.assert_array_equal(layout.block_id["c"], [3, 4, 5])
    np.testing.assert_array_equal(layout.block_id["b"], [6, 7, 8, 9, 10])
    for g, cols in EXPECTED_COLS.items():
        for blk, c0 in cols.items():
            assert layout.block_col[layout.block_id[g][blk]] == c0
    np.testing.assert_array_equal(layout.block_size, [3, 3, 3, 1, 1, 1, 2, 2, 2, 2, 2])
    expect_const = np.zeros(22, bool)
    expect_const[[2, 5, 8]] = True  # coordinate 2 of each free block of a
    np.testing.assert_array_equal(layout.constant_columns, expect_const)
    widths = [rl.jacobian_width for rl in layout.residuals]
    assert widths == [5, 4, 6]
    np.testing.assert_array_equal(layout.residuals[2].slot_offset, [0, 1, 4])


def test_block_use_lists(setup):
    problem, layout, *_ = setup
    for rg, rl in zip(problem.residual_groups, layout.residuals):
        seen = set()
        for b in range(layout.n_blocks):
            for u in range(rl.use_ptr[b], rl.use_ptr[b + 1]):
                i, j = int(rl.use_instance[u]), int(rl.use_slot[u])
                assert rl.block[i, j] == b
                seen.add((i, j))
        expected = {(i, j) for i in range(rg.n_instances) for j in range(rg.residual_type.n_slots)
                    if rl.block[i, j] >= 0}
        assert seen == expected
        # the internal order is a permutation of the user's instances, carrying index and data along
        np.testing.assert_array_equal(np.sort(rl.order), np.arange(rg.n_instances))
        np.testing.assert_array_equal(rl.index, rg.index[rl.order])
        np.testing.assert_array_equal(rl.data, rg.data[rl.order])
        # instances ordered stably by their highest free block; uses listed in instance, then slot order
        top = rl.block.max(axis=1)
        assert np.all(np.diff(top) >= 0)
        ties = np.flatnonzero(np.diff(top) == 0)
        assert np.all(rl.order[ties] < rl.order[ties + 1])
        for b in range(layout.n_blocks):
            uses = list(zip(rl.use_instance[rl.use_ptr[b]:rl.use_ptr[b + 1]], rl.use_slot[rl.use_ptr[b]:rl.use_ptr[b + 1]]))
            assert uses == sorted(uses)
        # constant blocks map to -1, free ones to their id
        for j, g in enumerate(rg.groups):
            const = problem.parameter_groups[g].constant[rl.index[:, j]]
            np.testing.assert_array_equal(rl.block[:, j] < 0, const)
            np.testing.assert_array_equal(rl.block[:, j], layout.block_id[g][rl.index[:, j]])


def test_normal_matrix_matches_dense(setup):
    problem, layout, jacobians, _, dense = setup
    normal = build_normal_pattern(layout)
    pattern = normal.pattern
    values = np.zeros(pattern.nnz)
    for rl, jac, (ptr, inst, sa, sb) in zip(layout.residuals, jacobians, normal.contributions):
        accumulate_normal_matrix(ptr, inst, sa, sb, rl.slot_offset, pattern.colptr, pattern.target_col,
                                 pattern.target_ncol, pattern.target_nrow, pattern.target_within, pattern.target_diag,
                                 jac, values)
    lower = pattern.matrix(values).toarray()
    expect = np.tril(dense.T @ dense)
    np.testing.assert_allclose(lower, expect, rtol=1e-12, atol=1e-12)


def test_normal_pattern_shape(setup):
    problem, layout, jacobians, _, dense = setup
    pattern = build_normal_pattern(layout).pattern
    n = layout.n_columns
    assert pattern.colptr.shape == (n + 1,) and pattern.colptr[-1] == pattern.nnz
    for c in range(n):
        rows = pattern.indices[pattern.colptr[c]:pattern.colptr[c + 1]]
        assert rows[0] == c                      # diagonal first (the damping goes there)
        assert np.all(np.diff(rows) > 0)         # sorted, no duplicates
        assert np.all(rows >= c)                 # lower triangle only
    np.testing.assert_array_equal(pattern.diagonal_positions, pattern.colptr[:-1])
    # the pattern is exactly the block pattern of lower(J^T J) plus the diagonal blocks
    block_of_col = np.repeat(np.arange(layout.n_blocks), layout.block_size)
    struct = (np.abs(dense) > 0).astype(int)
    bpat = np.zeros((layout.n_blocks, layout.n_blocks), bool)
    nz_r, nz_c = np.nonzero((struct.T @ struct) > 0)
    bpat[block_of_col[nz_r], block_of_col[nz_c]] = True
    bpat |= np.eye(layout.n_blocks, dtype=bool)
    expected = np.tril(bpat[np.ix_(block_of_col, block_of_col)])
    got = np.zeros((n, n), bool)
    got[pattern.indices, np.repeat(np.arange(n), np.diff(pattern.colptr))] = True
    np.testing.assert_array_equal(got, expected)


def test_gradient_column_norms_and_products(setup, rng):
    problem, layout, jacobians, residuals, dense = setup
    gradient = np.zeros(layout.n_columns)
    norms = np.zeros(layout.n_columns)
    for rl, jac, res in zip(layout.residuals, jacobians, residuals):
        accumulate_gradient_and_column_norms(rl.use_ptr, rl.use_instance, rl.use_slot, rl.slot_offset,
                                             layout.block_col, layout.block_size, res, jac, gradient, norms)
    r = np.concatenate([res.ravel() for res in residuals])
    np.testing.assert_allclose(gradient, dense.T @ r, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(norms, np.sum(dense ** 2, axis=0), rtol=1e-12, atol=1e-12)
    x = rng.normal(size=layout.n_columns)
    decrease = sum(model_decrease(rl.block, rl.slot_offset, layout.block_col, layout.block_size, jac, res, x)
                   for rl, jac, res in zip(layout.residuals, jacobians, residuals))
    jx = dense @ x
    assert decrease == pytest.approx(-jx @ (r + 0.5 * jx), rel=1e-12, abs=1e-12)


def test_a_block_in_two_slots_of_one_instance_is_rejected(rng):
    """Ceres' rule: a residual block touches distinct parameter blocks (else diag(J^T J) per slot is wrong)."""
    p = sparselm.Problem()
    p.add_parameter_group("b", rng.normal(size=(3, 2)))
    t = ResidualType("t", 1, (2, 2), 0, _noop)
    with pytest.raises(ValueError, match=r"instance 1 uses block 2 of 'b' in slots 0 and 1"):
        p.add_residual_group("r", t, [("b", [0, 2]), ("b", [1, 2])])


def test_layout_errors(rng):
    p = sparselm.Problem()
    p.add_parameter_group("x", rng.normal(size=(3, 2)))
    with pytest.raises(ValueError, match="no residual groups"):
        build_layout(p)
    p.add_residual_group("r", ResidualType("t", 1, (2,), 0, _noop), [("x", [0, 1, 2])])
    p.set_constant("x", [0, 1, 2])
    with pytest.raises(ValueError, match="every parameter block is constant"):
        build_layout(p)


def test_instance_order_carries_per_instance_weights(rng):
    """Out-of-order instances: index, data and a per-instance sqrt-information are permuted together;
    instances already in order keep the user's arrays as they are."""
    p = sparselm.Problem()
    p.add_parameter_group("x", rng.normal(size=(6, 2)), eliminate=True)
    p.add_parameter_group("y", rng.normal(size=(2, 1)))
    t = ResidualType("xy", 2, (2, 1), 1, _noop)
    sigma = rng.uniform(0.5, 2.0, size=5)
    data = rng.normal(size=(5, 1))
    p.add_residual_group("r", t, [("x", [4, 0, 5, 0, 2]), ("y", [0, 1, 1, 0, 0])], data, sigma=sigma)
    rl = build_layout(p).residuals[0]
    rg = p.residual_groups[0]
    np.testing.assert_array_equal(rl.order, [1, 3, 4, 0, 2])
    np.testing.assert_array_equal(rl.index, rg.index[rl.order])
    np.testing.assert_array_equal(rl.data, data[rl.order])
    np.testing.assert_array_equal(rl.sqrt_information, rg.sqrt_information[rl.order])
    q = sparselm.Problem()
    q.add_parameter_group("x", rng.normal(size=(6, 2)), eliminate=True)
    q.add_parameter_group("y", rng.normal(size=(2, 1)))
    q.add_residual_group("r", t, [("x", [0, 0, 2, 4, 5]), ("y", [0, 1, 1, 0, 0])], data, sigma=sigma)
    rl = build_layout(q).residuals[0]
    np.testing.assert_array_equal(rl.order, np.arange(5))
    np.testing.assert_array_equal(rl.index, q.residual_groups[0].index)
    np.testing.assert_array_equal(rl.sqrt_information, q.residual_groups[0].sqrt_information)
