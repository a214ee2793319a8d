"""Numerical null space, coordinate choice and pinning."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sparselm.covariance.gauge import GaugeError, fixing_coordinates, null_space, pin_coordinates


def laplacian(n_nodes, edges, weights):
    rows, cols, vals = [], [], []
    for (i, j), w in zip(edges, weights):
        rows += [i, j, i, j]
        cols += [i, j, j, i]
        vals += [w, w, -w, -w]
    return sp.csc_matrix((vals, (rows, cols)), shape=(n_nodes, n_nodes))


def test_null_space_of_a_graph_laplacian_is_one_constant_per_component():
    # two components {0..4} and {5..8}, badly scaled weights
    edges = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4), (5, 6), (6, 7), (7, 8)]
    weights = [1e6, 1.0, 3.0, 1e-3, 2.0, 5.0, 1e4, 0.5]
    lap = laplacian(9, edges, weights)
    basis = null_space(sp.csc_matrix(sp.tril(lap)), 1e-10)
    assert basis.shape == (9, 2)
    expected = np.zeros((9, 2))
    expected[:5, 0] = 1 / np.sqrt(5)
    expected[5:, 1] = 1 / np.sqrt(4)
    projector = basis @ basis.T
    assert np.allclose(projector, expected @ expected.T, atol=1e-10)


def test_a_positive_definite_matrix_has_no_null_space():
    lap = laplacian(4, [(0, 1), (1, 2), (2, 3)], [1.0, 2.0, 3.0]) + sp.eye(4) * 1e-3
    assert null_space(sp.csc_matrix(sp.tril(lap)), 1e-10).shape == (4, 0)


def test_fixing_coordinates_make_the_basis_square_and_regular():
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(10, 3)))[0]
    allowed = np.ones(10, dtype=bool)
    allowed[[0, 1]] = False
    chosen = fixing_coordinates(basis, allowed)
    assert chosen.size == 3 and not np.isin(chosen, [0, 1]).any()
    assert abs(np.linalg.det(basis[chosen])) > 1e-3
    with pytest.raises(GaugeError):
        fixing_coordinates(np.eye(4)[:, :2], np.array([False, False, True, True]))


def test_pinning_decouples_the_coordinates():
    lap = laplacian(4, [(0, 1), (1, 2), (2, 3)], [1.0, 2.0, 3.0])
    pinned, mask = pin_coordinates(sp.csc_matrix(sp.tril(lap)), np.array([1]))
    full = (pinned + sp.tril(pinned, -1).T).toarray()
    assert mask.tolist() == [False, True, False, False]
    assert full[1].tolist() == [0.0, 1.0, 0.0, 0.0] and full[:, 1].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert np.linalg.matrix_rank(full) == 4
