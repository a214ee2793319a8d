r"""The COLMAP reprojection residual as a sparselm residual type (numba kernels).

Slots: the image pose, the camera's intrinsics (its COLMAP parameter vector, ``k`` numbers) and the
3-D point ``X`` (3). A pose block is ``(qx, qy, qz, qw, tx, ty, tz)``: COLMAP's ``cam_from_world``
as a unit quaternion (scalar last, sparselm's order; COLMAP stores ``qw`` first) and a translation,
``P = R(q) X + t``, on the manifold SO(3) x R^3
(:func:`sparselm.manifolds.quaternion_and_vector`): the rotation is perturbed on the right,
``R <- R Exp(d_w)``, the translation additively, ``t <- t + d_t``. Data per observation: the
observed pixel (x, y) and the camera's COLMAP model id. Residual: projected pixel minus observed
pixel, as COLMAP's ``ReprojErrorCostFunctor``.

An observation whose point is not in front of the camera (``P_z < eps``, where COLMAP's
``ImgFromCam`` fails) has residual zero and a zero Jacobian, exactly what COLMAP's cost functor
returns there: such observations drop out of the cost, and come back once the point is in front
again (COLMAP's objective, evaluated at every trial point).

Jacobian, written directly in the tangent coordinates (``tangent_manifolds``): with
``A = d(x, y)/dP`` (2 x 3) from :func:`sparselm.colmap.cameras.project_point` and ``g_k = A_k R``
(row k of ``dr/dX``): ``R Exp(d_w) X = R X - R [X]x d_w + O(d_w^2)``, so

    dr_k/dd_w = -g_k [X]x = (X x g_k)^T,      dr/dd_t = A,      dr/dX = A R,

and ``dr/d intrinsics`` comes from the camera model. The rotation's columns are one cross product
of the point's; no trigonometry, no Jacobian of the exponential map.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit, prange

from sparselm.colmap.cameras import check_projectable, project_point
from sparselm.colmap.model import rows_of
from sparselm.manifolds.lie import quaternion_to_matrix
from sparselm.manifolds.product import quaternion_and_vector
from sparselm.residuals.base import ResidualType

__all__ = ["reprojection_type", "joint_reprojection_type", "joint_reprojection_residuals",
           "joint_reprojection_jacobians", "colmap_reprojection_residuals", "colmap_reprojection_jacobians",
           "in_front_mask", "observation_errors", "poses_of", "POSE_MANIFOLD"]

#: the manifold of a pose block (qx, qy, qz, qw, tx, ty, tz).
POSE_MANIFOLD = quaternion_and_vector(3)


def poses_of(model) -> np.ndarray:
    """(n_images, 7) pose blocks (qx, qy, qz, qw, tx, ty, tz) of a model's images, each quaternion
    normalised (COLMAP's are unit to the precision of the file)."""
    q = model.image_qvecs[:, [1, 2, 3, 0]]
    return np.hstack([q / np.linalg.norm(q, axis=1, keepdims=True), model.image_tvecs])


@njit(cache=True)
def _camera_point(poses, c, points, p):
    """(R, P): the rotation of pose row c (row-major 9-tuple) and R X + t for point row p."""
    r = quaternion_to_matrix((poses[c, 0], poses[c, 1], poses[c, 2], poses[c, 3]))
    x0 = points[p, 0]
    x1 = points[p, 1]
    x2 = points[p, 2]
    return r, (r[0] * x0 + r[1] * x1 + r[2] * x2 + poses[c, 4], r[3] * x0 + r[4] * x1 + r[5] * x2 + poses[c, 5],
               r[6] * x0 + r[7] * x1 + r[8] * x2 + poses[c, 6])


@njit(parallel=True, cache=True)
def colmap_reprojection_residuals(params, index, data, residuals):
    """Residual kernel (calling convention of sparselm.residuals.base); see the module docstring."""
    poses = params[0]
    intrinsics = params[1]
    points = params[2]
    unused = np.empty((2, intrinsics.shape[1]))
    for i in prange(index.shape[0]):
        _, p = _camera_point(poses, index[i, 0], points, index[i, 2])
        ok, x, y, _, _, _, _, _, _ = project_point(int(data[i, 2]), intrinsics[index[i, 1]], p[0], p[1], p[2],
                                                   unused, False)
        if ok:
            residuals[i, 0] = x - data[i, 0]
            residuals[i, 1] = y - data[i, 1]
        else:
            residuals[i, 0] = 0.0
            residuals[i, 1] = 0.0


@njit(parallel=True, cache=True)
def colmap_reprojection_jacobians(params, index, data, residuals, jacobians):
    """Jacobian kernel: residuals and d r / d (pose tangent (n, 2, 6), intrinsics (n, 2, k), point (n, 2, 3))."""
    poses = params[0]
    intrinsics = params[1]
    points = params[2]
    jpose = jacobians[0]
    jintr = jacobians[1]
    jpoint = jacobians[2]
    for i in prange(index.shape[0]):
        pt = index[i, 2]
        r, p = _camera_point(poses, index[i, 0], points, pt)
        ok, x, y, a00, a01, a02, a10, a11, a12 = project_point(int(data[i, 2]), intrinsics[index[i, 1]], p[0], p[1],
                                                               p[2], jintr[i], True)
        if ok:
            residuals[i, 0] = x - data[i, 0]
            residuals[i, 1] = y - data[i, 1]
        else:
            residuals[i, 0] = 0.0
            residuals[i, 1] = 0.0
        x0 = points[pt, 0]
        x1 = points[pt, 1]
        x2 = points[pt, 2]
        # g_k = A_k R (d r_k / d X); d r_k / d w = X x g_k; d r_k / d t = A_k
        g00 = a00 * r[0] + a01 * r[3] + a02 * r[6]
        g01 = a00 * r[1] + a01 * r[4] + a02 * r[7]
        g02 = a00 * r[2] + a01 * r[5] + a02 * r[8]
        g10 = a10 * r[0] + a11 * r[3] + a12 * r[6]
        g11 = a10 * r[1] + a11 * r[4] + a12 * r[7]
        g12 = a10 * r[2] + a11 * r[5] + a12 * r[8]
        jpoint[i, 0, 0] = g00
        jpoint[i, 0, 1] = g01
        jpoint[i, 0, 2] = g02
        jpoint[i, 1, 0] = g10
        jpoint[i, 1, 1] = g11
        jpoint[i, 1, 2] = g12
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


@njit(cache=True)
def _in_front(poses, points, image_index, point_index):
    # serial: a few ns per observation, less than waking the thread pool on a small model
    out = np.empty(image_index.shape[0], np.bool_)
    eps = np.finfo(np.float64).eps
    for i in range(image_index.shape[0]):
        _, p = _camera_point(poses, image_index[i], points, point_index[i])
        out[i] = p[2] >= eps
    return out


def in_front_mask(poses: np.ndarray, points: np.ndarray, image_index: np.ndarray, point_index: np.ndarray):
    """(n,) bool: observation i's point is in front of its camera (depth >= eps), i.e. counts in the cost.
    ``poses`` are (n_images, 7) pose blocks (see :func:`poses_of`)."""
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
    """Each camera's full parameter vector: the free ones from its block (after the pose's 7), the others
    from the template in the data of any of its observations (see :func:`joint_reprojection_type`)."""
    k = data.shape[1] - 4
    full = np.zeros((cameras.shape[0], k))
    for i in range(index.shape[0]):
        c = index[i, 0]
        bits = np.int64(data[i, 3])
        free = 0
        for j in range(k):
            if (bits >> j) & 1:
                full[c, j] = cameras[c, 7 + free]
                free += 1
            else:
                full[c, j] = data[i, 4 + j]
    return full


@njit(cache=True)
def joint_reprojection_residuals(params, index, data, residuals):
    """Residual kernel of the joint layout (see :func:`joint_reprojection_type`); same residual as
    :func:`colmap_reprojection_residuals`."""
    cameras = params[0]
    colmap_reprojection_residuals((cameras[:, :7], _joint_intrinsics(cameras, index, data), params[1]),
                                  _joint_index(index), data, residuals)


@njit(cache=True)
def joint_reprojection_jacobians(params, index, data, residuals, jacobians):
    """Jacobian kernel of the joint layout: d r / d (camera block tangent (n, 2, 6 + free), point (n, 2, 3))."""
    cameras = params[0]
    jc = jacobians[0]
    k = data.shape[1] - 4
    j_full = np.empty((index.shape[0], 2, k))
    colmap_reprojection_jacobians((cameras[:, :7], _joint_intrinsics(cameras, index, data), params[1]),
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
    """The residual type for cameras with ``n_params`` intrinsics (one per intrinsics block size); the
    pose slot's blocks are on :data:`POSE_MANIFOLD`."""
    return ResidualType(name=f"colmap_reprojection_{n_params}", residual_size=2, block_sizes=(7, n_params, 3),
                        data_size=3, residual_kernel=colmap_reprojection_residuals,
                        jacobian_kernel=colmap_reprojection_jacobians,
                        tangent_manifolds=(POSE_MANIFOLD, None, None))


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
    """The residual type of the joint layout: slot 0 is one block per image, its pose (7: quaternion and
    translation) followed by the ``n_free`` refined parameters of its camera (in COLMAP's order), on
    SO(3) x R^(3 + n_free) (:func:`sparselm.manifolds.quaternion_and_vector`); slot 1 the point. Data per
    observation: x, y, the model id, a bit mask of which of the camera's ``n_params`` parameters are
    in the block (bit j: parameter j), and the camera's full parameter vector, from which the fixed
    ones are taken. Fixed parameters thus take no columns in the reduced camera system."""
    return ResidualType(name=f"colmap_reprojection_joint_{n_params}_{n_free}", residual_size=2,
                        block_sizes=(7 + n_free, 3), data_size=4 + n_params,
                        residual_kernel=joint_reprojection_residuals, jacobian_kernel=joint_reprojection_jacobians,
                        tangent_manifolds=(quaternion_and_vector(3 + n_free), None))
