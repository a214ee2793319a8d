"""Bundle adjustment of a COLMAP model: the sparselm Problem, its options and the results back.

Parameterisation: each image's pose is COLMAP's ``cam_from_world``, stored as a unit quaternion and a
translation ``(qx, qy, qz, qw, tx, ty, tz)`` on the manifold SO(3) x R^3 (rotation perturbed on the
right, ``R <- R Exp(d_w)``, renormalised after every step; translation added), with 6 tangent
coordinates; COLMAP's ``(qw, qx, qy, qz)`` is reordered on the way in and out (the sign of each
quaternion is kept). The cost is ``1/2 sum rho(|projection - observation|^2)`` over observations whose
point is in front of the camera (see :mod:`sparselm.colmap.reprojection` for the others).

Groups, in one of two layouts with the same unknowns and the same cost. Joint (when every camera_id
is used by one image, as in models with a camera per image, and all poses are free): one group
``"cameras_<MODEL>"`` per camera model with one block per image, its pose (7 stored, 6 tangent) followed
by its camera's refined parameters only (on SO(3) x R^(3 + refined)) (the fixed ones travel in the residuals' data), so the reduced camera system
has one small block per image (on sfm-92 1.4x faster per iteration than the split layout, which
keeps fixed coordinates as zeroed columns). Split (otherwise): ``"poses"`` (n_images, 7) (and ``"gauge_pose"`` for the second
image of the ``two_cams_from_world`` gauge) and one ``"intrinsics_<MODEL>"`` group per camera model
with one block per camera_id, shared by all its images. Both: ``"points"`` (eliminated by Schur) and
one residual group ``"observations_<MODEL>[_gauge]"`` per camera model (and pose group). Only images,
cameras and points with at least one observation enter the problem; the others are left unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import List, Sequence, Tuple

import numpy as np

from sparselm.colmap.camera_models import CAMERA_MODELS
from sparselm.colmap.cameras import check_projectable
from sparselm.colmap.model import ColmapModel, present_rows, rows_of
from sparselm.colmap.reprojection import (POSE_MANIFOLD, in_front_mask, joint_reprojection_type,
                                           observation_errors, poses_of, reprojection_type)
from sparselm.manifolds.lie import quaternion_to_matrix
from sparselm.manifolds.product import quaternion_and_vector
from sparselm.core.problem import Problem

__all__ = ["BundleAdjustmentOptions", "ColmapProblem", "build_problem", "solution_to_model", "LOSSES", "GAUGES"]

#: pycolmap's loss names -> sparselm's (same functions: rho(s) = a^2 rho0(s / a^2), as Ceres).
LOSSES = {"trivial": "linear", "soft_l1": "soft_l1", "cauchy": "cauchy", "huber": "huber"}
#: gauge choices: left to the damping (COLMAP's default, UNSPECIFIED), or fixed.
GAUGES = ("unspecified", "two_cams_from_world", "three_points")


@dataclass
class BundleAdjustmentOptions:
    """What to refine, with pycolmap's names and defaults (``pycolmap.BundleAdjustmentOptions``).

    refine_focal_length, refine_principal_point, refine_extra_params   the three groups of camera
                            parameters (default on, off, on), for every camera.
    refine_rig_from_world   refine the image poses (default on).
    refine_points3D         refine the 3-D points (default on).
    constant_image_ids      images whose pose is held fixed.
    constant_point3D_ids    points held fixed.
    loss_function_type      'trivial' (default), 'soft_l1', 'cauchy' or 'huber', with
    loss_function_scale     its scale a in pixels (default 1): rho(s) = a^2 rho0(s / a^2).
    gauge                   'unspecified' (default: the 7-dof gauge freedom is left to LM's damping, as
                            COLMAP does), 'two_cams_from_world' (the first image's pose fixed and one
                            translation coordinate of the second, the one along which the baseline is
                            largest) or 'three_points' (three points with the longest tracks fixed).
    """

    refine_focal_length: bool = True
    refine_principal_point: bool = False
    refine_extra_params: bool = True
    refine_rig_from_world: bool = True
    refine_points3D: bool = True
    constant_image_ids: Sequence[int] = ()
    constant_point3D_ids: Sequence[int] = ()
    loss_function_type: str = "trivial"
    loss_function_scale: float = 1.0
    gauge: str = "unspecified"

    def __post_init__(self):
        if self.loss_function_type not in LOSSES:
            raise ValueError(f"loss_function_type must be one of {sorted(LOSSES)}, got {self.loss_function_type!r}")
        if not (np.isfinite(self.loss_function_scale) and self.loss_function_scale > 0):
            raise ValueError(f"loss_function_scale must be a positive number, got {self.loss_function_scale!r}")
        if self.gauge not in GAUGES:
            raise ValueError(f"gauge must be one of {GAUGES}, got {self.gauge!r}")

    @classmethod
    def names(cls) -> Tuple[str, ...]:
        """The option names."""
        return tuple(f.name for f in fields(cls))


@dataclass
class ColmapProblem:
    """A built bundle-adjustment problem and how its blocks map back to the model.

    problem        the sparselm Problem.
    model          the model it was built from.
    pose_groups    (group name, model image rows): block i of the group is image rows[i]'s pose, in
                   the block's first 7 columns (qx, qy, qz, qw, tx, ty, tz).
    camera_groups  (group name, model camera rows, first column, parameter indices): block i holds
                   the listed parameters of camera rows[i], in order, from that column on.
    point_rows     (n_point_blocks,) model point row of each block of "points".
    n_behind       observations whose point is behind its camera at the start (not in the cost).
    """

    problem: Problem
    model: ColmapModel
    pose_groups: List[Tuple[str, np.ndarray]]
    camera_groups: List[Tuple[str, np.ndarray, int, np.ndarray]]
    point_rows: np.ndarray
    n_behind: int = 0


def _constant_coordinates(model_id: int, options: BundleAdjustmentOptions) -> List[int]:
    spec = CAMERA_MODELS[model_id]
    fixed = []
    if not options.refine_focal_length:
        fixed += spec.focal_indices
    if not options.refine_principal_point:
        fixed += spec.principal_point_indices
    if not options.refine_extra_params:
        fixed += spec.extra_indices
    return sorted(fixed)


def _gauge_second_image(used_images, poses):
    """The second image of the two-camera gauge and the coordinate of its translation to fix: the one
    along which the first camera's centre, seen from the second camera, lies furthest."""
    first, second = used_images[0], used_images[1]
    rot = [np.reshape(quaternion_to_matrix(tuple(poses[row, :4])), (3, 3)) for row in (first, second)]
    centre1 = -rot[0].T @ poses[first, 4:]
    in_second = rot[1] @ centre1 + poses[second, 4:]
    return second, int(np.argmax(np.abs(in_second)))


def build_problem(model: ColmapModel, options: BundleAdjustmentOptions = None) -> ColmapProblem:
    """The bundle-adjustment problem of ``model`` (see the module docstring); the model is not changed.

    When every camera_id is used by one image only and all poses are free (no constant images, no
    two-camera gauge), each image's pose and its camera's parameters form one block (group
    ``cameras_<MODEL>``): the same unknowns and cost with half as many blocks in the reduced camera
    system. Raises ValueError for a camera model sparselm cannot project (naming it), unknown constant
    ids, or a gauge that needs more images/points than the model has.
    """
    options = options or BundleAdjustmentOptions()
    image_row, point_row, xy = model.observations()
    camera_row = rows_of(model.camera_ids, model.image_camera_ids)
    used_images = present_rows(image_row, model.n_images)
    for row in present_rows(camera_row[used_images], model.n_cameras):
        check_projectable(int(model.camera_model_ids[row]), model.camera_ids[row])
    constant_ids = _known(model.image_ids, options.constant_image_ids, "image")
    all_poses = poses_of(model)
    problem = Problem()
    point_rows, point_block = _add_points(problem, model, options, present_rows(point_row, model.n_points))
    cols = dict(image_row=image_row, xy=xy, point_index=point_block[point_row], camera_row=camera_row)
    one_image_per_camera = len(present_rows(camera_row[used_images], model.n_cameras)) == len(used_images)
    if one_image_per_camera and options.refine_rig_from_world and not len(constant_ids) and \
            options.gauge != "two_cams_from_world":
        pose_groups, camera_groups = _add_joint_cameras(problem, model, options, used_images, all_poses, cols)
    else:
        pose_groups, camera_groups = _add_poses_and_intrinsics(problem, model, options, used_images, all_poses,
                                                               constant_ids, cols)
    behind = ~in_front_mask(all_poses, model.points_xyz, image_row, point_row)
    return ColmapProblem(problem, model, pose_groups, camera_groups, point_rows, int(behind.sum()))


def _add_points(problem, model, options, used_points):
    """The eliminated "points" group; returns (model rows of its blocks, block of each model row)."""
    constant = _listed(model.point3D_ids[used_points], _known(model.point3D_ids, options.constant_point3D_ids,
                                                              "point3D"))
    if not options.refine_points3D:
        constant[:] = True
    if options.gauge == "three_points":
        if len(used_points) < 3:
            raise ValueError("gauge 'three_points' needs at least three observed points")
        lengths = np.diff(model.track_offsets)[used_points]
        constant[np.argsort(-lengths, kind="stable")[:3]] = True
    problem.add_parameter_group("points", model.points_xyz[used_points], constant=constant, eliminate=True)
    block = np.full(model.n_points, -1)
    block[used_points] = np.arange(len(used_points))
    return used_points, block


def _observations(problem, name, residual_type, pose_slots, sel, cols, options, constants=None, which=None):
    """Add the residual group of the observations ``sel`` (a mask, or ``slice(None)`` for all; slots:
    ``pose_slots`` then the point). Each one's data: its pixel, then (when ``constants`` is given) row
    ``which[i]`` of ``constants``. Built as one gather of whole rows, then the two pixel columns: numpy
    copies a narrow 2-D block into a strided one several times slower than whole rows or single columns."""
    xy = cols["xy"][sel]
    if constants is None:
        data = xy
    else:
        padded = np.zeros((len(constants), 2 + constants.shape[1]))
        padded[:, 2:] = constants
        data = np.take(padded, which, axis=0)
        data[:, 0] = xy[:, 0]
        data[:, 1] = xy[:, 1]
    problem.add_residual_group(name, residual_type, pose_slots + [("points", cols["point_index"][sel])], data,
                               loss=LOSSES[options.loss_function_type], loss_scale=options.loss_function_scale)


def _all_or_mask(mask: np.ndarray):
    """``slice(None)`` when every entry of ``mask`` is set (indexing with it then takes views, not
    copies), else the mask itself."""
    return slice(None) if mask.all() else mask


def _add_joint_cameras(problem, model, options, used_images, all_poses, cols):
    """One block per image: pose (7) then its camera's refined parameters, one group per camera model
    (the fixed parameters travel in the residuals' data, see joint_reprojection_type)."""
    image_row, camera_row = cols["image_row"], cols["camera_row"]
    pose_groups, camera_groups = [], []
    model_of_image = model.camera_model_ids[camera_row]
    for model_id in np.unique(model_of_image[used_images]):
        name = CAMERA_MODELS[int(model_id)].name
        images = used_images[model_of_image[used_images] == model_id]
        params = np.stack([model.camera_params_of(r) for r in camera_row[images]])
        fixed = set(_constant_coordinates(int(model_id), options))
        free = np.array([k for k in range(params.shape[1]) if k not in fixed], dtype=np.int64)
        problem.add_parameter_group(f"cameras_{name}", np.hstack([all_poses[images], params[:, free]]),
                                    manifold=quaternion_and_vector(3 + len(free)))
        block = np.full(model.n_images, -1)
        block[images] = np.arange(len(images))
        sel = _all_or_mask(model_of_image[image_row] == model_id)
        blocks = block[image_row[sel]]
        _observations(problem, f"observations_{name}", joint_reprojection_type(int(model_id), tuple(free.tolist())),
                      [(f"cameras_{name}", blocks)], sel, cols, options, params, blocks)
        pose_groups.append((f"cameras_{name}", images))
        camera_groups.append((f"cameras_{name}", camera_row[images], 7, free))
    return pose_groups, camera_groups


def _add_poses_and_intrinsics(problem, model, options, used_images, all_poses, constant_ids, cols):
    """Poses (one block per image) and intrinsics (one block per camera, shared by its images)."""
    image_row, camera_row = cols["image_row"], cols["camera_row"]
    gauge_image = None
    if options.gauge == "two_cams_from_world":
        if len(used_images) < 2:
            raise ValueError("gauge 'two_cams_from_world' needs at least two images with observations")
        gauge_image, gauge_coordinate = _gauge_second_image(used_images, all_poses)
        used_images = used_images[used_images != gauge_image]
    constant_images = _listed(model.image_ids[used_images], constant_ids) | (not options.refine_rig_from_world)
    if gauge_image is not None:
        constant_images[0] = True
    problem.add_parameter_group("poses", all_poses[used_images], constant=constant_images, manifold=POSE_MANIFOLD)
    pose_groups = [("poses", used_images)]
    pose_block = np.full(model.n_images, -1)
    pose_block[used_images] = np.arange(len(used_images))
    if gauge_image is not None:
        problem.add_parameter_group("gauge_pose", all_poses[[gauge_image]],
                                    constant=[not options.refine_rig_from_world or
                                              model.image_ids[gauge_image] in set(constant_ids.tolist())],
                                    constant_coordinates=[3 + gauge_coordinate], manifold=POSE_MANIFOLD)
        pose_groups.append(("gauge_pose", np.array([gauge_image])))
        pose_block[gauge_image] = 0
    camera_groups = []
    obs_camera = camera_row[image_row]
    on_gauge = image_row == gauge_image if gauge_image is not None else np.zeros(len(image_row), bool)
    used_cameras = present_rows(obs_camera, model.n_cameras)
    for model_id in np.unique(model.camera_model_ids[used_cameras]):
        name = CAMERA_MODELS[int(model_id)].name
        rows = used_cameras[model.camera_model_ids[used_cameras] == model_id]
        params = np.stack([model.camera_params_of(r) for r in rows])
        fixed = _constant_coordinates(int(model_id), options)
        all_fixed = len(fixed) == params.shape[1]
        problem.add_parameter_group(f"intrinsics_{name}", params, constant=np.full(len(rows), all_fixed),
                                    constant_coordinates=None if all_fixed else fixed or None)
        camera_groups.append((f"intrinsics_{name}", rows, 0, np.arange(params.shape[1])))
        block_of_camera = np.full(model.n_cameras, -1)
        block_of_camera[rows] = np.arange(len(rows))
        for gauge_group in (False, True):
            sel = (model.camera_model_ids[obs_camera] == model_id) & (on_gauge == gauge_group)
            if not sel.any():
                continue
            sel = _all_or_mask(sel)
            _observations(problem, f"observations_{name}" + ("_gauge" if gauge_group else ""),
                          reprojection_type(int(model_id)),
                          [("gauge_pose" if gauge_group else "poses", pose_block[image_row[sel]]),
                           (f"intrinsics_{name}", block_of_camera[obs_camera[sel]])], sel, cols, options)
    return pose_groups, camera_groups


def _listed(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """(len(ids),) bool: each id is among ``wanted`` (np.isin, skipped for the usual empty list)."""
    return np.isin(ids, wanted) if len(wanted) else np.zeros(len(ids), bool)


def _known(ids: np.ndarray, wanted, kind: str) -> np.ndarray:
    wanted = np.asarray(list(wanted), dtype=np.int64)
    missing = wanted[rows_of(ids, wanted) < 0]
    if len(missing):
        raise ValueError(f"constant_{kind}_ids: {kind} {missing[0]} is not in the model")
    return wanted


def solution_to_model(built: ColmapProblem) -> ColmapModel:
    """A copy of the model with the problem's current poses, intrinsics and points (e.g. after a
    solve); each adjusted point's ``error`` is recomputed as its mean reprojection error (COLMAP's
    meaning of the field) over the observations in front of their cameras."""
    model, groups = built.model, built.problem.parameter_groups
    qvecs = model.image_qvecs.copy()
    tvecs = model.image_tvecs.copy()
    for group, rows in built.pose_groups:
        moved = ~groups[group].constant  # constant poses keep the model's numbers bit for bit
        poses = groups[group].values[moved]
        qvecs[rows[moved]] = poses[:, [3, 0, 1, 2]]
        tvecs[rows[moved]] = poses[:, 4:7]
    params = model.camera_params.copy()
    for group, rows, first, free in built.camera_groups:
        values = groups[group].values
        for k, row in enumerate(rows):
            params[model.camera_param_offsets[row] + free] = values[k, first:first + len(free)]
    xyz = model.points_xyz.copy()
    xyz[built.point_rows] = groups["points"].values
    adjusted = model.with_values(camera_params=params, image_qvecs=qvecs, image_tvecs=tvecs, points_xyz=xyz)
    errors, in_front = observation_errors(adjusted)
    point_row = np.repeat(np.arange(model.n_points), np.diff(model.track_offsets))
    total = np.bincount(point_row[in_front], weights=errors[in_front], minlength=model.n_points)
    count = np.bincount(point_row[in_front], minlength=model.n_points)
    point_error = model.points_error.copy()
    update = np.zeros(model.n_points, bool)
    update[built.point_rows] = True
    update &= count > 0
    point_error[update] = total[update] / count[update]
    return adjusted.with_values(points_error=point_error)
