r"""The COLMAP reprojection residual as a sparselm residual type (numba kernels).

Slots: the image pose (6: rotation vector ``w``, translation ``t``; ``P = R(w) X + t`` is
COLMAP's ``cam_from_world``), the camera's intrinsics (its COLMAP parameter vector, ``k`` numbers)
and the 3-D point ``X`` (3). Data per observation: the observed pixel (x, y) and the camera's COLMAP
model id. Residual: projected pixel minus observed pixel, as COLMAP's ``ReprojErrorCostFunctor``.

An observation whose point is not in front of the camera (``P_z < eps``, where COLMAP's
``ImgFromCam`` fails) has residual zero and a zero Jacobian, exactly what COLMAP's cost functor
returns there: such observations drop out of the cost, and come back once the point is in front
again (COLMAP's objective, evaluated at every trial point).

Jacobian: with ``A = d(x, y)/dP`` from :func:`sparselm.colmap.cameras.project_point` and
``Q = R(w) X``: ``dr/dw`` row k is ``(Q x A_k)^T J_l(w)`` (``J_l`` the left Jacobian of SO(3), as in
:mod:`sparselm.bal.camera`), ``dr/dt = A``, ``dr/dX = A R(w)`` and ``dr/d intrinsics`` comes from the
camera model.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit, prange

from sparselm.bal.camera import left_jacobians, rotation_matrices
from sparselm.colmap.cameras import check_projectable, project_point
from sparselm.colmap.model import rows_of
from sparselm.colmap.rotation import rotvec_from_quaternion
from sparselm.residuals.base import ResidualType

__all__ = ["reprojection_type", "joint_reprojection_type", "joint_reprojection_residuals",
           "joint_reprojection_jacobians", "colmap_reprojection_residuals", "colmap_reprojection_jacobians",
           "in_front_mask", "observation_errors"]


@njit(parallel=True, cache=True)
def colmap_reprojection_residuals(params, index, data, residuals):
    """Residual kernel (calling convention of sparselm.residuals.base); see the module docstring."""
    poses = params[0]
    intrinsics = params[1]
    points = params[2]
    rot = rotation_matrices(np.ascontiguousarray(poses[:, :3]))
    unused = np.empty((2, intrinsics.shape[1]))
    for i in prange(index.shape[0]):
        c = index[i, 0]
        x0 = points[index[i, 2], 0]
        x1 = points[index[i, 2], 1]
        x2 = points[index[i, 2], 2]
        r = rot[c]
        p0 = r[0, 0] * x0 + r[0, 1] * x1 + r[0, 2] * x2 + poses[c, 3]
        p1 = r[1, 0] * x0 + r[1, 1] * x1 + r[1, 2] * x2 + poses[c, 4]
        p2 = r[2, 0] * x0 + r[2, 1] * x1 + r[2, 2] * x2 + poses[c, 5]
        ok, x, y, _, _, _, _, _, _ = project_point(int(data[i, 2]), intrinsics[index[i, 1]], p0, p1, p2, unused, False)
        if ok:
            residuals[i, 0] = x - data[i, 0]
            residuals[i, 1] = y - data[i, 1]
        else:
            residuals[i, 0] = 0.0
            residuals[i, 1] = 0.0


@njit(parallel=True, cache=True)
def colmap_reprojection_jacobians(params, index, data, residuals, jacobians):
    """Jacobian kernel: residuals and d r / d (pose (n, 2, 6), intrinsics (n, 2, k), point (n, 2, 3))."""
    poses = params[0]
    intrinsics = params[1]
    points = params[2]
    w = np.ascontiguousarray(poses[:, :3])
    rot = rotation_matrices(w)
    jl = left_jacobians(w)
    jpose = jacobians[0]
    jintr = jacobians[1]
    jpoint = jacobians[2]
    for i in prange(index.shape[0]):
        c = index[i, 0]
        x0 = points[index[i, 2], 0]
        x1 = points[index[i, 2], 1]
        x2 = points[index[i, 2], 2]
        r = rot[c]
        q0 = r[0, 0] * x0 + r[0, 1] * x1 + r[0, 2] * x2
        q1 = r[1, 0] * x0 + r[1, 1] * x1 + r[1, 2] * x2
        q2 = r[2, 0] * x0 + r[2, 1] * x1 + r[2, 2] * x2
        ok, x, y, a00, a01, a02, a10, a11, a12 = project_point(
            int(data[i, 2]), intrinsics[index[i, 1]], q0 + poses[c, 3], q1 + poses[c, 4], q2 + poses[c, 5],
            jintr[i], True)
        if ok:
            residuals[i, 0] = x - data[i, 0]
            residuals[i, 1] = y - data[i, 1]
        else:
            residuals[i, 0] = 0.0
            residuals[i, 1] = 0.0
        # v_k = Q x A_k; d r_k / d w = v_k^T J_l
        v0 = (q1 * a02 - q2 * a01, q2 * a00 - q0 * a02, q0 * a01 - q1 * a00)
        v1 = (q1 * a12 - q2 * a11, q2 * a10 - q0 * a12, q0 * a11 - q1 * a10)
        l = jl[c]
        for col in range(3):
            jpose[i, 0, col] = v0[0] * l[0, col] + v0[1] * l[1, col] + v0[2] * l[2, col]
            jpose[i, 1, col] = v1[0] * l[0, col] + v1[1] * l[1, col] + v1[2] * l[2, col]
            jpose[i, 0, 3 + col] = (a00, a01, a02)[col]
            jpose[i, 1, 3 + col] = (a10, a11, a12)[col]
            jpoint[i, 0, col] = a00 * r[0, col] + a01 * r[1, col] + a02 * r[2, col]
            jpoint[i, 1, col] = a10 * r[0, col] + a11 * r[1, col] + a12 * r[2, col]


@njit(parallel=True, cache=True)
def _in_front(poses, points, image_index, point_index):
    rot = rotation_matrices(np.ascontiguousarray(poses[:, :3]))
    out = np.empty(image_index.shape[0], np.bool_)
    eps = np.finfo(np.float64).eps
    for i in prange(image_index.shape[0]):
        c = image_index[i]
        p = point_index[i]
        z = rot[c, 2, 0] * points[p, 0] + rot[c, 2, 1] * points[p, 1] + rot[c, 2, 2] * points[p, 2] + poses[c, 5]
        out[i] = z >= eps
    return out


def in_front_mask(poses: np.ndarray, points: np.ndarray, image_index: np.ndarray, point_index: np.ndarray):
    """(n,) bool: observation i's point is in front of its camera (depth >= eps), i.e. counts in the cost."""
    return _in_front(np.ascontiguousarray(poses, dtype=np.float64), np.ascontiguousarray(points, dtype=np.float64),
                     np.ascontiguousarray(image_index, dtype=np.int64), np.ascontiguousarray(point_index, np.int64))


@njit(cache=True)
def _joint_index(index):
    """(camera, point) slots -> (pose, intrinsics, point) rows: pose and intrinsics share the block."""
    out = np.empty((index.shape[0], 3), np.int64)
    for i in range(index.shape[0]):
        out[i, 0] = index[i, 0]
        out[i, 1] = index[i, 0]
        out[i, 2] = index[i, 1]
    return out


@njit(cache=True)
def _joint_intrinsics(cameras, index, data):
    """Each camera's full parameter vector: the free ones from its block (after the pose), the others
    from the template in the data of any of its observations (see :func:`joint_reprojection_type`)."""
    k = data.shape[1] - 4
    full = np.zeros((cameras.shape[0], k))
    for i in range(index.shape[0]):
        c = index[i, 0]
        bits = np.int64(data[i, 3])
        free = 0
        for j in range(k):
            if (bits >> j) & 1:
                full[c, j] = cameras[c, 6 + free]
                free += 1
            else:
                full[c, j] = data[i, 4 + j]
    return full


@njit(cache=True)
def joint_reprojection_residuals(params, index, data, residuals):
    """Residual kernel of the joint layout (see :func:`joint_reprojection_type`); same residual as
    :func:`colmap_reprojection_residuals`."""
    cameras = params[0]
    colmap_reprojection_residuals((cameras[:, :6], _joint_intrinsics(cameras, index, data), params[1]),
                                  _joint_index(index), data, residuals)


@njit(cache=True)
def joint_reprojection_jacobians(params, index, data, residuals, jacobians):
    """Jacobian kernel of the joint layout: d r / d (camera block (n, 2, 6 + free), point (n, 2, 3))."""
    cameras = params[0]
    jc = jacobians[0]
    k = data.shape[1] - 4
    j_full = np.empty((index.shape[0], 2, k))
    colmap_reprojection_jacobians((cameras[:, :6], _joint_intrinsics(cameras, index, data), params[1]),
                                  _joint_index(index), data, residuals, (jc[:, :, :6], j_full, jacobians[1]))
    for i in range(index.shape[0]):
        bits = np.int64(data[i, 3])
        free = 0
        for j in range(k):
            if (bits >> j) & 1:
                jc[i, 0, 6 + free] = j_full[i, 0, j]
                jc[i, 1, 6 + free] = j_full[i, 1, j]
                free += 1


@lru_cache(maxsize=None)
def reprojection_type(n_params: int) -> ResidualType:
    """The residual type for cameras with ``n_params`` intrinsics (one per intrinsics block size)."""
    return ResidualType(name=f"colmap_reprojection_{n_params}", residual_size=2, block_sizes=(6, n_params, 3),
                        data_size=3, residual_kernel=colmap_reprojection_residuals,
                        jacobian_kernel=colmap_reprojection_jacobians)


def observation_errors(model):
    """``(errors, in_front)``: the pixel distance between each observation of ``model`` (in the order
    of :meth:`ColmapModel.observations`) and its point's projection, and whether the point is in front
    of the camera (errors are 0 where it is not). Cameras of models sparselm cannot project raise
    ValueError."""
    image_row, point_row, xy = model.observations()
    camera_row = rows_of(model.camera_ids, model.image_camera_ids)[image_row]
    poses = np.concatenate([rotvec_from_quaternion(model.image_qvecs), model.image_tvecs], axis=1)
    errors = np.zeros(len(image_row))
    for row in np.unique(camera_row):
        sel = camera_row == row
        params = model.camera_params_of(row)[None, :]
        index = np.c_[image_row[sel], np.zeros(sel.sum(), np.int64), point_row[sel]]
        data = np.c_[xy[sel], np.full(sel.sum(), float(model.camera_model_ids[row]))]
        residuals = np.empty((sel.sum(), 2))
        check_projectable(int(model.camera_model_ids[row]), model.camera_ids[row])
        colmap_reprojection_residuals((poses, np.ascontiguousarray(params), model.points_xyz), index, data, residuals)
        errors[sel] = np.hypot(residuals[:, 0], residuals[:, 1])
    return errors, in_front_mask(poses, model.points_xyz, image_row, point_row)


@lru_cache(maxsize=None)
def joint_reprojection_type(n_params: int, n_free: int) -> ResidualType:
    """The residual type of the joint layout: slot 0 is one block per image, its pose (6) followed by
    the ``n_free`` refined parameters of its camera (in COLMAP's order), slot 1 the point. Data per
    observation: x, y, the model id, a bit mask of which of the camera's ``n_params`` parameters are
    in the block (bit j: parameter j), and the camera's full parameter vector, from which the fixed
    ones are taken. Fixed parameters thus take no columns in the reduced camera system."""
    return ResidualType(name=f"colmap_reprojection_joint_{n_params}_{n_free}", residual_size=2,
                        block_sizes=(6 + n_free, 3), data_size=4 + n_params,
                        residual_kernel=joint_reprojection_residuals, jacobian_kernel=joint_reprojection_jacobians)
