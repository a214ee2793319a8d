"""Block rank tests and the reduced matrix at the solution."""
from __future__ import annotations

import numpy as np

from sparselm.core.layout import build_layout
from sparselm.covariance.information import Information, diagonal_block_positions, observable_part, symmetric_blocks
from sparselm.util.timing import PhaseTimer


def test_observable_part_finds_rank_and_pseudo_inverse():
    rng = np.random.default_rng(0)
    j_full = rng.normal(size=(5, 3)) * [1e3, 1.0, 1e-3]  # badly scaled but full rank
    j_rank2 = rng.normal(size=(2, 3))                     # a point seen once: rank 2
    blocks = np.stack([j_full.T @ j_full, j_rank2.T @ j_rank2, np.diag([4.0, 0.0, 9.0])])
    held = np.array([[False] * 3, [False] * 3, [False, True, False]])
    pinv, directions, count = observable_part(blocks, held, 1e-10)
    assert count.tolist() == [0, 1, 0]
    assert np.allclose(pinv[0], np.linalg.inv(blocks[0]), rtol=1e-8, atol=0)
    assert np.allclose(blocks[1] @ pinv[1] @ blocks[1], blocks[1], rtol=1e-9, atol=1e-12)  # a generalized inverse
    assert np.allclose(j_rank2 @ directions[1, :, 0], 0.0, atol=1e-12)
    assert np.allclose(pinv[2], np.diag([0.25, 0.0, 1 / 9]))  # the held coordinate is ignored


def test_diagonal_block_positions_read_the_lower_pattern():
    from sparselm.core.layout import build_block_pattern
    sizes = np.array([2, 3])
    pattern = build_block_pattern(np.array([1 * 2 + 0]), np.array([0, 2]), sizes)
    dense = np.arange(25, dtype=float).reshape(5, 5)
    dense = dense + dense.T
    lower = pattern.matrix(np.zeros(pattern.nnz))
    for col in range(5):
        for q in range(lower.indptr[col], lower.indptr[col + 1]):
            lower.data[q] = dense[lower.indices[q], col]
    blocks = symmetric_blocks(lower.data, diagonal_block_positions(pattern.colptr, np.array([0, 2]), sizes))
    assert np.array_equal(blocks[0, :2, :2], dense[:2, :2]) and np.all(blocks[0, 2:] == 0)
    assert np.array_equal(blocks[1], dense[2:, 2:])


def test_schur_form_equals_the_dense_schur_complement(reference):
    problem, _ = reference.solved_ba(fix_cameras=[0])
    layout = build_layout(problem)
    info = Information(problem, layout, PhaseTimer(), 1e-10)
    jac, _ = reference.dense_jacobian(problem)
    h = jac.T @ jac
    f = info.n_kept_columns
    s = h[:f, :f] - h[:f, f:] @ np.linalg.pinv(h[f:, f:], rcond=1e-12, hermitian=True) @ h[f:, :f]
    got = info.matrix.toarray()
    got = got + np.tril(got, -1).T
    assert np.abs(got - s).max() <= 1e-9 * np.abs(s).max()
    x = np.random.default_rng(1).normal(size=(layout.n_columns, 2))
    reduced = info.reduce(x)
    v_pinv = np.linalg.pinv(h[f:, f:], rcond=1e-12, hermitian=True)
    assert np.allclose(reduced, x[:f] - h[:f, f:] @ v_pinv @ x[f:], rtol=1e-9, atol=1e-9 * np.abs(reduced).max())
    y = info.extend(x[:f], x)
    assert np.allclose(y[f:], v_pinv @ (x[f:] - h[f:, :f] @ x[:f]), rtol=1e-8, atol=1e-12)
    assert info.undefined == {} and info.n_residuals == jac.shape[0]
