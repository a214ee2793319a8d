"""Pose-graph residuals: values against an independent matrix-log reference, analytic Jacobians
against central differences (tangent ones through the se3 manifold's plus), generic and at small
angles and near pi."""
import math

import numpy as np
import pytest
from scipy.linalg import logm
from scipy.spatial.transform import Rotation

from sparselm.residuals.check import check_jacobian
from sparselm.residuals.pose_graph import SE2_BETWEEN, SE2_PRIOR, SE3_BETWEEN, SE3_BETWEEN_G2O, SE3_PRIOR


def _matrix3(pose):
    m = np.eye(4)
    m[:3, :3] = Rotation.from_quat(pose[3:]).as_matrix()
    m[:3, 3] = pose[:3]
    return m


def _matrix2(pose):
    c, s = math.cos(pose[2]), math.sin(pose[2])
    return np.array([[c, -s, pose[0]], [s, c, pose[1]], [0, 0, 1]])


def _log3(m):
    hat = np.real(logm(m))
    return np.array([hat[2, 1], hat[0, 2], hat[1, 0], *hat[:3, 3]])


def _log2(m):
    hat = np.real(logm(m))
    return np.array([hat[0, 2], hat[1, 2], hat[1, 0]])


def _poses3(rng, n, scale=1.0):
    return np.hstack([rng.normal(size=(n, 3)) * 3, Rotation.from_rotvec(scale * rng.normal(size=(n, 3))).as_quat()])


def _measurement_with_error(poses, index, error_angle, rng):
    """Z such that the discrepancy Z^-1 T_i^-1 T_j has rotation angle error_angle (and a translation)."""
    out = []
    for i, j in index:
        rel = np.linalg.inv(_matrix3(poses[i])) @ _matrix3(poses[j])
        axis = rng.normal(size=3)
        err = np.eye(4)
        err[:3, :3] = Rotation.from_rotvec(error_angle * axis / np.linalg.norm(axis)).as_matrix()
        err[:3, 3] = rng.normal(size=3) * 0.3
        z = rel @ np.linalg.inv(err)
        out.append(np.r_[z[:3, 3], Rotation.from_matrix(z[:3, :3]).as_quat()])
    return np.array(out)


ANGLES = [0.0, 1e-7, 0.02, 0.08, 0.5, 2.0, math.pi - 1e-4]


@pytest.mark.parametrize("error_angle", ANGLES)
def test_se3_between_value_and_jacobians(error_angle, rng):
    poses = _poses3(rng, 6, scale=1.0)
    index = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 1]])
    z = _measurement_with_error(poses, index, error_angle, rng)
    res = np.empty((len(index), 6))
    SE3_BETWEEN.residual_kernel((poses, poses), index, z, res)
    for k, (i, j) in enumerate(index):
        ref = _log3(np.linalg.inv(_matrix3(z[k])) @ np.linalg.inv(_matrix3(poses[i])) @ _matrix3(poses[j]))
        np.testing.assert_allclose(res[k], ref, atol=1e-8)
    assert np.linalg.norm(res[:, :3], axis=1) == pytest.approx(error_angle, abs=1e-9)
    check = check_jacobian(SE3_BETWEEN, (poses, poses), index, z, tolerance=2e-6)
    assert check.ok, str(check)


@pytest.mark.parametrize("error_angle", [0.0, 0.3, 3.0])
def test_se3_prior_value_and_jacobian(error_angle, rng):
    poses = _poses3(rng, 3)
    index = np.arange(3)[:, None]
    z = []
    for p in poses:
        err = Rotation.from_rotvec(error_angle * np.array([0.6, 0.8, 0.0]))
        rot = Rotation.from_quat(p[3:]) * err.inv()
        z.append(np.r_[p[:3] + rng.normal(size=3) * 0.2, rot.as_quat()])
    z = np.array(z)
    res = np.empty((3, 6))
    SE3_PRIOR.residual_kernel((poses,), index, z, res)
    for k in range(3):
        np.testing.assert_allclose(res[k], _log3(np.linalg.inv(_matrix3(z[k])) @ _matrix3(poses[k])), atol=1e-8)
    assert check_jacobian(SE3_PRIOR, (poses,), index, z, tolerance=2e-6).ok


@pytest.mark.parametrize("error_angle", [0.0, 0.2, 2.5])
def test_se3_g2o_error_value_and_jacobians(error_angle, rng):
    poses = _poses3(rng, 4)
    index = np.array([[0, 1], [2, 3], [3, 1]])
    z = _measurement_with_error(poses, index, error_angle, rng)
    res = np.empty((3, 6))
    SE3_BETWEEN_G2O.residual_kernel((poses, poses), index, z, res)
    for k, (i, j) in enumerate(index):
        e = np.linalg.inv(_matrix3(z[k])) @ np.linalg.inv(_matrix3(poses[i])) @ _matrix3(poses[j])
        q = Rotation.from_matrix(e[:3, :3]).as_quat()
        q *= np.sign(q[3]) if q[3] != 0 else 1.0
        np.testing.assert_allclose(res[k], np.r_[2 * q[:3], e[:3, 3]], atol=1e-10)
    assert check_jacobian(SE3_BETWEEN_G2O, (poses, poses), index, z, tolerance=2e-6).ok


@pytest.mark.parametrize("error_angle", [0.0, 1e-8, 0.05, 0.15, 1.0, -2.5, math.pi - 1e-3])
def test_se2_between_value_and_jacobians(error_angle, rng):
    poses = np.column_stack([rng.normal(size=(5, 2)) * 3, rng.uniform(-math.pi, math.pi, 5)])
    index = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 0]])
    z = []
    for i, j in index:
        rel = np.linalg.inv(_matrix2(poses[i])) @ _matrix2(poses[j])
        err = _matrix2(np.r_[rng.normal(size=2) * 0.3, error_angle])
        zm = rel @ np.linalg.inv(err)
        z.append([zm[0, 2], zm[1, 2], math.atan2(zm[1, 0], zm[0, 0])])
    z = np.array(z)
    res = np.empty((5, 3))
    SE2_BETWEEN.residual_kernel((poses, poses), index, z, res)
    for k, (i, j) in enumerate(index):
        ref = _log2(np.linalg.inv(_matrix2(z[k])) @ np.linalg.inv(_matrix2(poses[i])) @ _matrix2(poses[j]))
        np.testing.assert_allclose(res[k], ref, atol=1e-9)
    check = check_jacobian(SE2_BETWEEN, (poses, poses), index, z, tolerance=2e-6)
    assert check.ok, str(check)


def test_se2_prior_value_and_jacobian(rng):
    poses = np.column_stack([rng.normal(size=(4, 2)), rng.uniform(-3, 3, 4)])
    z = poses + rng.normal(size=(4, 3)) * 0.3
    index = np.arange(4)[:, None]
    res = np.empty((4, 3))
    SE2_PRIOR.residual_kernel((poses,), index, z, res)
    for k in range(4):
        np.testing.assert_allclose(res[k], _log2(np.linalg.inv(_matrix2(z[k])) @ _matrix2(poses[k])), atol=1e-9)
    assert check_jacobian(SE2_PRIOR, (poses,), index, z, tolerance=2e-6).ok
