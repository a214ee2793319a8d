"""Covariance from a plain Jacobian, and sparselm.least_squares(return_covariance=True)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp

import sparselm
from sparselm.covariance.matrix import jacobian_covariance


def test_regular_and_singular_jacobians_against_dense():
    rng = np.random.default_rng(3)
    jac = sp.random(80, 25, 0.15, random_state=4) + sp.csr_matrix(np.eye(80, 25))
    got = jacobian_covariance(jac).toarray()
    ref = np.linalg.inv((jac.T @ jac).toarray())
    pattern = (jac.T @ jac).toarray() != 0
    assert np.abs(got[pattern] - ref[pattern]).max() <= 1e-10 * np.abs(ref).max()
    dense = jac.toarray()
    dense[:, 7] = dense[:, 6] * rng.uniform(1, 2)  # a one-dimensional null space
    dense[:, 24] = 0.0                             # a parameter nothing depends on
    got = jacobian_covariance(dense).toarray()
    jp = np.linalg.pinv(dense, rcond=1e-10)
    ref = jp @ jp.T
    pattern = (dense.T @ dense) != 0
    assert np.abs(got[pattern] - ref[pattern]).max() <= 1e-8 * np.abs(ref).max()
    assert np.isnan(got[24, 24])


def test_least_squares_cov_x_matches_curve_fit():
    rng = np.random.default_rng(8)
    t = np.linspace(0, 4, 50)
    y = 2.0 * np.exp(-0.8 * t) + 0.3 + rng.normal(0, 0.02, t.size)

    def model(t, a, b, c):
        return a * np.exp(-b * t) + c

    res = sparselm.least_squares(lambda x: model(t, *x) - y, [1.0, 1.0, 0.0],
                                 jac=lambda x: np.column_stack([np.exp(-x[1] * t), -x[0] * t * np.exp(-x[1] * t),
                                                                np.ones_like(t)]),
                                 xtol=1e-15, ftol=1e-15, gtol=1e-15, return_covariance=True)
    pcov = res.cov_x * 2 * res.cost / (t.size - 3)
    popt, ref = scipy.optimize.curve_fit(model, t, y, p0=res.x, xtol=1e-15, ftol=1e-15, gtol=1e-15,
                                         jac=lambda t, a, b, c: np.column_stack([np.exp(-b * t),
                                                                                 -a * t * np.exp(-b * t),
                                                                                 np.ones_like(t)]))
    assert np.allclose(popt, res.x, rtol=1e-8)
    assert isinstance(res.cov_x, np.ndarray) and np.allclose(pcov, ref, rtol=1e-7)
    assert not hasattr(sparselm.least_squares(lambda x: x - 1.0, [0.0, 0.0]), "cov_x")
