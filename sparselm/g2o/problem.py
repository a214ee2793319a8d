"""A :class:`~sparselm.Problem` from a g2o pose graph, and the solution back into the graph.

One parameter group ``poses`` on the ``se3`` (3-D) or ``se2`` (2-D) manifold, and one residual
group ``between`` with an error per edge (:mod:`sparselm.residuals.pose_graph`):

* ``error="gtsam"`` (default): e = Log(Z^-1 T_i^-1 T_j), the error GTSAM minimises for a g2o
  file (readG2o + BetweenFactor), so that the final cost compares with GTSAM's graph error;
* ``error="g2o"`` (3-D only): g2o's own (2 vec(q_E), t_E).

The information matrix of a 3-D edge is given in g2o's order (translation, rotation); the errors
are rotation first, so it is permuted to (rotation, translation): Lambda' = P Lambda P^T. The gauge
(a pose graph is invariant to one rigid motion of all poses) is held by keeping constant the
vertices named on FIX lines, or the first vertex of the file when there are none; GTSAM puts a
tight prior on the first pose instead, which reaches the same between-factor error.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from sparselm.g2o.io import SE3_RECORDS, PoseGraph
from sparselm.manifolds import SE2, SE3
from sparselm.core.problem import Problem
from sparselm.residuals.pose_graph import SE2_BETWEEN, SE3_BETWEEN, SE3_BETWEEN_G2O

#: g2o's (tx, ty, tz, rx, ry, rz) -> the errors' (rx, ry, rz, tx, ty, tz)
ROTATION_FIRST = np.array([3, 4, 5, 0, 1, 2])
ERRORS = ("gtsam", "g2o")


def gauge_vertices(graph: PoseGraph) -> np.ndarray:
    """Positions of the vertices held constant: the FIX vertices, else the first one."""
    return np.flatnonzero(graph.fixed) if graph.fixed.any() else np.array([0])


def build_problem(graph: PoseGraph, *, error: str = "gtsam", loss=None, loss_scale: float = 1.0) -> Problem:
    """The pose-graph problem of ``graph`` (see the module docstring); poses start at the file's.

    loss, loss_scale: an optional robust loss on the whitened edge errors (as add_residual_group)."""
    if error not in ERRORS:
        raise ValueError(f"unknown pose-graph error {error!r}; choose one of {', '.join(ERRORS)}")
    problem = Problem()
    if graph.kind is SE3_RECORDS:
        manifold = SE3
        residual = SE3_BETWEEN if error == "gtsam" else SE3_BETWEEN_G2O
        information = graph.information[:, ROTATION_FIRST][:, :, ROTATION_FIRST]
    else:
        if error != "gtsam":
            raise ValueError("the g2o error is offered for 3-D graphs only (in 2-D it is the same as GTSAM's up "
                             "to the translation map); use error='gtsam'")
        manifold, residual, information = SE2, SE2_BETWEEN, graph.information
    problem.add_parameter_group("poses", graph.poses, manifold=manifold, constant=gauge_vertices(graph))
    problem.add_residual_group("between", residual, [("poses", graph.edges[:, 0]), ("poses", graph.edges[:, 1])],
                               graph.measurements, information=information, loss=loss, loss_scale=loss_scale)
    return problem


def solution_to_graph(problem: Problem, graph: PoseGraph) -> PoseGraph:
    """A copy of ``graph`` with the poses of ``problem`` (after a solve)."""
    return dataclasses.replace(graph, poses=problem.parameter_groups["poses"].values.copy())


def graph_error(graph: PoseGraph) -> float:
    """GTSAM's graph error of ``graph`` at its poses: 1/2 sum of e^T Lambda e over the between edges."""
    problem = build_problem(graph)
    group = problem.residual_groups[0]
    poses = problem.parameter_groups["poses"].values
    errors = np.empty((group.n_instances, group.residual_size))
    group.residual_type.residual_kernel((poses, poses), group.index, group.data, errors)
    information = graph.information[:, ROTATION_FIRST][:, :, ROTATION_FIRST] if graph.kind is SE3_RECORDS \
        else graph.information
    return 0.5 * float(np.einsum("ni,nij,nj->", errors, information, errors))
