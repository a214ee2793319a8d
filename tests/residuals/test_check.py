"""sparselm.residuals: the ResidualType contract, the central-difference fallback and check_jacobian
(passes on correct types, names the slot and instance of a deliberately wrong Jacobian)."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit, prange

from sparselm import ResidualType, check_jacobian, models
from sparselm.residuals import JacobianCheck, numeric_jacobian


def _noop(*args):
    pass


@pytest.mark.parametrize("kwargs,match", [
    (dict(residual_size=0, block_sizes=(2,), data_size=0), "residual_size must be >= 1"),
    (dict(residual_size=1, block_sizes=(), data_size=0), "block_sizes must be positive"),
    (dict(residual_size=1, block_sizes=(2, 0), data_size=0), "block_sizes must be positive"),
    (dict(residual_size=1, block_sizes=(2,), data_size=-1), "data_size must be >= 0"),
])
def test_residual_type_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResidualType("bad", residual_kernel=_noop, **kwargs)


def test_residual_type_properties():
    rt = ResidualType("t", 2, (9, 3), 2, _noop)
    assert rt.n_slots == 2 and not rt.has_analytic_jacobian
    assert models.DISTANCE_2D.n_slots == 2 and models.DISTANCE_2D.has_analytic_jacobian


def test_numeric_jacobian_matches_analytic_on_two_slots(rng):
    """Both slots of DISTANCE_2D refer to the same group; several instances share blocks."""
    pts = rng.normal(size=(6, 2)) * 3.0
    index = np.array([[0, 1], [1, 0], [2, 5], [5, 2], [3, 2], [4, 0], [0, 4]], dtype=np.int64)
    data = rng.uniform(0.5, 2.0, size=(len(index), 1))
    before = pts.copy()
    n = len(index)
    res_n, res_a = np.empty((n, 1)), np.empty((n, 1))
    jac_n = (np.empty((n, 1, 2)), np.empty((n, 1, 2)))
    jac_a = (np.empty((n, 1, 2)), np.empty((n, 1, 2)))
    numeric_jacobian(models.DISTANCE_2D.residual_kernel, (pts, pts), index, data, res_n, jac_n)
    models.DISTANCE_2D.jacobian_kernel((pts, pts), index, data, res_a, jac_a)
    np.testing.assert_array_equal(pts, before)  # the parameters are never touched
    np.testing.assert_allclose(res_n, res_a, rtol=1e-15, atol=1e-15)
    for a, d in zip(jac_a, jac_n):
        np.testing.assert_allclose(d, a, rtol=1e-8, atol=1e-9)


def test_numeric_jacobian_step_scales_with_x():
    """Central differences of a linear residual are exact up to rounding, whatever the magnitude of x."""
    x = np.array([[1e6, -3e-4]])
    data = np.zeros((1, 2))
    res = np.empty((1, 2))
    jac = (np.empty((1, 2, 2)),)
    numeric_jacobian(models.prior(2).residual_kernel, (x,), np.zeros((1, 1), np.int64), data, res, jac)
    np.testing.assert_allclose(jac[0][0], np.eye(2), rtol=1e-9, atol=1e-9)


# A DISTANCE_2D-like type whose Jacobian kernel has a sign flip in slot 1, for instance 3 only.
@njit(parallel=True, cache=True)
def _wrong_distance_jacobians(params, index, data, residuals, jacobians):
    p, q = params[0], params[1]
    for i in prange(index.shape[0]):
        a, b = index[i, 0], index[i, 1]
        dx = p[a, 0] - q[b, 0]
        dy = p[a, 1] - q[b, 1]
        d = np.sqrt(dx * dx + dy * dy)
        residuals[i, 0] = d - data[i, 0]
        sign = 1.0 if i == 3 else -1.0
        jacobians[0][i, 0, 0] = dx / d
        jacobians[0][i, 0, 1] = dy / d
        jacobians[1][i, 0, 0] = sign * dx / d
        jacobians[1][i, 0, 1] = sign * dy / d


# A Gaussian whose d/ds drops the factor u (a "dropped term"): slot 0, every instance.
@njit(parallel=True, cache=True)
def _wrong_gaussian_jacobians(params, index, data, residuals, jacobians):
    x = params[0]
    jac = jacobians[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        amp, s = x[b, 0], x[b, 2]
        u = (data[i, 0] - x[b, 1]) / s
        g = np.exp(-0.5 * u * u)
        residuals[i, 0] = amp * g - data[i, 1]
        jac[i, 0, 0] = g
        jac[i, 0, 1] = amp * g * u / s
        jac[i, 0, 2] = amp * g * u / s


def test_check_jacobian_catches_sign_flip_and_names_the_slot(rng):
    wrong = ResidualType("wrong_distance", 1, (2, 2), 1, models.DISTANCE_2D.residual_kernel,
                         _wrong_distance_jacobians)
    p = rng.normal(size=(5, 2))
    index = np.column_stack([np.arange(5), (np.arange(5) + 1) % 5])
    data = np.ones((5, 1))
    check = check_jacobian(wrong, [p, p], index, data)
    assert isinstance(check, JacobianCheck)
    assert not check.ok
    assert check.max_relative_error[0] < 1e-7          # slot 0 is right
    assert check.max_relative_error[1] > 0.5           # slot 1 is wrong ...
    assert check.worst_instance[1] == 3                # ... at instance 3
    text = str(check)
    assert "FAILED" in text and "slot 1: max relative error" in text and "(instance 3)" in text
    # the same check on the correct type passes and says so
    good = check_jacobian(models.DISTANCE_2D, [p, p], index, data)
    assert good.ok and "passed" in str(good)
    np.testing.assert_allclose(good.analytic[1], good.numeric[1], atol=1e-8)


def test_check_jacobian_catches_dropped_term(rng):
    wrong = ResidualType("wrong_gaussian", 1, (3,), 2, models.GAUSSIAN.residual_kernel, _wrong_gaussian_jacobians)
    x = np.array([[1.5, 0.3, 0.8]])
    t = np.linspace(-2, 2, 11)
    data = np.column_stack([t, np.zeros_like(t)])
    index = np.zeros((11, 1), np.int64)
    check = check_jacobian(wrong, [x], index, data)
    assert not check.ok and check.max_relative_error[0] > 1e-3
    # the error is in the third column (d/ds) only
    err = np.abs(check.analytic[0] - check.numeric[0]).max(axis=(0, 1))
    assert err[2] > 1e-3 and err[0] < 1e-8 and err[1] < 1e-8
    assert check_jacobian(models.GAUSSIAN, [x], index, data).ok


def test_check_jacobian_tolerance_is_respected(rng):
    p = rng.normal(size=(4, 2))
    index = np.column_stack([np.arange(4), (np.arange(4) + 1) % 4])
    check = check_jacobian(models.DISTANCE_2D, [p, p], index, np.ones((4, 1)), tolerance=0.0)
    assert check.tolerance == 0.0
    assert not check.ok  # central differences are never exact to the last bit
    assert max(check.max_relative_error) < 1e-7


def test_check_jacobian_requires_analytic():
    with pytest.raises(ValueError, match="'bard' has no analytic Jacobian"):
        check_jacobian(models.BARD, [np.ones((1, 3))], np.zeros((15, 1), np.int64), models.BARD_DATA)

