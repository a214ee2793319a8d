"""Quaternion <-> rotation vector conversions, against scipy's Rotation."""
import numpy as np
from scipy.spatial.transform import Rotation

from sparselm.colmap.rotation import quaternion_from_rotvec, rotvec_from_quaternion


def test_quaternion_rotation_vector_round_trip():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(200, 4))
    q[:3] = [[1, 0, 0, 0], [1, 1e-12, 0, 0], [1e-9, 1, 0, 0]]  # identity, tiny angle, near pi
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w = rotvec_from_quaternion(q)
    assert np.all(np.linalg.norm(w, axis=1) <= np.pi + 1e-12)
    np.testing.assert_allclose(Rotation.from_rotvec(w).as_matrix(), Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix(),
                               atol=1e-12)
    np.testing.assert_allclose(quaternion_from_rotvec(w, like=q), q, atol=1e-12)
