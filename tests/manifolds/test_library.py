"""Every provided manifold: plus/minus round trips and the plus-Jacobian against finite differences,
at generic points, at small angles and near pi."""
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sparselm.manifolds import SE2, SE3, SO3_QUATERNION, SO3_ROTATION_VECTOR, SPHERE2, check_manifold, euclidean


def _random_quaternions(rng, n, angle=None):
    q = Rotation.random(n, random_state=int(rng.integers(1 << 30))).as_quat()
    if angle is not None:
        axis = rng.normal(size=(n, 3))
        q = Rotation.from_rotvec(angle * axis / np.linalg.norm(axis, axis=1, keepdims=True)).as_quat()
    return q


def _points(manifold, rng, n=50, angle=None):
    if manifold is SO3_QUATERNION:
        return _random_quaternions(rng, n, angle)
    if manifold is SO3_ROTATION_VECTOR:
        axis = rng.normal(size=(n, 3))
        mag = rng.uniform(0, 2.5, (n, 1)) if angle is None else angle
        return mag * axis / np.linalg.norm(axis, axis=1, keepdims=True)
    if manifold is SE3:
        return np.hstack([rng.normal(size=(n, 3)) * 5, _random_quaternions(rng, n, angle)])
    if manifold is SE2:
        th = rng.uniform(-math.pi, math.pi, n) if angle is None else np.full(n, angle)
        return np.column_stack([rng.normal(size=(n, 2)) * 5, th])
    if manifold is SPHERE2:
        x = rng.normal(size=(n, 3))
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    return rng.normal(size=(n, manifold.ambient_size))


MANIFOLDS = [SO3_QUATERNION, SO3_ROTATION_VECTOR, SE3, SE2, SPHERE2, euclidean(4)]


@pytest.mark.parametrize("manifold", MANIFOLDS, ids=lambda m: m.name)
def test_generic_points(manifold, rng):
    result = check_manifold(manifold, _points(manifold, rng), step_scale=0.5)
    assert result.ok, str(result)


@pytest.mark.parametrize("manifold", [SO3_QUATERNION, SE3, SE2, SO3_ROTATION_VECTOR], ids=lambda m: m.name)
@pytest.mark.parametrize("angle", [0.0, 1e-8, 1e-3])
def test_small_angles_and_small_steps(manifold, angle, rng):
    result = check_manifold(manifold, _points(manifold, rng, angle=angle), step_scale=1e-6)
    assert result.ok, str(result)


@pytest.mark.parametrize("manifold", [SO3_QUATERNION, SE3, SE2], ids=lambda m: m.name)
def test_near_pi(manifold, rng):
    # SE(2) stores theta wrapped to (-pi, pi]: keep its central differences (step 1e-6) off the cut.
    angle = math.pi - (1e-3 if manifold is SE2 else 1e-7)
    result = check_manifold(manifold, _points(manifold, rng, angle=angle), step_scale=0.3)
    assert result.ok, str(result)


def test_rotation_vector_near_pi_stays_consistent_for_steps_towards_the_origin(rng):
    r = np.array([[math.pi - 0.05, 0.0, 0.0]])
    d = np.array([[-0.1, 0.0, 0.0]])
    np.testing.assert_allclose(SO3_ROTATION_VECTOR.minus(SO3_ROTATION_VECTOR.plus(r, d), r), d, atol=1e-12)
    assert check_manifold(SO3_ROTATION_VECTOR, r, step_scale=1e-3).ok


def test_quaternion_update_is_a_right_perturbation(rng):
    q = _random_quaternions(rng, 1)
    d = np.array([[0.1, -0.2, 0.3]])
    expected = (Rotation.from_quat(q[0]) * Rotation.from_rotvec(d[0])).as_quat()
    got = SO3_QUATERNION.plus(q, d)[0]
    assert min(np.abs(got - expected).max(), np.abs(got + expected).max()) < 1e-14


def test_quaternion_stays_unit_norm_over_many_steps(rng):
    q = _random_quaternions(rng, 20)
    for _ in range(2000):
        q = SO3_QUATERNION.plus(q, rng.normal(size=(20, 3)))
    assert np.abs(np.linalg.norm(q, axis=1) - 1).max() < 1e-12


def test_se3_update_is_the_right_exponential(rng):
    x = _points(SE3, rng, n=1)
    xi = np.array([[0.3, -0.1, 0.2, 1.0, 2.0, -0.5]])
    y = SE3.plus(x, xi)[0]
    rot = Rotation.from_quat(x[0, 3:])
    step_rot = Rotation.from_rotvec(xi[0, :3])
    np.testing.assert_allclose(Rotation.from_quat(y[3:]).as_matrix(), (rot * step_rot).as_matrix(), atol=1e-14)
    from scipy.linalg import expm
    hat = np.zeros((4, 4))
    w = xi[0, :3]
    hat[:3, :3] = [[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]
    hat[:3, 3] = xi[0, 3:]
    step = expm(hat)
    np.testing.assert_allclose(y[:3], x[0, :3] + rot.apply(step[:3, 3]), atol=1e-13)


def test_se2_update_wraps_the_angle():
    y = SE2.plus(np.array([[0.0, 0.0, 3.0]]), np.array([[0.0, 0.0, 0.5]]))
    assert y[0, 2] == pytest.approx(3.5 - 2 * math.pi)


def test_sphere_plus_moves_along_the_geodesic(rng):
    x = _points(SPHERE2, rng, n=10)
    d = rng.normal(size=(10, 2))
    y = SPHERE2.plus(x, d)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-15)
    angle = np.arccos(np.clip(np.sum(x * y, axis=1), -1, 1))
    np.testing.assert_allclose(angle, np.minimum(np.linalg.norm(d, axis=1), 2 * math.pi - np.linalg.norm(d, axis=1)),
                               atol=1e-12)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        SO3_QUATERNION.plus(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="blocks"):
        SO3_QUATERNION.plus(np.zeros((2, 4)), np.zeros((3, 3)))
