"""SO(3) x R^k (quaternion_and_vector): plus/minus round trips and the plus-Jacobian against finite
differences, at generic points, small angles and near pi; the quaternion part stays unit."""
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sparselm.manifolds import SO3_QUATERNION, check_manifold, quaternion_and_vector


def _points(rng, k, n=40, angle=None):
    if angle is None:
        q = Rotation.random(n, random_state=int(rng.integers(1 << 30))).as_quat()
    else:
        axis = rng.normal(size=(n, 3))
        q = Rotation.from_rotvec(angle * axis / np.linalg.norm(axis, axis=1, keepdims=True)).as_quat()
    return np.hstack([q, rng.normal(size=(n, k)) * 5])


@pytest.mark.parametrize("k", [0, 3, 5])
def test_generic_points(k, rng):
    manifold = quaternion_and_vector(k)
    assert (manifold.ambient_size, manifold.tangent_size) == (4 + k, 3 + k)
    result = check_manifold(manifold, _points(rng, k), step_scale=0.5)
    assert result.ok, str(result)


@pytest.mark.parametrize("angle", [0.0, 1e-8, 1e-3, math.pi - 1e-7])
def test_small_angles_and_near_pi(angle, rng):
    result = check_manifold(quaternion_and_vector(4), _points(rng, 4, angle=angle),
                            step_scale=1e-6 if angle < 1 else 0.3)
    assert result.ok, str(result)


def test_parts_move_as_their_own_manifolds(rng):
    """The rotation part moves as so3_quaternion, the vector part by plain addition."""
    x = _points(rng, 3)
    d = rng.normal(size=(len(x), 6)) * 0.3
    moved = quaternion_and_vector(3).plus(x, d)
    np.testing.assert_allclose(moved[:, :4], SO3_QUATERNION.plus(x[:, :4], d[:, :3]), atol=1e-15)
    np.testing.assert_allclose(moved[:, 4:], x[:, 4:] + d[:, 3:], atol=1e-14)
    p = quaternion_and_vector(3).plus_jacobian(x)
    np.testing.assert_allclose(p[:, :4, :3], SO3_QUATERNION.plus_jacobian(x[:, :4]), atol=1e-15)
    np.testing.assert_array_equal(p[:, 4:, 3:], np.broadcast_to(np.eye(3), (len(x), 3, 3)))
    assert not p[:, :4, 3:].any() and not p[:, 4:, :3].any()


def test_quaternion_stays_unit_through_many_steps(rng):
    manifold = quaternion_and_vector(2)
    x = _points(rng, 2, n=10)
    for _ in range(1000):
        x = manifold.plus(x, rng.normal(size=(len(x), 5)))
    assert np.abs(np.linalg.norm(x[:, :4], axis=1) - 1.0).max() < 1e-12


def test_one_instance_per_size_and_bad_size():
    assert quaternion_and_vector(3) is quaternion_and_vector(3)
    with pytest.raises(ValueError, match="k must be >= 0"):
        quaternion_and_vector(-1)
