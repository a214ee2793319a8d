"""A :class:`sparselm.Problem` from a BAL problem, and back.

:func:`build_problem` turns a :class:`~sparselm.bal.io.BALProblem` into a Problem with

* parameter group ``"cameras"``: the (n_cameras, 9) BAL cameras (Rodrigues rotation 3, translation 3,
  f, k1, k2), optionally with some cameras held constant (``fix_cameras``, to fix the gauge) and
  the intrinsics (f, k1, k2: coordinates 6, 7, 8) held constant in every camera (``fix_intrinsics``);
* parameter group ``"points"``: the (n_points, 3) points, marked ``eliminate=True`` so that the Schur
  solvers eliminate them;
* residual group ``"observations"``: one :data:`~sparselm.bal.camera.BAL_REPROJECTION` residual per
  observation (slots: camera, point; data: the observed pixel), weighted by an optional pixel
  ``sigma`` (scalar or one per observation) or 2x2 ``covariance`` (one for all, or (n, 2, 2)), and
  with an optional robust ``loss``.

After :func:`sparselm.solve`, :func:`solution_to_bal` copies the optimised cameras and points into a
new BALProblem (for :func:`~sparselm.bal.io.write_bal`), and :func:`reprojection_errors` gives the
pixel error of every observation of a Problem or a BALProblem.
"""
from __future__ import annotations

from typing import Union

import numpy as np

from sparselm.bal.camera import BAL_REPROJECTION, reprojection_pixel_errors
from sparselm.bal.io import BALProblem
from sparselm.core.problem import Problem

CAMERAS = "cameras"
POINTS = "points"
OBSERVATIONS = "observations"
INTRINSIC_COORDINATES = (6, 7, 8)  # f, k1, k2 in a BAL camera


def build_problem(bal: BALProblem, *, fix_cameras=(), fix_intrinsics: bool = False, sigma=None, covariance=None,
                  loss=None, loss_scale: float = 1.0) -> Problem:
    """The bundle-adjustment :class:`~sparselm.Problem` of ``bal`` (see the module docstring).

    fix_cameras     indices (or an (n_cameras,) boolean mask) of cameras held constant.
    fix_intrinsics  hold f, k1 and k2 constant in every camera.
    sigma           pixel standard deviation: a scalar or one per observation (n,).
    covariance      pixel covariance: one (2, 2) matrix for all observations or (n, 2, 2).
    loss            robust loss name (None/'linear', 'huber', 'soft_l1', 'cauchy', 'arctan') with
                    ``loss_scale`` in whitened residual units (pixels when unweighted).

    The arrays of ``bal`` are copied; solving the problem leaves ``bal`` unchanged. Raises
    ValueError for an inconsistent BALProblem or invalid options (naming the offending entry).
    """
    if not isinstance(bal, BALProblem):
        raise ValueError(f"build_problem: expected a BALProblem, got {type(bal).__name__}")
    if sigma is not None and covariance is not None:
        raise ValueError("build_problem: give at most one of sigma and covariance")
    bal.validate()
    fixed = np.asarray(fix_cameras if fix_cameras is not None else ())
    problem = Problem()
    problem.add_parameter_group(CAMERAS, bal.cameras, constant=fixed if fixed.size else None,
                                constant_coordinates=list(INTRINSIC_COORDINATES) if fix_intrinsics else None)
    problem.add_parameter_group(POINTS, bal.points, eliminate=True)
    problem.add_residual_group(OBSERVATIONS, BAL_REPROJECTION,
                               [(CAMERAS, bal.camera_index), (POINTS, bal.point_index)],
                               bal.observations, sigma=sigma, covariance=covariance, loss=loss,
                               loss_scale=loss_scale)
    return problem


def _groups(problem: Problem):
    """The cameras and points groups and the observations residual group of a BA problem."""
    try:
        cameras = problem.parameter_groups[CAMERAS]
        points = problem.parameter_groups[POINTS]
    except KeyError:
        raise ValueError(f"not a bundle-adjustment problem: it needs parameter groups {CAMERAS!r} and "
                         f"{POINTS!r} (see build_problem); it has {sorted(problem.parameter_groups)}") from None
    observations = [r for r in problem.residual_groups if r.name == OBSERVATIONS]
    if not observations:
        raise ValueError(f"not a bundle-adjustment problem: no residual group {OBSERVATIONS!r} (see build_problem)")
    return cameras, points, observations[0]


def solution_to_bal(problem: Problem, bal: BALProblem) -> BALProblem:
    """A copy of ``bal`` with the cameras and points of ``problem`` (e.g. after a solve).

    The observations and indices are those of ``bal``; ``source`` is kept, so that
    :func:`~sparselm.bal.io.write_bal` refuses to overwrite the file it was read from.
    """
    cameras, points, _ = _groups(problem)
    if cameras.values.shape != bal.cameras.shape or points.values.shape != bal.points.shape:
        raise ValueError(f"problem ({cameras.values.shape[0]} cameras, {points.values.shape[0]} points) does not "
                         f"match the BALProblem ({bal.n_cameras} cameras, {bal.n_points} points)")
    return BALProblem(cameras.values.copy(), points.values.copy(), bal.camera_index.copy(), bal.point_index.copy(),
                      bal.observations.copy(), bal.source)


def reprojection_errors(problem_or_bal: Union[Problem, BALProblem]) -> np.ndarray:
    """(n_observations,) pixel distance between each observation and its predicted projection.

    Unweighted (no sigma or covariance, no robust loss): the plain BAL reprojection error, in the
    order of the observations. For a Problem the current values of its groups are used.
    """
    if isinstance(problem_or_bal, BALProblem):
        b = problem_or_bal
        cameras, points, ci, pi, obs = b.cameras, b.points, b.camera_index, b.point_index, b.observations
    elif isinstance(problem_or_bal, Problem):
        cam_group, pt_group, rg = _groups(problem_or_bal)
        slots = {g: j for j, g in enumerate(rg.groups)}
        cameras, points = cam_group.values, pt_group.values
        ci = rg.index[:, slots[CAMERAS]]
        pi = rg.index[:, slots[POINTS]]
        obs = rg.data
    else:
        raise ValueError(f"reprojection_errors: expected a Problem or a BALProblem, "
                         f"got {type(problem_or_bal).__name__}")
    index = np.column_stack([np.asarray(ci, dtype=np.int64), np.asarray(pi, dtype=np.int64)])
    return reprojection_pixel_errors((cameras, points), index, obs)
