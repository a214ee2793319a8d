"""Seeded synthetic bundle-adjustment problems in BAL conventions, with their ground truth.

Scene: the cameras stand on a circle of radius ``CIRCLE_RADIUS`` (world units) around the origin, at
slightly different heights, each looking at the origin. Every point is seen by a run of consecutive
cameras along the circle (so the camera graph is banded, as in real sequences) and lies inside the
circle, within ``0.43 * CIRCLE_RADIUS`` of the origin, on the side of the cameras that see it. A
camera at distance ``d >= CIRCLE_RADIUS`` from the origin sees such a point at depth ``>= d - |X| > 0``,
so every point is in front of every camera (BAL: camera-frame ``P_z < 0``).

BAL projection: ``P = R(w) X + t``, ``p = -P[:2] / P[2]``, ``r = 1 + k1 |p|^2 + k2 |p|^4``,
``pixel = f r p``, with ``R(w)`` the rotation of Rodrigues vector ``w`` (angle ``|w|`` in radians).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.spatial.transform import Rotation

from sparselm.bal.io import BALProblem

CIRCLE_RADIUS = 10.0
_POINT_RADIUS = (0.05, 0.4)  # horizontal distance of points from the origin, in circle radii
_POINT_HEIGHT = 0.15  # |height| of points, in circle radii
_CAMERA_HEIGHT = 0.05  # standard deviation of camera heights, in circle radii
_FOCAL = (500.0, 1000.0)  # px
_K1, _K2 = 0.05, 0.01  # standard deviations of the radial distortion coefficients

DEFAULT_PROBLEM = dict(n_cameras=16, n_points=2000, observations_per_point=4.0, seed=0)


class SyntheticProblem(NamedTuple):
    """A synthetic problem: ``initial`` (perturbed parameters, noisy observations) to be solved, and
    ``ground_truth`` (the exact parameters, the same observations)."""

    initial: BALProblem
    ground_truth: BALProblem


def world_to_camera(cameras: np.ndarray, points: np.ndarray, camera_index: np.ndarray,
                    point_index: np.ndarray) -> np.ndarray:
    """Camera-frame coordinates ``P = R(w) X + t`` (n_obs, 3) of each observation's point."""
    w = cameras[camera_index, :3]
    x = points[point_index]
    theta = np.linalg.norm(w, axis=1, keepdims=True)
    small = theta[:, 0] < 1e-12
    k = np.divide(w, theta, out=np.zeros_like(w), where=~small[:, None])
    cos, sin = np.cos(theta), np.sin(theta)
    rotated = x * cos + np.cross(k, x) * sin + k * (np.sum(k * x, axis=1, keepdims=True) * (1.0 - cos))
    rotated[small] = x[small] + np.cross(w[small], x[small])  # first order near the identity
    return rotated + cameras[camera_index, 3:6]


def project(cameras: np.ndarray, points: np.ndarray, camera_index: np.ndarray,
            point_index: np.ndarray) -> np.ndarray:
    """Predicted pixel coordinates (n_obs, 2) of each observation under the BAL camera model."""
    p_cam = world_to_camera(cameras, points, camera_index, point_index)
    p = -p_cam[:, :2] / p_cam[:, 2:3]
    r2 = np.sum(p * p, axis=1, keepdims=True)
    intrinsics = cameras[camera_index, 6:9]
    f, k1, k2 = intrinsics[:, 0:1], intrinsics[:, 1:2], intrinsics[:, 2:3]
    return f * (1.0 + r2 * (k1 + k2 * r2)) * p


def synthetic_problem(n_cameras: int, n_points: int, observations_per_point: float = 4.0, seed: int = 0,
                      pixel_noise: float = 1.0, param_noise: float = 0.01) -> SyntheticProblem:
    """A random but reproducible (``seed``) bundle-adjustment problem and its ground truth.

    Each point is seen by ``min(2, n_cameras) + Poisson(observations_per_point - min(2, n_cameras))``
    consecutive cameras (at most ``n_cameras``), so there are about ``observations_per_point *
    n_points`` observations. Focal lengths are uniform in [500, 1000] px, k1 ~ N(0, 0.05), k2 ~ N(0,
    0.01). Observations are the ground-truth projections plus N(0, pixel_noise^2) px noise. The
    initial parameters are the ground truth perturbed with relative noise ``param_noise``: rotation
    vectors by N(0, param_noise^2) rad, translations and points by N(0, (param_noise *
    CIRCLE_RADIUS)^2) world units, focal lengths by a factor 1 + N(0, param_noise^2); k1, k2 are left
    at the ground truth.
    """
    if n_cameras < 1 or n_points < 1:
        raise ValueError(f"need at least one camera and one point, got {n_cameras} and {n_points}")
    if observations_per_point < 1:
        raise ValueError(f"observations_per_point must be >= 1, got {observations_per_point}")
    rng = np.random.default_rng(seed)
    cameras = _cameras(n_cameras, rng)

    min_track = min(2, n_cameras)
    track = min_track + rng.poisson(max(observations_per_point - min_track, 0.0), n_points)
    np.minimum(track, n_cameras, out=track)
    first_camera = rng.integers(0, n_cameras, n_points)
    # a point lies in the sector of the cameras that see it, inside the circle
    azimuth = 2 * np.pi * (first_camera + (track - 1) / 2 + rng.uniform(-0.5, 0.5, n_points)) / n_cameras
    radius = CIRCLE_RADIUS * rng.uniform(*_POINT_RADIUS, n_points)
    points = np.column_stack([radius * np.cos(azimuth), radius * np.sin(azimuth),
                              CIRCLE_RADIUS * rng.uniform(-_POINT_HEIGHT, _POINT_HEIGHT, n_points)])

    point_index = np.repeat(np.arange(n_points, dtype=np.int64), track)
    track_start = np.cumsum(track) - track
    position_in_track = np.arange(point_index.size, dtype=np.int64) - np.repeat(track_start, track)
    camera_index = (first_camera[point_index] + position_in_track) % n_cameras

    observations = project(cameras, points, camera_index, point_index)
    observations += rng.normal(0.0, pixel_noise, observations.shape)

    initial_cameras = cameras.copy()
    initial_cameras[:, 0:3] += rng.normal(0.0, param_noise, (n_cameras, 3))
    initial_cameras[:, 3:6] += rng.normal(0.0, param_noise * CIRCLE_RADIUS, (n_cameras, 3))
    initial_cameras[:, 6] *= 1.0 + rng.normal(0.0, param_noise, n_cameras)
    initial_points = points + rng.normal(0.0, param_noise * CIRCLE_RADIUS, points.shape)

    source = (f"synthetic(n_cameras={n_cameras}, n_points={n_points}, observations_per_point="
              f"{observations_per_point}, seed={seed}, pixel_noise={pixel_noise}, param_noise={param_noise})")
    initial = BALProblem(initial_cameras, initial_points, camera_index, point_index, observations, source)
    ground_truth = BALProblem(cameras, points, camera_index.copy(), point_index.copy(), observations.copy(),
                              source + " ground truth")
    return SyntheticProblem(initial, ground_truth)


def default_problem() -> BALProblem:
    """The fixed small problem solved when no file is given: 16 cameras, 2000 points, about 8000
    observations (``synthetic_problem(**DEFAULT_PROBLEM).initial``)."""
    return synthetic_problem(**DEFAULT_PROBLEM).initial


def _cameras(n_cameras: int, rng: np.random.Generator) -> np.ndarray:
    """(n_cameras, 9) BAL cameras on the circle, looking at the origin, with random intrinsics."""
    angle = 2 * np.pi * np.arange(n_cameras) / n_cameras
    centers = np.column_stack([CIRCLE_RADIUS * np.cos(angle), CIRCLE_RADIUS * np.sin(angle),
                               rng.normal(0.0, _CAMERA_HEIGHT * CIRCLE_RADIUS, n_cameras)])
    forward = -centers / np.linalg.norm(centers, axis=1, keepdims=True)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    up = np.cross(right, forward)
    # rows: camera x (right), y (up), z (backwards: BAL cameras look down -z)
    rotation = np.stack([right, up, -forward], axis=1)
    cameras = np.empty((n_cameras, 9))
    cameras[:, 0:3] = Rotation.from_matrix(rotation).as_rotvec()
    cameras[:, 3:6] = -np.einsum("nij,nj->ni", rotation, centers)
    cameras[:, 6] = rng.uniform(*_FOCAL, n_cameras)
    cameras[:, 7] = rng.normal(0.0, _K1, n_cameras)
    cameras[:, 8] = rng.normal(0.0, _K2, n_cameras)
    return cameras
