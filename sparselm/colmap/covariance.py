"""Pose covariances in COLMAP's convention, from :func:`sparselm.covariance` of a COLMAP problem.

sparselm steps each image's pose as (w, t): the rotation vector w of cam_from_world and its
translation t, added to directly (see :mod:`sparselm.colmap.problem`). COLMAP (pycolmap's
``BACovariance.get_cam_cov_from_world``) reports the 6x6 covariance of cam_from_world in the tangent
of its own parameterisation, rotation first: Ceres' quaternion manifold perturbs the rotation on
the left by the unit quaternion [cos|d|, sin|d| d/|d|], a rotation by the vector 2 d, and adds to
the translation. With Exp(w + dw) = Exp(J_l(w) dw) Exp(w) to first order (J_l the left Jacobian of
SO(3): I + (1 - cos a)/a^2 [w]x + (a - sin a)/a^3 [w]x^2, a = |w|),

    d = 1/2 J_l(w) dw,   Sigma_colmap = A Sigma_(w, t) A^T,   A = diag(1/2 J_l(w), I_3).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from sparselm.colmap.problem import ColmapProblem
from sparselm.covariance.result import Covariance


def left_jacobian(w: np.ndarray) -> np.ndarray:
    """J_l(w) (3, 3) of SO(3) for a rotation vector w (radians)."""
    angle = float(np.linalg.norm(w))
    k = np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])
    if angle < 1e-8:
        return np.eye(3) + 0.5 * k + k @ k / 6.0
    return np.eye(3) + (1 - np.cos(angle)) / angle ** 2 * k + (angle - np.sin(angle)) / angle ** 3 * k @ k


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
            a[:3, :3] = 0.5 * left_jacobian(values[index, :3])
            out[int(model.image_ids[rows[index]])] = a @ cov.block(group, int(index))[:6, :6] @ a.T
    return out
