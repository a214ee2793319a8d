"""New residual types written on the @sparselm.residual contract, each checked against central
differences and solved to its ground truth on seeded synthetic data: a pinhole camera with
radial-tangential distortion and a rotation-vector pose, a 2-D range-bearing observation, a
calibration board seen by one camera, and a prior weighted by a full covariance."""
from __future__ import annotations

import numpy as np
import pytest

import sparselm
from sparselm import math as sm
from sparselm.residuals.geometry import angle_axis_to_matrix, matrix_times


def _rotation(pose):
    return angle_axis_to_matrix(pose[0:3])


def _radtan(intrinsics, x, y):
    """Pixel of the normalised point (x, y): fx, fy, cx, cy, k1, k2, p1, p2 (OpenCV's model)."""
    fx, fy, cx, cy, k1, k2, p1, p2 = (intrinsics[i] for i in range(8))
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + k2 * r2)
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return fx * xd + cx, fy * yd + cy


@sparselm.residual(residual_size=2, block_sizes=(6, 3, 8), data_size=2, name="pinhole_radtan",
                   precompute={"R": ("pose", _rotation)})
def pinhole_radtan(pose, point, intrinsics, uv, R):
    """pose = (rotation vector, translation) world -> camera; point in world; pixel residual."""
    p = [q + pose[3 + k] for k, q in enumerate(matrix_times(R, point))]
    u, v = _radtan(intrinsics, p[0] / p[2], p[1] / p[2])
    return [u - uv[0], v - uv[1]]


@sparselm.residual(residual_size=2, block_sizes=(3, 2), data_size=2, name="range_bearing")
def range_bearing(pose, landmark, measured):
    """pose (x, y, theta); landmark (x, y); measured (range, bearing relative to the heading)."""
    dx = landmark[0] - pose[0]
    dy = landmark[1] - pose[1]
    error = sm.atan2(dy, dx) - pose[2] - measured[1]
    return [sm.sqrt(dx * dx + dy * dy) - measured[0], sm.atan2(sm.sin(error), sm.cos(error))]


@sparselm.residual(residual_size=2, block_sizes=(6, 6), data_size=4, name="calibration_board")
def calibration_board(intrinsics, pose, corner):
    """intrinsics (fx, fy, cx, cy, k1, k2); board pose board -> camera; corner (X, Y on the board, u, v)."""
    R = angle_axis_to_matrix(pose[0:3])
    p = [R[3 * k] * corner[0] + R[3 * k + 1] * corner[1] + pose[3 + k] for k in range(3)]
    x, y = p[0] / p[2], p[1] / p[2]
    r2 = x * x + y * y
    radial = 1.0 + r2 * (intrinsics[4] + intrinsics[5] * r2)
    return [intrinsics[0] * radial * x + intrinsics[2] - corner[2],
            intrinsics[1] * radial * y + intrinsics[3] - corner[3]]


@sparselm.residual(residual_size=3, block_sizes=(3,), data_size=3, name="prior_3")
def prior_3(x, mean):
    """x - mean (the covariance is the residual group's weighting)."""
    return [x[k] - mean[k] for k in range(3)]


TIGHT = dict(max_iterations=200, function_tolerance=1e-16, gradient_tolerance=1e-16, parameter_tolerance=1e-16)


def _project_numpy(pose, point, intr):
    """Independent numpy projection for the synthetic data (scipy's rotation-vector convention)."""
    from scipy.spatial.transform import Rotation

    p = Rotation.from_rotvec(pose[:3]).apply(point) + pose[3:]
    x, y = p[0] / p[2], p[1] / p[2]
    fx, fy, cx, cy, k1, k2, p1, p2 = intr
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.array([fx * xd + cx, fy * yd + cy])


def test_pinhole_radtan_solves_to_ground_truth(rng):
    intr = np.array([[520.0, 515.0, 320.0, 240.0, -0.2, 0.05, 1e-3, -5e-4]])
    n_cameras, n_points = 6, 40
    poses = np.zeros((n_cameras, 6))
    poses[:, :3] = rng.normal(size=(n_cameras, 3)) * 0.1
    poses[:, 3:] = rng.normal(size=(n_cameras, 3)) * 0.3
    points = rng.uniform([-1, -1, 4], [1, 1, 6], size=(n_points, 3))
    ci, pi = np.divmod(np.arange(n_cameras * n_points), n_points)
    uv = np.array([_project_numpy(poses[c], points[p], intr[0]) for c, p in zip(ci, pi)])
    index = np.column_stack([ci, pi, np.zeros_like(ci)])
    assert sparselm.check_jacobian(pinhole_radtan, (poses, points, intr), index, uv, tolerance=1e-6).ok

    problem = sparselm.Problem()
    problem.add_parameter_group("poses", poses + rng.normal(size=poses.shape) * 0.01, constant=[0, 1])
    problem.parameter_groups["poses"].values[:2] = poses[:2]
    problem.add_parameter_group("points", points + rng.normal(size=points.shape) * 0.05, eliminate=True)
    problem.add_parameter_group("intrinsics", intr, constant=[0])
    problem.add_residual_group("pixels", pinhole_radtan, [("poses", ci), ("points", pi), ("intrinsics", 0 * ci)], uv)
    summary = sparselm.solve(problem, **TIGHT)
    assert summary.final_cost < 1e-12, summary.message
    np.testing.assert_allclose(problem.parameter_groups["poses"].values, poses, atol=1e-7)
    np.testing.assert_allclose(problem.parameter_groups["points"].values, points, atol=1e-7)


def test_range_bearing_solves_to_ground_truth(rng):
    poses = np.column_stack([rng.uniform(-5, 5, 5), rng.uniform(-5, 5, 5), rng.uniform(-np.pi, np.pi, 5)])
    landmarks = rng.uniform(-10, 10, size=(8, 2))
    pi, li = np.divmod(np.arange(40), 8)
    d = landmarks[li] - poses[pi, :2]
    bearing = np.angle(np.exp(1j * (np.arctan2(d[:, 1], d[:, 0]) - poses[pi, 2])))
    measured = np.column_stack([np.hypot(d[:, 0], d[:, 1]), bearing])
    assert sparselm.check_jacobian(range_bearing, (poses, landmarks), np.column_stack([pi, li]), measured).ok

    problem = sparselm.Problem()
    start = poses + rng.normal(size=poses.shape) * 0.05
    start[0] = poses[0]
    problem.add_parameter_group("poses", start, constant=[0])
    problem.add_parameter_group("landmarks", landmarks + rng.normal(size=landmarks.shape) * 0.2)
    problem.add_residual_group("rb", range_bearing, [("poses", pi), ("landmarks", li)], measured,
                               sigma=np.where(np.arange(40) % 2 == 0, 0.1, 0.2))
    summary = sparselm.solve(problem, **TIGHT)
    assert summary.final_cost < 1e-12, summary.message
    got = problem.parameter_groups["poses"].values
    np.testing.assert_allclose(got[:, :2], poses[:, :2], atol=1e-8)
    np.testing.assert_allclose(np.angle(np.exp(1j * (got[:, 2] - poses[:, 2]))), 0.0, atol=1e-9)
    np.testing.assert_allclose(problem.parameter_groups["landmarks"].values, landmarks, atol=1e-8)


def test_calibration_board_solves_to_ground_truth(rng):
    intr = np.array([600.0, 590.0, 330.0, 245.0, -0.15, 0.03])
    gx, gy = np.meshgrid(np.arange(7) * 0.05, np.arange(6) * 0.05)
    board = np.column_stack([gx.ravel(), gy.ravel()])
    views = np.zeros((5, 6))
    views[:, :3] = rng.normal(size=(5, 3)) * 0.3
    views[:, 3:] = [-0.15, -0.12, 0.6] + rng.normal(size=(5, 3)) * 0.05
    vi, ki = np.divmod(np.arange(5 * len(board)), len(board))
    full = np.concatenate([intr[:4], intr[4:], [0.0, 0.0]])
    uv = np.array([_project_numpy(views[v], np.append(board[k], 0.0), full) for v, k in zip(vi, ki)])
    data = np.column_stack([board[ki], uv])
    index = np.column_stack([0 * vi, vi])
    assert sparselm.check_jacobian(calibration_board, (intr[None], views), index, data, tolerance=1e-6).ok

    problem = sparselm.Problem()
    problem.add_parameter_group("intrinsics", (intr * [1.05, 0.96, 1.02, 0.98, 0.0, 0.0])[None])
    problem.add_parameter_group("views", views + rng.normal(size=views.shape) * 0.01)
    problem.add_residual_group("corners", calibration_board, [("intrinsics", 0 * vi), ("views", vi)], data)
    summary = sparselm.solve(problem, **TIGHT)
    assert summary.final_cost < 1e-12, summary.message
    np.testing.assert_allclose(problem.parameter_groups["intrinsics"].values[0], intr, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(problem.parameter_groups["views"].values, views, atol=1e-9)


def test_prior_with_full_covariance_gives_the_weighted_mean(rng):
    a, b = rng.normal(size=(2, 3, 3))
    cov = np.stack([a @ a.T + 0.5 * np.eye(3), b @ b.T + 0.5 * np.eye(3)])
    means = rng.normal(size=(2, 3))
    assert sparselm.check_jacobian(prior_3, (rng.normal(size=(1, 3)),), np.zeros((2, 1), np.int64), means).ok
    problem = sparselm.Problem()
    problem.add_parameter_group("x", np.zeros((1, 3)))
    problem.add_residual_group("priors", prior_3, [("x", [0, 0])], means, covariance=cov)
    summary = sparselm.solve(problem, **TIGHT)
    info = np.linalg.inv(cov)
    expected = np.linalg.solve(info.sum(axis=0), np.einsum("nij,nj->i", info, means))
    # the solver stops when the cost no longer changes in float64: x is then within ~sqrt(eps) of the optimum
    np.testing.assert_allclose(problem.parameter_groups["x"].values[0], expected, rtol=1e-7, atol=1e-9)
    r = means - expected
    assert summary.final_cost == pytest.approx(0.5 * np.einsum("ni,nij,nj->", r, info, r), rel=1e-10)
