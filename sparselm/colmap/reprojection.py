r"""The COLMAP reprojection residual as sparselm residual types, one per camera model (numba kernels).

Slots: the image pose, the camera's intrinsics (its COLMAP parameter vector, ``k`` numbers) and the
3-D point ``X`` (3). A pose block is ``(qx, qy, qz, qw, tx, ty, tz)``: COLMAP's ``cam_from_world``
as a unit quaternion (scalar last, sparselm's order; COLMAP stores ``qw`` first) and a translation,
``P = R(q) X + t``, on the manifold SO(3) x R^3
(:func:`sparselm.manifolds.quaternion_and_vector`): the rotation is perturbed on the right,
``R <- R Exp(d_w)``, the translation additively, ``t <- t + d_t``. Data per observation: the
observed pixel (x, y). Residual: projected pixel minus observed pixel (pixels), as COLMAP's
``ReprojErrorCostFunctor``.

An observation whose point is not in front of the camera (``P_z < eps``, where COLMAP's
``ImgFromCam`` fails) has residual zero and a zero Jacobian, exactly what COLMAP's cost functor
returns there: such observations drop out of the cost, and come back once the point is in front
again (COLMAP's objective, evaluated at every trial point).

Jacobian, written directly in the tangent coordinates (``tangent_manifolds``): with
``A = d(x, y)/dP`` (2 x 3) from :func:`sparselm.colmap.cameras.project` and ``g_k = A_k R``
(row k of ``dr/dX``): ``R Exp(d_w) X = R X - R [X]x d_w + O(d_w^2)``, so

    dr_k/dd_w = -g_k [X]x = (X x g_k)^T,      dr/dd_t = A,      dr/dX = A R,

and ``dr/d intrinsics`` comes from the camera model. The rotation's columns are one cross product
of the point's; no trigonometry, no Jacobian of the exponential map.

Kernels: each type's kernels are compiled for its camera model (the projection's terms and
parameter positions are constants, see :mod:`sparselm.colmap.cameras`). A call first
turns every pose's quaternion into its rotation matrix (one per image, not one per observation),
then loops over the observations in parallel. (No serial path for small groups: waking numba's
threads costs some 25 us on a 2-core virtual machine, and a second copy of the loop body would
add a third to the kernel's compile time.)
``jacobian_kernel_for(needed)`` gives kernels that leave the columns of constant parameters (and of
all-constant slots) untouched, as :class:`~sparselm.residuals.base.ResidualType` promises.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional, Tuple

import numpy as np
from numba import njit, prange

from sparselm.colmap.camera_models import CAMERA_MODELS
from sparselm.colmap.cameras import check_projectable, project, projection_spec
from sparselm.colmap.model import rows_of
from sparselm.manifolds.lie import quaternion_to_matrix
from sparselm.manifolds.product import quaternion_and_vector
from sparselm.residuals.base import ResidualType

__all__ = ["reprojection_type", "joint_reprojection_type", "in_front_mask", "observation_errors", "poses_of",
           "POSE_MANIFOLD"]

#: the manifold of a pose block (qx, qy, qz, qw, tx, ty, tz).
POSE_MANIFOLD = quaternion_and_vector(3)

Needed = Tuple[Tuple[bool, ...], ...]


def poses_of(model) -> np.ndarray:
    """(n_images, 7) pose blocks (qx, qy, qz, qw, tx, ty, tz) of a model's images, each quaternion
    normalised (COLMAP's are unit to the precision of the file)."""
    q = model.image_qvecs[:, [1, 2, 3, 0]]
    return np.hstack([q / np.linalg.norm(q, axis=1, keepdims=True), model.image_tvecs])


@njit(cache=True)
def _rotations(poses):
    """(n, 9) row-major rotation matrices of the quaternions in columns 0-3 of the pose blocks ``poses``."""
    out = np.empty((poses.shape[0], 9))
    for c in range(poses.shape[0]):
        r = quaternion_to_matrix((poses[c, 0], poses[c, 1], poses[c, 2], poses[c, 3]))
        for j in range(9):
            out[c, j] = r[j]
    return out


@njit(cache=True)
def _camera_point(rot, poses, c, points, p):
    """R X + t: point row ``p`` in the frame of pose row ``c`` (``rot`` from :func:`_rotations`)."""
    x0 = points[p, 0]
    x1 = points[p, 1]
    x2 = points[p, 2]
    return (rot[c, 0] * x0 + rot[c, 1] * x1 + rot[c, 2] * x2 + poses[c, 4],
            rot[c, 3] * x0 + rot[c, 4] * x1 + rot[c, 5] * x2 + poses[c, 5],
            rot[c, 6] * x0 + rot[c, 7] * x1 + rot[c, 8] * x2 + poses[c, 6])


@njit(cache=True, inline="always")
def _residual_at(spec, slots, i, rot, poses, intrinsics, points, index, data, residuals):
    """The residual of observation i; ``slots`` = (pose, intrinsics, point) columns of ``index``."""
    u, v, w = _camera_point(rot, poses, index[i, slots[0]], points, index[i, slots[2]])
    # a spec that writes no column: ``residuals`` only stands in for the Jacobian row it never touches
    ok, x, y, _, _, _, _, _, _ = project(spec, intrinsics[index[i, slots[1]]], data[i], u, v, w, residuals)
    residuals[i, 0] = x - data[i, 0] if ok else 0.0
    residuals[i, 1] = y - data[i, 1] if ok else 0.0


@njit(cache=True, inline="always")
def _jacobian_at(spec, slots, want_pose, want_point, i, rot, poses, intrinsics, points, index, data,
                 residuals, jpose, jintr, jpoint):
    """The residual and Jacobian of observation i (the intrinsics' columns as ``spec`` says, the
    pose's and the point's when wanted)."""
    c = index[i, slots[0]]
    pt = index[i, slots[2]]
    u, v, w = _camera_point(rot, poses, c, points, pt)
    ok, x, y, a00, a01, a02, a10, a11, a12 = project(spec, intrinsics[index[i, slots[1]]], data[i], u, v, w,
                                                     jintr[i])
    residuals[i, 0] = x - data[i, 0] if ok else 0.0
    residuals[i, 1] = y - data[i, 1] if ok else 0.0
    # g_k = A_k R (d r_k / d X); d r_k / d w = X x g_k; d r_k / d t = A_k
    g00 = a00 * rot[c, 0] + a01 * rot[c, 3] + a02 * rot[c, 6]
    g01 = a00 * rot[c, 1] + a01 * rot[c, 4] + a02 * rot[c, 7]
    g02 = a00 * rot[c, 2] + a01 * rot[c, 5] + a02 * rot[c, 8]
    g10 = a10 * rot[c, 0] + a11 * rot[c, 3] + a12 * rot[c, 6]
    g11 = a10 * rot[c, 1] + a11 * rot[c, 4] + a12 * rot[c, 7]
    g12 = a10 * rot[c, 2] + a11 * rot[c, 5] + a12 * rot[c, 8]
    if want_point:
        jpoint[i, 0, 0] = g00
        jpoint[i, 0, 1] = g01
        jpoint[i, 0, 2] = g02
        jpoint[i, 1, 0] = g10
        jpoint[i, 1, 1] = g11
        jpoint[i, 1, 2] = g12
    if want_pose:
        x0 = points[pt, 0]
        x1 = points[pt, 1]
        x2 = points[pt, 2]
        jpose[i, 0, 0] = x1 * g02 - x2 * g01
        jpose[i, 0, 1] = x2 * g00 - x0 * g02
        jpose[i, 0, 2] = x0 * g01 - x1 * g00
        jpose[i, 1, 0] = x1 * g12 - x2 * g11
        jpose[i, 1, 1] = x2 * g10 - x0 * g12
        jpose[i, 1, 2] = x0 * g11 - x1 * g10
        jpose[i, 0, 3] = a00
        jpose[i, 0, 4] = a01
        jpose[i, 0, 5] = a02
        jpose[i, 1, 3] = a10
        jpose[i, 1, 4] = a11
        jpose[i, 1, 5] = a12


@lru_cache(maxsize=None)
def _kernels(model_id: int, free: Optional[Tuple[int, ...]], needed: Needed):
    """(residual kernel, Jacobian kernel) of one camera model in one layout. ``free`` None: the split
    layout, slots (pose, intrinsics, point), data (x, y). ``free`` a tuple of parameter positions:
    the joint layout, slots (pose then those parameters, point), data (x, y, the full parameter
    vector, from which the others are read). ``needed[j][c]``: write the Jacobian columns of slot
    j's coordinate c (the tangent slots are all or nothing).

    The kernels hold only plain constants (specs, slot numbers, flags) and call module-level
    functions, so numba's on-disk cache finds them again in a later process."""
    k = CAMERA_MODELS[model_id].n_params
    if free is None:
        slots = (0, 1, 2)
        read = tuple(range(k))
        write = tuple(j if needed[1][j] else -1 for j in range(k))
    else:
        slots = (0, 0, 1)
        column = {j: s for s, j in enumerate(free)}
        read = tuple(7 + column[j] if j in column else -1 - (2 + j) for j in range(k))
        write = tuple(6 + column[j] if j in column and needed[0][0] else -1 for j in range(k))
    want_pose, want_point = bool(needed[0][0]), bool(needed[slots[2]][0])
    pixel = projection_spec(model_id, read, (-1,) * k)
    spec = projection_spec(model_id, read, write)
    pose_slot, intrinsics_slot, point_slot = slots

    @njit(parallel=True, cache=True)
    def residual_kernel(params, index, data, residuals):
        poses, intrinsics, points = params[pose_slot], params[intrinsics_slot], params[point_slot]
        rot = _rotations(poses)
        for i in prange(index.shape[0]):
            _residual_at(pixel, slots, i, rot, poses, intrinsics, points, index, data, residuals)

    @njit(parallel=True, cache=True)
    def jacobian_kernel(params, index, data, residuals, jacobians):
        poses, intrinsics, points = params[pose_slot], params[intrinsics_slot], params[point_slot]
        jpose, jintr, jpoint = jacobians[pose_slot], jacobians[intrinsics_slot], jacobians[point_slot]
        rot = _rotations(poses)
        for i in prange(index.shape[0]):
            _jacobian_at(spec, slots, want_pose, want_point, i, rot, poses, intrinsics, points, index, data, residuals,
                         jpose, jintr, jpoint)

    return residual_kernel, jacobian_kernel


def _residual_type(name: str, model_id: int, free: Optional[Tuple[int, ...]], block_sizes, data_size: int,
                   tangent_manifolds) -> ResidualType:
    all_columns = tuple((True,) * b for b in block_sizes)
    residual_kernel, jacobian_kernel = _kernels(model_id, free, all_columns)

    def jacobian_kernel_for(needed: Needed):
        needed = tuple(tuple(bool(c) for c in slot) for slot in needed)
        if tuple(len(slot) for slot in needed) != tuple(block_sizes):
            raise ValueError(f"residual type {name!r}: needed columns must have the block sizes {block_sizes}")
        return _kernels(model_id, free, needed)[1]

    return ResidualType(name=name, residual_size=2, block_sizes=tuple(block_sizes), data_size=data_size,
                        residual_kernel=residual_kernel, jacobian_kernel=jacobian_kernel,
                        jacobian_kernel_for=jacobian_kernel_for, tangent_manifolds=tangent_manifolds)


@lru_cache(maxsize=None)
def reprojection_type(model_id: int) -> ResidualType:
    """The residual type of the split layout for cameras of COLMAP model ``model_id``: slots (pose on
    :data:`POSE_MANIFOLD`, intrinsics (k), point (3)); data (x, y)."""
    check_projectable(model_id)
    model = CAMERA_MODELS[int(model_id)]
    return _residual_type(f"colmap_reprojection_{model.name}", model.model_id, None, (7, model.n_params, 3), 2,
                          (POSE_MANIFOLD, None, None))


@lru_cache(maxsize=None)
def joint_reprojection_type(model_id: int, free: Tuple[int, ...]) -> ResidualType:
    """The residual type of the joint layout for cameras of COLMAP model ``model_id``: slot 0 is one
    block per image, its pose (7: quaternion and translation) followed by the refined parameters
    ``free`` (positions in COLMAP's order, ascending), on SO(3) x R^(3 + len(free))
    (:func:`sparselm.manifolds.quaternion_and_vector`); slot 1 the point. Data per observation: x, y
    and the camera's full parameter vector, from which the fixed parameters are read. Fixed
    parameters thus take no columns in the reduced camera system."""
    check_projectable(model_id)
    model = CAMERA_MODELS[int(model_id)]
    free = tuple(int(j) for j in free)
    return _residual_type(f"colmap_reprojection_joint_{model.name}_{'_'.join(map(str, free)) or 'none'}",
                          model.model_id, free, (7 + len(free), 3), 2 + model.n_params,
                          (quaternion_and_vector(3 + len(free)), None))


@njit(cache=True)
def _in_front(poses, points, image_index, point_index):
    # serial: a few ns per observation, less than waking the thread pool on a small model
    rot = _rotations(poses)
    out = np.empty(image_index.shape[0], np.bool_)
    eps = np.finfo(np.float64).eps
    for i in range(image_index.shape[0]):
        _, _, w = _camera_point(rot, poses, image_index[i], points, point_index[i])
        out[i] = w >= eps
    return out


def in_front_mask(poses: np.ndarray, points: np.ndarray, image_index: np.ndarray, point_index: np.ndarray):
    """(n,) bool: observation i's point is in front of its camera (depth >= eps), i.e. counts in the cost.
    ``poses`` are (n_images, 7) pose blocks (see :func:`poses_of`)."""
    return _in_front(np.ascontiguousarray(poses, dtype=np.float64), np.ascontiguousarray(points, dtype=np.float64),
                     np.ascontiguousarray(image_index, dtype=np.int64), np.ascontiguousarray(point_index, np.int64))


def observation_errors(model):
    """``(errors, in_front)``: the pixel distance between each observation of ``model`` (in the order
    of :meth:`ColmapModel.observations`) and its point's projection, and whether the point is in front
    of the camera (errors are 0 where it is not). Cameras of models sparselm cannot project raise
    ValueError."""
    image_row, point_row, xy = model.observations()
    camera_row = rows_of(model.camera_ids, model.image_camera_ids)[image_row]
    poses = poses_of(model)
    errors = np.zeros(len(image_row))
    for row in np.unique(camera_row):
        sel = camera_row == row
        model_id = int(model.camera_model_ids[row])
        check_projectable(model_id, model.camera_ids[row])
        params = model.camera_params_of(row)[None, :]
        index = np.c_[image_row[sel], np.zeros(sel.sum(), np.int64), point_row[sel]]
        residuals = np.empty((sel.sum(), 2))
        reprojection_type(model_id).residual_kernel((poses, np.ascontiguousarray(params), model.points_xyz), index,
                                                    np.ascontiguousarray(xy[sel]), residuals)
        errors[sel] = np.hypot(residuals[:, 0], residuals[:, 1])
    return errors, in_front_mask(poses, model.points_xyz, image_row, point_row)
