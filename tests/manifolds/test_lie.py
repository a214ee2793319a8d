"""Lie-group helpers against independent references (scipy's Rotation, matrix exp/log)."""
import math

import numpy as np
import pytest
from scipy.linalg import expm, logm
from scipy.spatial.transform import Rotation

from sparselm.manifolds import lie


def _skew(w):
    return np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])


ANGLES = [0.0, 1e-9, 1e-5, 0.01, 0.049, 0.051, 0.3, 1.5, 3.0, math.pi - 1e-6, math.pi - 1e-10]


@pytest.mark.parametrize("angle", ANGLES)
def test_so3_exp_log_match_scipy_from_zero_to_pi(angle, rng):
    axis = rng.normal(size=3)
    w = angle * axis / np.linalg.norm(axis)
    q = np.array(lie.so3_exp(tuple(w)))
    np.testing.assert_allclose(q, Rotation.from_rotvec(w).as_quat(), atol=1e-15)
    np.testing.assert_allclose(lie.so3_log(tuple(q)), w, atol=1e-12)
    np.testing.assert_allclose(np.array(lie.quaternion_to_matrix(tuple(q))).reshape(3, 3),
                               Rotation.from_rotvec(w).as_matrix(), atol=1e-15)
    v = rng.normal(size=3)
    np.testing.assert_allclose(lie.rotate(tuple(q), tuple(v)), Rotation.from_rotvec(w).apply(v), atol=1e-14)


def test_so3_log_of_a_negative_scalar_quaternion_takes_the_short_way():
    q = -Rotation.from_rotvec([0.2, -0.1, 0.3]).as_quat()
    np.testing.assert_allclose(lie.so3_log(tuple(q)), [0.2, -0.1, 0.3], atol=1e-15)


@pytest.mark.parametrize("angle", [0.0, 1e-6, 0.02, 0.07, 0.2, 1.0, 2.5, 3.1])
def test_right_jacobian_inverse_against_finite_differences(angle, rng):
    axis = rng.normal(size=3)
    w = angle * axis / np.linalg.norm(axis)
    analytic = np.array(lie.so3_right_jacobian_inverse(tuple(w))).reshape(3, 3)
    q = lie.so3_exp(tuple(w))
    h = 1e-6
    numeric = np.empty((3, 3))
    for c in range(3):
        d = np.zeros(3)
        d[c] = h
        plus = lie.so3_log(lie.quaternion_multiply(q, lie.so3_exp(tuple(d))))
        minus = lie.so3_log(lie.quaternion_multiply(q, lie.so3_exp(tuple(-d))))
        numeric[:, c] = (np.array(plus) - np.array(minus)) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, atol=2e-8)


@pytest.mark.parametrize("theta", [0.0, 1e-7, 0.03, 0.08, 0.12, 1.0, 3.0])
def test_inverse_jacobian_coefficient_and_its_derivative(theta):
    c, dc = lie.so3_inverse_jacobian_coefficients(theta)
    exact = 1.0 / 12.0 if theta == 0.0 else None
    if theta > 0.1:
        exact = (1 - theta / 2 / math.tan(theta / 2)) / theta ** 2
    if exact is not None:
        assert c == pytest.approx(exact, rel=1e-12)
    h = 1e-4
    if theta > 1e-3:
        cp, _ = lie.so3_inverse_jacobian_coefficients(theta + h)
        cm, _ = lie.so3_inverse_jacobian_coefficients(theta - h)
        assert dc == pytest.approx((cp - cm) / (2 * h) / theta, rel=1e-6)


@pytest.mark.parametrize("angle", [0.0, 1e-8, 0.03, 0.5, 2.0, 3.1])
def test_se3_exp_log_match_the_matrix_exponential(angle, rng):
    axis = rng.normal(size=3)
    w = angle * axis / np.linalg.norm(axis)
    v = rng.normal(size=3)
    xi_hat = np.zeros((4, 4))
    xi_hat[:3, :3] = _skew(w)
    xi_hat[:3, 3] = v
    ref = expm(xi_hat)
    q, t = lie.se3_exp(tuple(w), tuple(v))
    np.testing.assert_allclose(np.array(lie.quaternion_to_matrix(q)).reshape(3, 3), ref[:3, :3], atol=1e-13)
    np.testing.assert_allclose(t, ref[:3, 3], atol=1e-12)
    w2, v2 = lie.se3_log(q, t)
    np.testing.assert_allclose(np.r_[w2, v2], np.r_[w, v], atol=1e-10)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 0.03, 0.07, 1.0, -2.0, 3.1])
def test_se2_exp_log_match_the_matrix_exponential(angle, rng):
    v = rng.normal(size=2)
    xi_hat = np.array([[0, -angle, v[0]], [angle, 0, v[1]], [0, 0, 0]])
    ref = expm(xi_hat)
    x, y, th = lie.se2_exp(v[0], v[1], angle)
    np.testing.assert_allclose([x, y], ref[:2, 2], atol=1e-13)
    assert th == pytest.approx(math.atan2(ref[1, 0], ref[0, 0]), abs=1e-14)
    np.testing.assert_allclose(lie.se2_log(x, y, th), [v[0], v[1], angle], atol=1e-12)
    if angle != 0.0:
        log_ref = np.real(logm(ref))
        np.testing.assert_allclose(lie.se2_log(x, y, th)[:2], log_ref[:2, 2], atol=1e-10)


def test_se2_compose_and_inverse():
    a, b = (1.0, 2.0, 0.5), (-0.3, 0.7, 2.9)
    ab = lie.se2_compose(a, b)
    back = lie.se2_compose(lie.se2_inverse(a), ab)
    np.testing.assert_allclose(back, b, atol=1e-14)
    assert lie.wrap_angle(3 * math.pi) == pytest.approx(math.pi)
    assert lie.wrap_angle(-math.pi) == pytest.approx(math.pi)
