"""Pose covariances in COLMAP's convention, from :func:`sparselm.covariance` of a COLMAP problem.

sparselm steps each image's pose (q, t) of cam_from_world on SO(3) x R^3 (see
:mod:`sparselm.colmap.problem`): R <- R Exp(dw), the rotation perturbed on the right by dw in the
camera frame, t <- t + dt. COLMAP (pycolmap's ``BACovariance.get_cam_cov_from_world``) reports the
6x6 covariance of cam_from_world in the tangent of its own parameterisation, rotation first: Ceres'
quaternion manifold perturbs the rotation on the left by the unit quaternion [cos|d|, sin|d| d/|d|],
a rotation by the vector 2 d, and adds to the translation. Since R Exp(dw) R^T = Exp(R dw),

    Exp(2 d) R = R Exp(dw)   <=>   d = 1/2 R dw,      Sigma_colmap = A Sigma_(dw, dt) A^T,   A = diag(1/2 R, I_3).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from sparselm.colmap.problem import ColmapProblem
from sparselm.covariance.result import Covariance
from sparselm.manifolds.lie import quaternion_to_matrix


def colmap_rotation_tangent(q: np.ndarray) -> np.ndarray:
    """(3, 3) map from sparselm's right rotation step dw to COLMAP's left quaternion step d = 1/2 R dw,
    for a pose quaternion q = (qx, qy, qz, qw) of cam_from_world."""
    return 0.5 * np.reshape(quaternion_to_matrix(tuple(float(c) for c in q[:4])), (3, 3))


def cam_cov_from_world(colmap_problem: ColmapProblem, cov: Covariance) -> Dict[int, np.ndarray]:
    """{image_id: (6, 6)} covariance of each image's cam_from_world in COLMAP's convention (rotation
    then translation; see the module docstring), for the pose blocks ``cov`` holds (NaN when undefined,
    zero for a pose held constant)."""
    out = {}
    model = colmap_problem.model
    for group, rows in colmap_problem.pose_groups:
        if group not in cov.indices:
            continue
        values = colmap_problem.problem.parameter_groups[group].values
        for index in cov.indices[group]:
            a = np.eye(6)
            a[:3, :3] = colmap_rotation_tangent(values[index, :4])
            out[int(model.image_ids[rows[index]])] = a @ cov.block(group, int(index))[:6, :6] @ a.T
    return out
