"""Seeded synthetic COLMAP models with ground truth, for every camera model sparselm projects.

Scene: ``n_images`` cameras on a circle of radius 10 (world units) around the origin, at heights
drawn with standard deviation 2, each looking at the origin (COLMAP frame: x right, y down, z
forward); ``n_points`` points uniformly in a box of half-widths (3, 2.5, 3) around the origin, so
every point is 7 or more units in front of every camera. A point is observed by every camera whose
image (640 x 480, COLMAP pixel convention) it falls into, with Gaussian pixel noise ``noise_px``;
a fraction ``outlier_fraction`` of observations is replaced by uniformly random pixels. Points seen
fewer than twice are dropped. Images share ``n_cameras`` camera ids (image i uses camera i mod
n_cameras), each with plausible parameters for its model (focal 500-560 px, principal point near the
centre, distortion of a few pixels at the corners).

The model to solve (``initial``) has the true observations but perturbed unknowns: rotations by
``pose_noise`` rad, centres by ``10 * pose_noise``, points by ``point_noise``, focal lengths by 2 %,
distortion set to zero; principal points are true (COLMAP does not refine them by default).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.spatial.transform import Rotation

from sparselm.colmap.camera_models import CAMERA_MODELS, camera_model_by_name
from sparselm.colmap.cameras import img_from_cam
from sparselm.colmap.model import ColmapModel
from sparselm.colmap.rotation import quaternion_from_rotvec

__all__ = ["SyntheticModel", "synthetic_model", "true_camera_params", "WIDTH", "HEIGHT"]

WIDTH, HEIGHT = 640, 480
#: distortion coefficients per model (extra parameters in COLMAP's order), a few px at the corners.
_EXTRA = {
    "SIMPLE_RADIAL": [-0.08], "RADIAL": [-0.08, 0.02], "OPENCV": [-0.08, 0.02, 0.002, -0.001],
    "OPENCV_FISHEYE": [0.05, -0.02, 0.01, -0.002], "FULL_OPENCV": [-0.08, 0.02, 0.002, -0.001, 0.01, 0.0, 0.0, 0.0],
    "SIMPLE_RADIAL_FISHEYE": [0.05], "RADIAL_FISHEYE": [0.05, -0.02],
    "THIN_PRISM_FISHEYE": [0.05, -0.02, 0.002, -0.001, 0.01, -0.002, 0.001, -0.001],
}


class SyntheticModel(NamedTuple):
    """``initial``: the model to adjust (perturbed unknowns); ``ground_truth``: the same model with the
    true poses, intrinsics and points; ``outliers``: (n_observations,) bool, which observations (in
    the order of :meth:`ColmapModel.observations`) were replaced by random pixels."""

    initial: ColmapModel
    ground_truth: ColmapModel
    outliers: np.ndarray


def true_camera_params(model_name: str, rng: np.random.Generator) -> np.ndarray:
    """Plausible parameters of a ``model_name`` camera for a 640 x 480 image."""
    spec = camera_model_by_name(model_name)
    params = np.zeros(spec.n_params)
    params[list(spec.focal_indices)] = rng.uniform(500.0, 560.0, spec.n_focal)
    params[list(spec.principal_point_indices)] = (WIDTH / 2 + rng.normal(0, 4), HEIGHT / 2 + rng.normal(0, 4))
    params[list(spec.extra_indices)] = _EXTRA.get(model_name, [])
    return params


def _look_at(centres: np.ndarray) -> np.ndarray:
    """cam_from_world rotations (n, 3, 3) of cameras at ``centres`` looking at the origin, y down."""
    z = -centres / np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.cross(np.array([0.0, 1.0, 0.0]), z)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def synthetic_model(model_name: str = "SIMPLE_RADIAL", *, n_images: int = 12, n_cameras: int = 2,
                    n_points: int = 400, noise_px: float = 0.5, outlier_fraction: float = 0.0,
                    pose_noise: float = 0.01, point_noise: float = 0.05, seed: int = 0) -> SyntheticModel:
    """A synthetic model of camera model ``model_name`` (see the module docstring); deterministic in ``seed``."""
    spec = camera_model_by_name(model_name)
    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * np.pi, n_images, endpoint=False)
    centres = np.c_[10 * np.cos(angles), rng.normal(0, 2.0, n_images), 10 * np.sin(angles)]
    rot = _look_at(centres)
    tvecs = -np.einsum("nij,nj->ni", rot, centres)
    points = rng.uniform(-1, 1, (n_points, 3)) * [3.0, 2.5, 3.0]
    params = [true_camera_params(model_name, rng) for _ in range(n_cameras)]
    camera_of_image = np.arange(n_images) % n_cameras
    obs_image, obs_point, obs_xy = [], [], []
    for i in range(n_images):
        in_cam = points @ rot[i].T + tvecs[i]
        pixels = img_from_cam(spec.model_id, params[camera_of_image[i]], in_cam)
        seen = np.flatnonzero((pixels[:, 0] > 0) & (pixels[:, 0] < WIDTH) & (pixels[:, 1] > 0) & (pixels[:, 1] < HEIGHT))
        obs_image.append(np.full(len(seen), i)), obs_point.append(seen), obs_xy.append(pixels[seen])
    obs_image, obs_point, obs_xy = (np.concatenate(a) for a in (obs_image, obs_point, obs_xy))
    obs_xy = obs_xy + rng.normal(0, noise_px, obs_xy.shape)
    outliers = rng.random(len(obs_xy)) < outlier_fraction
    obs_xy[outliers] = rng.uniform([0, 0], [WIDTH, HEIGHT], (int(outliers.sum()), 2))
    counts = np.bincount(obs_point, minlength=n_points)
    keep_point = counts >= 2
    keep = keep_point[obs_point]
    obs_image, obs_point, obs_xy, outliers = obs_image[keep], obs_point[keep], obs_xy[keep], outliers[keep]
    new_id = np.cumsum(keep_point) - 1
    obs_point = new_id[obs_point]
    points = points[keep_point]
    truth = _assemble(spec, np.concatenate(params), camera_of_image, rot, tvecs, points, obs_image, obs_point,
                      obs_xy, n_cameras)
    order = np.lexsort((obs_image, obs_point))  # observations in track order, as ColmapModel.observations gives
    initial = _perturb(truth, spec, rng, pose_noise, point_noise)
    return SyntheticModel(initial, truth, outliers[order])


def _assemble(spec, params, camera_of_image, rot, tvecs, points, obs_image, obs_point, obs_xy, n_cameras):
    """A ColmapModel from arrays; 2-D points per image in observation order, tracks sorted by image."""
    n_images, n_points = len(rot), len(points)
    order_img = np.lexsort((obs_point, obs_image))
    points2D_offsets = np.r_[0, np.cumsum(np.bincount(obs_image, minlength=n_images))]
    point2D_idx = np.empty(len(obs_image), np.int64)
    point2D_idx[order_img] = np.arange(len(obs_image)) - points2D_offsets[obs_image[order_img]]
    order_pt = np.lexsort((obs_image, obs_point))
    return ColmapModel(
        camera_ids=np.arange(1, n_cameras + 1), camera_model_ids=np.full(n_cameras, spec.model_id),
        camera_widths=np.full(n_cameras, WIDTH), camera_heights=np.full(n_cameras, HEIGHT),
        camera_params=params.astype(np.float64), camera_param_offsets=np.arange(n_cameras + 1) * spec.n_params,
        image_ids=np.arange(1, n_images + 1), image_camera_ids=camera_of_image + 1,
        image_qvecs=quaternion_from_rotvec(Rotation.from_matrix(rot).as_rotvec()), image_tvecs=tvecs.copy(),
        image_names=[f"image{i:04d}.png" for i in range(n_images)], points2D_xy=obs_xy[order_img].copy(),
        points2D_point3D_ids=obs_point[order_img] + 1, points2D_offsets=points2D_offsets,
        point3D_ids=np.arange(1, n_points + 1), points_xyz=points.copy(),
        points_rgb=np.full((n_points, 3), 128, np.uint8), points_error=np.zeros(n_points),
        track_image_ids=obs_image[order_pt] + 1, track_point2D_idx=point2D_idx[order_pt],
        track_offsets=np.r_[0, np.cumsum(np.bincount(obs_point, minlength=n_points))], source="synthetic")


def _perturb(truth: ColmapModel, spec, rng, pose_noise, point_noise) -> ColmapModel:
    rot = Rotation.from_quat(truth.image_qvecs[:, [1, 2, 3, 0]])
    delta = Rotation.from_rotvec(rng.normal(0, pose_noise, (truth.n_images, 3)))
    new_rot = delta * rot
    centres = -rot.inv().apply(truth.image_tvecs) + rng.normal(0, 10 * pose_noise, (truth.n_images, 3))
    params = truth.camera_params.reshape(truth.n_cameras, spec.n_params).copy()
    params[:, list(spec.focal_indices)] *= 1 + rng.normal(0, 0.02, (truth.n_cameras, spec.n_focal))
    params[:, list(spec.extra_indices)] = 0.0
    return truth.with_values(camera_params=params.ravel(),
                             image_qvecs=quaternion_from_rotvec(new_rot.as_rotvec(), like=truth.image_qvecs),
                             image_tvecs=-new_rot.apply(centres),
                             points_xyz=truth.points_xyz + rng.normal(0, point_noise, truth.points_xyz.shape),
                             source=f"synthetic {spec.name}")
