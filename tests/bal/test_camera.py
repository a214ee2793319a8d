"""Tests of the BAL / Snavely camera model kernels (sparselm.bal.camera).

* the analytic Jacobian against central finite differences of the residual kernel, camera block
  (2x9) and point block (2x3) separately, at zero, tiny, ordinary, near-pi and beyond-pi rotations;
* the residual against an independent numpy reference (rotation by scipy's Rotation.from_rotvec);
* the cost of two real BAL problems at their initial point (needs SPARSELM_DATA).
"""
from __future__ import annotations

import bz2
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sparselm.bal.camera import (
    BAL_REPROJECTION,
    BAL_REPROJECTION_HANDWRITTEN,
    angle_axis_rotate_point,
    bal_reprojection_jacobians,
    left_jacobians,
    project,
    rotation_matrices,
)

# (label, rotation angle); the axes are random unit vectors. ``None`` means w = 0 exactly.
ROTATION_CASES = [
    ("zero", None),
    ("1e-12", 1e-12),
    ("1e-9", 1e-9),
    ("1e-5", 1e-5),
    ("taylor-threshold-below", 0.1 * (1 - 1e-9)),
    ("taylor-threshold-above", 0.1 * (1 + 1e-9)),
    ("0.7", 0.7),
    ("2.0", 2.0),
    ("pi-1e-6", np.pi - 1e-6),
    ("pi", np.pi),
    ("pi+1e-6", np.pi + 1e-6),
    ("4.5", 4.5),
    ("random", "random"),
]
CASE_IDS = [c[0] for c in ROTATION_CASES]


def _random_axis(rng):
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _make_problem(angle, seed, n_cameras=3, n_points=6, noise=3.0):
    """Random cameras with rotation angle ``angle`` (random axes), points in front of every camera
    (P_2 in [-6, -2], |p| <= 0.5), all camera/point pairs observed, observations = reference
    prediction + noise."""
    rng = np.random.default_rng(seed)
    cameras = np.empty((n_cameras, 9))
    for c in range(n_cameras):
        if angle is None:
            w = np.zeros(3)
        elif angle == "random":
            w = rng.uniform(0.0, np.pi) * _random_axis(rng)
        else:
            w = angle * _random_axis(rng)
        cameras[c, 0:3] = w
        cameras[c, 3:5] = rng.uniform(-0.5, 0.5, size=2)
        cameras[c, 5] = rng.uniform(-1.0, 1.0)
        cameras[c, 6] = rng.uniform(300.0, 900.0)
        cameras[c, 7] = rng.uniform(-0.3, 0.3)
        cameras[c, 8] = rng.uniform(-0.1, 0.1)
    # choose the camera-frame coordinates of each point in camera 0, then map back to world
    depth = rng.uniform(2.0, 6.0, size=n_points)
    p = rng.uniform(-0.4, 0.4, size=(n_points, 2))
    P = np.column_stack([p[:, 0] * depth, p[:, 1] * depth, -depth])
    R0 = Rotation.from_rotvec(cameras[0, 0:3]).as_matrix()
    points = (P - cameras[0, 3:6]) @ R0  # R0^T (P - t)
    # the other cameras: shift the translation so that every point stays well in front
    for c in range(1, n_cameras):
        Q = Rotation.from_rotvec(cameras[c, 0:3]).apply(points)
        cameras[c, 5] = -6.0 - Q[:, 2].max()
        cameras[c, 3:5] = -Q[:, 0:2].mean(axis=0)
    cam_idx, pt_idx = np.meshgrid(np.arange(n_cameras), np.arange(n_points), indexing="ij")
    index = np.column_stack([cam_idx.ravel(), pt_idx.ravel()]).astype(np.int64)
    pred = _reference_predictions(cameras, points, index[:, 0], index[:, 1])
    data = pred + rng.normal(scale=noise, size=pred.shape)
    return cameras, points, index, data


def _reference_predictions(cameras, points, camera_index, point_index):
    """Independent numpy implementation of the Snavely projection (scipy for the rotation)."""
    cam = cameras[camera_index]
    P = Rotation.from_rotvec(cam[:, 0:3]).apply(points[point_index]) + cam[:, 3:6]
    p = -P[:, 0:2] / P[:, 2:3]
    r2 = np.sum(p * p, axis=1)
    d = 1.0 + cam[:, 7] * r2 + cam[:, 8] * r2 * r2
    return (cam[:, 6] * d)[:, None] * p


def _residuals(cameras, points, index, data):
    out = np.empty((index.shape[0], 2))
    BAL_REPROJECTION.residual_kernel((cameras, points), index, data, out)
    return out


def _jacobians(cameras, points, index, data):
    n = index.shape[0]
    res = np.empty((n, 2))
    jc = np.empty((n, 2, 9))
    jp = np.empty((n, 2, 3))
    bal_reprojection_jacobians((cameras, points), index, data, res, (jc, jp))
    return res, jc, jp


def _fd_blocks(cameras, points, index, data):
    """Central differences (4th-order stencil) of the residual kernel, per observation:
    camera block (n, 2, 9) and point block (n, 2, 3)."""
    n = index.shape[0]
    fd_cam = np.zeros((n, 2, 9))
    fd_pt = np.zeros((n, 2, 3))
    for arr, block, col in ((cameras, fd_cam, 0), (points, fd_pt, 1)):
        for row in range(arr.shape[0]):
            rows = np.flatnonzero(index[:, col] == row)
            for j in range(arr.shape[1]):
                h = 1e-3 * max(1.0, abs(arr[row, j]))
                vals = []
                for step in (2.0, 1.0, -1.0, -2.0):
                    pert = arr.copy()
                    pert[row, j] = arr[row, j] + step * h
                    args = (pert, points) if col == 0 else (cameras, pert)
                    vals.append(_residuals(*args, index, data)[rows])
                block[rows, :, j] = (-vals[0] + 8.0 * vals[1] - 8.0 * vals[2] + vals[3]) / (12.0 * h)
    return fd_cam, fd_pt


def _check_block(analytic, fd, what):
    """Relative error of every block (Frobenius) and of every column (relative to its own size,
    floored at 1e-7 of the block: finite differences cannot resolve much smaller columns) must
    be below 1e-6."""
    for i in range(analytic.shape[0]):
        a, f = analytic[i], fd[i]
        block_norm = np.linalg.norm(f)
        assert block_norm > 0
        rel = np.linalg.norm(a - f) / block_norm
        assert rel < 1e-6, f"{what} block of observation {i}: relative error {rel:.3e}"
        col_err = np.linalg.norm(a - f, axis=0)
        col_scale = np.maximum(np.linalg.norm(f, axis=0), 1e-7 * block_norm)
        worst = int(np.argmax(col_err / col_scale))
        assert col_err[worst] / col_scale[worst] < 1e-6, (
            f"{what} block of observation {i}, column {worst}: relative error "
            f"{col_err[worst] / col_scale[worst]:.3e}\nanalytic {a[:, worst]}\nfd       {f[:, worst]}")


@pytest.mark.parametrize("label,angle", ROTATION_CASES, ids=CASE_IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_jacobian_matches_finite_differences(label, angle, seed):
    cameras, points, index, data = _make_problem(angle, seed=1000 * seed + CASE_IDS.index(label))
    res, jc, jp = _jacobians(cameras, points, index, data)
    np.testing.assert_allclose(res, _residuals(cameras, points, index, data), rtol=1e-14, atol=1e-12)
    fd_cam, fd_pt = _fd_blocks(cameras, points, index, data)
    _check_block(jc, fd_cam, "camera")
    _check_block(jp, fd_pt, "point")


@pytest.mark.parametrize("label,angle", ROTATION_CASES, ids=CASE_IDS)
def test_residual_matches_numpy_reference(label, angle):
    cameras, points, index, data = _make_problem(angle, seed=7 + CASE_IDS.index(label), n_cameras=5, n_points=20)
    res = _residuals(cameras, points, index, data)
    pred_ref = _reference_predictions(cameras, points, index[:, 0], index[:, 1])
    ref = pred_ref - data
    assert np.linalg.norm(res - ref) / np.linalg.norm(ref) < 1e-12
    np.testing.assert_allclose(res, ref, rtol=1e-12, atol=1e-12 * np.abs(pred_ref).max())
    pred = project(cameras, points, index[:, 0].copy(), index[:, 1].copy())
    np.testing.assert_allclose(pred, pred_ref, rtol=1e-12, atol=0)


def test_rotation_helpers_match_scipy():
    rng = np.random.default_rng(42)
    angles = np.array([0.0, 1e-12, 1e-9, 1e-5, 0.1, 0.5, 2.0, np.pi - 1e-6, np.pi, 4.0, 6.2])
    w = np.array([a * _random_axis(rng) for a in angles])
    R_ref = Rotation.from_rotvec(w).as_matrix()
    np.testing.assert_allclose(rotation_matrices(w), R_ref, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(rotation_matrices(np.zeros((1, 3)))[0], np.eye(3))
    x = rng.normal(size=(len(angles), 3))
    np.testing.assert_allclose(angle_axis_rotate_point(w, x), np.einsum("nij,nj->ni", R_ref, x),
                               rtol=0, atol=1e-14 * np.abs(x).max())
    # the left Jacobian: identity at zero, J_l(w) w = w, and R(w + d) ~ Exp(J_l d) R(w)
    J = left_jacobians(w)
    np.testing.assert_array_equal(left_jacobians(np.zeros((1, 3)))[0], np.eye(3))
    np.testing.assert_allclose(np.einsum("nij,nj->ni", J, w), w, rtol=0, atol=1e-14)
    for k in range(len(angles)):
        for j in range(3):
            h = 1e-6
            dw = np.zeros(3)
            dw[j] = h
            dR = (Rotation.from_rotvec(w[k] + dw).as_matrix() - Rotation.from_rotvec(w[k] - dw).as_matrix()) / (2 * h)
            omega = dR @ R_ref[k].T  # = [J_l e_j]_x
            np.testing.assert_allclose([omega[2, 1], omega[0, 2], omega[1, 0]], J[k][:, j], atol=1e-8)


def test_residual_type():
    assert BAL_REPROJECTION.name == "bal_reprojection"
    assert BAL_REPROJECTION.residual_size == 2
    assert BAL_REPROJECTION.block_sizes == (9, 3)
    assert BAL_REPROJECTION.data_size == 2
    assert BAL_REPROJECTION.has_analytic_jacobian
    assert BAL_REPROJECTION_HANDWRITTEN.jacobian_kernel is bal_reprojection_jacobians
    assert BAL_REPROJECTION_HANDWRITTEN.residual_kernel is BAL_REPROJECTION.residual_kernel


# --- the real BAL files -------------------------------------------------------------------------

def _bal_file(relpath):
    """Path of a BAL file under SPARSELM_DATA; skips (or fails with SPARSELM_REQUIRE_DATA=1)."""
    require = os.environ.get("SPARSELM_REQUIRE_DATA", "") == "1"
    root = os.environ.get("SPARSELM_DATA")
    if not root:
        msg = "SPARSELM_DATA is not set"
    else:
        path = Path(root) / relpath
        if path.is_file():
            return path
        msg = f"{path} not found"
    if require:
        pytest.fail(msg + " (SPARSELM_REQUIRE_DATA=1)")
    pytest.skip(msg)


def _read_bal(path):
    """Tiny BAL reader: (cameras, points, camera_index, point_index, observations)."""
    with bz2.open(path, "rt") as fh:
        tokens = fh.read().split()
    nc, npt, nobs = (int(t) for t in tokens[:3])
    start = 3
    obs = np.array(tokens[start:start + 4 * nobs], dtype=np.float64).reshape(nobs, 4)
    start += 4 * nobs
    cameras = np.array(tokens[start:start + 9 * nc], dtype=np.float64).reshape(nc, 9)
    start += 9 * nc
    points = np.array(tokens[start:start + 3 * npt], dtype=np.float64).reshape(npt, 3)
    assert start + 3 * npt == len(tokens)
    return cameras, points, obs[:, 0].astype(np.int64), obs[:, 1].astype(np.int64), obs[:, 2:4].copy()


@pytest.mark.bal
@pytest.mark.parametrize("relpath,n_obs,expected_cost", [
    ("dubrovnik/problem-16-22106-pre.txt.bz2", 83718, 4.185660e+06),
    ("ladybug/problem-49-7776-pre.txt.bz2", 31843, 8.509125e+05),
])
def test_initial_cost_of_real_problems(relpath, n_obs, expected_cost):
    cameras, points, camera_index, point_index, observations = _read_bal(_bal_file(relpath))
    assert len(observations) == n_obs
    index = np.column_stack([camera_index, point_index])
    res = _residuals(cameras, points, index, observations)
    cost = 0.5 * float(np.sum(res * res))
    assert f"{cost:.6e}" == f"{expected_cost:.6e}", cost
    # the generated Jacobian kernel gives the same residuals bitwise, the hand-fused one to round-off,
    # and predictions agree with the numpy reference
    res_g = np.empty_like(res)
    BAL_REPROJECTION.jacobian_kernel((cameras, points), index, observations, res_g,
                                     (np.empty((n_obs, 2, 9)), np.empty((n_obs, 2, 3))))
    np.testing.assert_array_equal(res_g, res)
    res_j, _, _ = _jacobians(cameras, points, index, observations)
    np.testing.assert_allclose(res_j, res, rtol=1e-11, atol=1e-9)
    pred_ref = _reference_predictions(cameras, points, camera_index, point_index)
    np.testing.assert_allclose(res + observations, pred_ref, rtol=1e-11, atol=1e-9)


@pytest.mark.bal
def test_project_gradient_checker_on_real_data():
    """sparselm.residuals.check_jacobian agrees on the first 2000 observations of problem-16-22106."""
    from sparselm.residuals import check_jacobian

    cameras, points, camera_index, point_index, observations = _read_bal(
        _bal_file("dubrovnik/problem-16-22106-pre.txt.bz2"))
    index = np.column_stack([camera_index, point_index])[:2000]
    result = check_jacobian(BAL_REPROJECTION, (cameras, points), index, observations[:2000])
    assert result.ok, str(result)
