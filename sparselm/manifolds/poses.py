r"""Rigid poses: SE(3) as translation + unit quaternion, SE(2) as (x, y, theta); right perturbations.

``se3``: x = (tx, ty, tz, qx, qy, qz, qw) (the order of a g2o ``VERTEX_SE3:QUAT`` line), the pose
T = (R(q), t) mapping body to world coordinates. Tangent xi = (w, v), rotation first (GTSAM's
Pose3 order), and

    T [+] xi = T Exp(xi) = (R Exp(w), t + R V(w) v),        Y [-] T = Log(T^-1 Y),

the full SE(3) exponential applied on the right, as GTSAM's Pose3 retract with its Expmap chart.
At xi = 0 the plus-Jacobian (7 x 6) is d t/d v = R and d q/d w = the quaternion one (see
:mod:`sparselm.manifolds.rotations`), zero elsewhere. Whatever the retraction, the pose-graph
objective is a function of the poses only, so it is the one GTSAM and g2o minimise.

``se2``: x = (x, y, theta) (theta in radians), tangent (vx, vy, w) (GTSAM's Pose2 order):

    T [+] xi = T Exp(xi) = (t + R(theta) V2(w) v, wrap(theta + w)),      Y [-] T = Log(T^-1 Y),

with plus-Jacobian [[R(theta), 0], [0, 1]] at xi = 0.
"""
from __future__ import annotations

import math

from numba import njit, prange

from sparselm.manifolds import lie
from sparselm.manifolds.base import Manifold
from sparselm.manifolds.rotations import write_quaternion_plus_jacobian


@njit(cache=True)
def se3_block(x, b):
    """(t, q) of row b of an (n, 7) array of SE(3) blocks (tx, ty, tz, qx, qy, qz, qw)."""
    return (x[b, 0], x[b, 1], x[b, 2]), (x[b, 3], x[b, 4], x[b, 5], x[b, 6])


@njit(parallel=True, cache=True)
def _se3_plus(x, delta, out):
    for b in prange(x.shape[0]):
        t, q = se3_block(x, b)
        dq, dt = lie.se3_exp((delta[b, 0], delta[b, 1], delta[b, 2]), (delta[b, 3], delta[b, 4], delta[b, 5]))
        moved = lie.rotate(q, dt)
        qn = lie.quaternion_normalize(lie.quaternion_multiply(q, dq))
        for c in range(3):
            out[b, c] = t[c] + moved[c]
        for c in range(4):
            out[b, 3 + c] = qn[c]


@njit(parallel=True, cache=True)
def _se3_minus(y, x, out):
    for b in prange(x.shape[0]):
        tx, qx = se3_block(x, b)
        ty, qy = se3_block(y, b)
        qxc = lie.quaternion_conjugate(qx)
        w, rho = lie.se3_log(lie.quaternion_multiply(qxc, qy),
                             lie.rotate(qxc, (ty[0] - tx[0], ty[1] - tx[1], ty[2] - tx[2])))
        for c in range(3):
            out[b, c] = w[c]
            out[b, 3 + c] = rho[c]


@njit(parallel=True, cache=True)
def _se3_plus_jacobian(x, out):
    for b in prange(x.shape[0]):
        _, q = se3_block(x, b)
        rot = lie.quaternion_to_matrix(q)
        for r in range(7):
            for c in range(6):
                out[b, r, c] = 0.0
        for r in range(3):
            for c in range(3):
                out[b, r, 3 + c] = rot[3 * r + c]
        write_quaternion_plus_jacobian(q, out[b], 3, 0)


@njit(parallel=True, cache=True)
def _se2_plus(x, delta, out):
    for b in prange(x.shape[0]):
        step = lie.se2_exp(delta[b, 0], delta[b, 1], delta[b, 2])
        moved = lie.se2_compose((x[b, 0], x[b, 1], x[b, 2]), step)
        for c in range(3):
            out[b, c] = moved[c]


@njit(parallel=True, cache=True)
def _se2_minus(y, x, out):
    for b in prange(x.shape[0]):
        rel = lie.se2_compose(lie.se2_inverse((x[b, 0], x[b, 1], x[b, 2])), (y[b, 0], y[b, 1], y[b, 2]))
        v = lie.se2_log(rel[0], rel[1], rel[2])
        for c in range(3):
            out[b, c] = v[c]


@njit(parallel=True, cache=True)
def _se2_plus_jacobian(x, out):
    for b in prange(x.shape[0]):
        c, s = math.cos(x[b, 2]), math.sin(x[b, 2])
        out[b, 0, 0], out[b, 0, 1], out[b, 0, 2] = c, -s, 0.0
        out[b, 1, 0], out[b, 1, 1], out[b, 1, 2] = s, c, 0.0
        out[b, 2, 0], out[b, 2, 1], out[b, 2, 2] = 0.0, 0.0, 1.0


SE3 = Manifold("se3", 7, 6, _se3_plus, _se3_minus, _se3_plus_jacobian,
               description="pose (tx, ty, tz, qx, qy, qz, qw), T [+] xi = T Exp(xi), xi = (w, v)")
SE2 = Manifold("se2", 3, 3, _se2_plus, _se2_minus, _se2_plus_jacobian,
               description="pose (x, y, theta), T [+] xi = T Exp(xi), xi = (vx, vy, w)")
