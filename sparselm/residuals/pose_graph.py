r"""Pose-graph residual types: relative pose between two SE(3) or two SE(2) poses, and pose priors.

The error of a between factor with measurement Z (the pose of j seen from i) is GTSAM's for a
g2o file (``BetweenFactor``): the full logarithm of the discrepancy

    e = Log(E),   E = Z^-1 T_i^-1 T_j,

rotation first for SE(3), e = (w, rho) with w = Log(R_E) and rho = V^-1(w) t_E, and
(vx, vy, theta) for SE(2) (GTSAM's Pose2 order, also g2o's); a prior on a pose T is the same with
T_i = identity: e = Log(Z^-1 T). Weight the group with the information matrix in the same order
(:func:`sparselm.g2o.problem` reorders g2o's (translation, rotation) blocks), and the cost
1/2 sum e^T Lambda e is GTSAM's graph error.

SE(3) Jacobians, in the tangent of the ``se3`` manifold (T [+] xi = T Exp(xi), xi = (w, v)).
Perturbing T_j moves E to E Exp(xi); for the rotation part d w = Jr^-1(w) d w_j and, with
t_E = R_z^T (R_i^T (t_j - t_i) - t_z), d t_E = R_E d v_j. Differentiating
rho = t_E - 1/2 w x t_E + c(theta) w x (w x t_E) (see :mod:`sparselm.manifolds.lie`):

    d rho / d w   = M = 1/2 t_E^ + c ((w.t_E) I + w t_E^T - 2 t_E w^T) + (c'/theta) (w x (w x t_E)) w^T
    d e / d xi_j  = [[Jr^-1, 0], [M Jr^-1, V^-1 R_E]]

and, since T_i Exp(xi) gives E Exp(-Ad(T_j^-1 T_i) xi),

    d e / d xi_i  = -(d e / d xi_j) Ad(T_j^-1 T_i),     Ad(T_j^-1 T_i) = [[A, 0], [-A d^, A]],

with A = R_ij^T, R_ij = R_i^T R_j and d = R_i^T (t_j - t_i). These kernels write tangent
Jacobians directly (``tangent_manifolds``).

SE(2) kernels write ambient Jacobians (with respect to x, y, theta; the engine applies the
``se2`` plus-Jacobian). With phi = theta_i + theta_z, t' = R(phi)^T (t_j - t_i),
t_E = t' - R_z^T t_z, theta_E = wrap(theta_j - theta_i - theta_z) and
W2 = [[h, theta_E/2], [-theta_E/2, h]]:

    d e_v / d t_j = W2 R(phi)^T,        d e_v / d theta_j = W2' t_E,
    d e_v / d t_i = -W2 R(phi)^T,       d e_v / d theta_i = W2 (t'_y, -t'_x) - W2' t_E,
    d theta_E / d theta_j = 1,          d theta_E / d theta_i = -1,

W2' = [[h', 1/2], [-1/2, h']]. ``SE3_BETWEEN_G2O`` is g2o's own error instead: (2 vec(q_E),
t_E) with the sign of q_E chosen so that its w >= 0 (rotation first as well).
"""
from __future__ import annotations

import math

from numba import njit, prange

from sparselm.manifolds import SE3, lie
from sparselm.residuals.base import ResidualType

__all__ = ["SE3_BETWEEN", "SE3_BETWEEN_G2O", "SE3_PRIOR", "SE2_BETWEEN", "SE2_PRIOR"]

_IDENTITY_T = (0.0, 0.0, 0.0)
_IDENTITY_Q = (0.0, 0.0, 0.0, 1.0)


@njit(cache=True)
def _pose3(x, b):
    return (x[b, 0], x[b, 1], x[b, 2]), (x[b, 3], x[b, 4], x[b, 5], x[b, 6])


@njit(cache=True)
def _discrepancy3(ti, qi, tj, qj, tz, qz):
    """E = Z^-1 T_i^-1 T_j as (q_E, t_E), with q_ij = q_i* q_j and d = R_i^T (t_j - t_i)."""
    qic = lie.quaternion_conjugate(qi)
    q_ij = lie.quaternion_multiply(qic, qj)
    d = lie.rotate(qic, (tj[0] - ti[0], tj[1] - ti[1], tj[2] - ti[2]))
    qzc = lie.quaternion_conjugate(qz)
    q_e = lie.quaternion_multiply(qzc, q_ij)
    t_e = lie.rotate(qzc, (d[0] - tz[0], d[1] - tz[1], d[2] - tz[2]))
    return q_e, t_e, q_ij, d


@njit(cache=True)
def _se3_log_error(ti, qi, tj, qj, tz, qz, res, want_jacobian, jac_j, jac_i, has_i):
    """res = Log(Z^-1 T_i^-1 T_j); with want_jacobian also jac_j and (if has_i) jac_i (6 x 6)."""
    q_e, t_e, q_ij, d = _discrepancy3(ti, qi, tj, qj, tz, qz)
    w = lie.so3_log(q_e)
    theta = math.sqrt(lie.dot(w, w))
    c, dc = lie.so3_inverse_jacobian_coefficients(theta)
    wt = lie.cross(w, t_e)
    wwt = lie.cross(w, wt)
    for r in range(3):
        res[r] = w[r]
        res[3 + r] = t_e[r] - 0.5 * wt[r] + c * wwt[r]
    if not want_jacobian:
        return
    jinv = lie.skew_polynomial(w, 0.5, c)
    v_inv = lie.skew_polynomial(w, -0.5, c)
    wdt = lie.dot(w, t_e)
    ts = lie.skew(t_e)
    m = (0.5 * ts[0] + c * (wdt + w[0] * t_e[0] - 2.0 * t_e[0] * w[0]) + dc * wwt[0] * w[0],
         0.5 * ts[1] + c * (w[0] * t_e[1] - 2.0 * t_e[0] * w[1]) + dc * wwt[0] * w[1],
         0.5 * ts[2] + c * (w[0] * t_e[2] - 2.0 * t_e[0] * w[2]) + dc * wwt[0] * w[2],
         0.5 * ts[3] + c * (w[1] * t_e[0] - 2.0 * t_e[1] * w[0]) + dc * wwt[1] * w[0],
         0.5 * ts[4] + c * (wdt + w[1] * t_e[1] - 2.0 * t_e[1] * w[1]) + dc * wwt[1] * w[1],
         0.5 * ts[5] + c * (w[1] * t_e[2] - 2.0 * t_e[1] * w[2]) + dc * wwt[1] * w[2],
         0.5 * ts[6] + c * (w[2] * t_e[0] - 2.0 * t_e[2] * w[0]) + dc * wwt[2] * w[0],
         0.5 * ts[7] + c * (w[2] * t_e[1] - 2.0 * t_e[2] * w[1]) + dc * wwt[2] * w[1],
         0.5 * ts[8] + c * (wdt + w[2] * t_e[2] - 2.0 * t_e[2] * w[2]) + dc * wwt[2] * w[2])
    mj = lie.matrix_multiply(m, jinv)
    vr = lie.matrix_multiply(v_inv, lie.quaternion_to_matrix(q_e))
    for r in range(3):
        for k in range(3):
            jac_j[r, k] = jinv[3 * r + k]
            jac_j[r, 3 + k] = 0.0
            jac_j[3 + r, k] = mj[3 * r + k]
            jac_j[3 + r, 3 + k] = vr[3 * r + k]
    if has_i:
        _chain_adjoint(jac_j, lie.quaternion_to_matrix(lie.quaternion_conjugate(q_ij)), d, jac_i)


@njit(cache=True)
def _chain_adjoint(jac_j, a, d, jac_i):
    """jac_i = -jac_j [[A, 0], [-A d^, A]] for 6 x 6 jac_j, A a row-major 9-tuple."""
    b = lie.matrix_multiply(a, lie.skew(d))
    for r in range(6):
        for k in range(3):
            s_rot = 0.0
            s_trans = 0.0
            for q in range(3):
                s_rot += -jac_j[r, q] * a[3 * q + k] + jac_j[r, 3 + q] * b[3 * q + k]
                s_trans -= jac_j[r, 3 + q] * a[3 * q + k]
            jac_i[r, k] = s_rot
            jac_i[r, 3 + k] = s_trans


@njit(parallel=True, cache=True)
def _se3_between_residuals(params, index, data, residuals):
    xi, xj = params[0], params[1]
    for n in prange(index.shape[0]):
        ti, qi = _pose3(xi, index[n, 0])
        tj, qj = _pose3(xj, index[n, 1])
        tz, qz = _pose3(data, n)
        _se3_log_error(ti, qi, tj, qj, tz, qz, residuals[n], False, residuals, residuals, False)


@njit(parallel=True, cache=True)
def _se3_between_jacobians(params, index, data, residuals, jacobians):
    xi, xj = params[0], params[1]
    jac_i, jac_j = jacobians[0], jacobians[1]
    for n in prange(index.shape[0]):
        ti, qi = _pose3(xi, index[n, 0])
        tj, qj = _pose3(xj, index[n, 1])
        tz, qz = _pose3(data, n)
        _se3_log_error(ti, qi, tj, qj, tz, qz, residuals[n], True, jac_j[n], jac_i[n], True)


@njit(parallel=True, cache=True)
def _se3_prior_residuals(params, index, data, residuals):
    x = params[0]
    for n in prange(index.shape[0]):
        t, q = _pose3(x, index[n, 0])
        tz, qz = _pose3(data, n)
        _se3_log_error(_IDENTITY_T, _IDENTITY_Q, t, q, tz, qz, residuals[n], False, residuals, residuals, False)


@njit(parallel=True, cache=True)
def _se3_prior_jacobians(params, index, data, residuals, jacobians):
    x = params[0]
    jac = jacobians[0]
    for n in prange(index.shape[0]):
        t, q = _pose3(x, index[n, 0])
        tz, qz = _pose3(data, n)
        _se3_log_error(_IDENTITY_T, _IDENTITY_Q, t, q, tz, qz, residuals[n], True, jac[n], jac[n], False)


@njit(cache=True)
def _se3_g2o_error(ti, qi, tj, qj, tz, qz, res, want_jacobian, jac_j, jac_i):
    """res = (2 vec(q_E), t_E) with w(q_E) >= 0; Jacobians in the se3 tangent."""
    q_e, t_e, q_ij, d = _discrepancy3(ti, qi, tj, qj, tz, qz)
    sign = 1.0 if q_e[3] >= 0.0 else -1.0
    for r in range(3):
        res[r] = 2.0 * sign * q_e[r]
        res[3 + r] = t_e[r]
    if not want_jacobian:
        return
    x, y, z, w = sign * q_e[0], sign * q_e[1], sign * q_e[2], sign * q_e[3]
    rot = (w, -z, y, z, w, -x, -y, x, w)  # w I + v^: d (2 vec(q_E (x) (d/2, 1))) / d d
    r_e = lie.quaternion_to_matrix(q_e)
    for r in range(3):
        for k in range(3):
            jac_j[r, k] = rot[3 * r + k]
            jac_j[r, 3 + k] = 0.0
            jac_j[3 + r, k] = 0.0
            jac_j[3 + r, 3 + k] = r_e[3 * r + k]
    _chain_adjoint(jac_j, lie.quaternion_to_matrix(lie.quaternion_conjugate(q_ij)), d, jac_i)


@njit(parallel=True, cache=True)
def _se3_g2o_residuals(params, index, data, residuals):
    xi, xj = params[0], params[1]
    for n in prange(index.shape[0]):
        ti, qi = _pose3(xi, index[n, 0])
        tj, qj = _pose3(xj, index[n, 1])
        tz, qz = _pose3(data, n)
        _se3_g2o_error(ti, qi, tj, qj, tz, qz, residuals[n], False, residuals, residuals)


@njit(parallel=True, cache=True)
def _se3_g2o_jacobians(params, index, data, residuals, jacobians):
    xi, xj = params[0], params[1]
    jac_i, jac_j = jacobians[0], jacobians[1]
    for n in prange(index.shape[0]):
        ti, qi = _pose3(xi, index[n, 0])
        tj, qj = _pose3(xj, index[n, 1])
        tz, qz = _pose3(data, n)
        _se3_g2o_error(ti, qi, tj, qj, tz, qz, residuals[n], True, jac_j[n], jac_i[n])


@njit(cache=True)
def _se2_log_error(xi, yi, thi, xj, yj, thj, zx, zy, zth, res, want_jacobian, jac_j, jac_i, has_i):
    """res = Log(Z^-1 T_i^-1 T_j) in (vx, vy, theta); ambient Jacobians (x, y, theta) if asked."""
    phi = thi + zth
    c, s = math.cos(phi), math.sin(phi)
    dx, dy = xj - xi, yj - yi
    tpx, tpy = c * dx + s * dy, -s * dx + c * dy
    cz, sz = math.cos(zth), math.sin(zth)
    tex, tey = tpx - (cz * zx + sz * zy), tpy - (-sz * zx + cz * zy)
    th = lie.wrap_angle(thj - thi - zth)
    h, dh = lie.se2_log_coefficients(th)
    res[0] = h * tex + 0.5 * th * tey
    res[1] = -0.5 * th * tex + h * tey
    res[2] = th
    if not want_jacobian:
        return
    # W2 R(phi)^T with W2 = [[h, th/2], [-th/2, h]], R^T = [[c, s], [-s, c]]
    a00, a01 = h * c - 0.5 * th * s, h * s + 0.5 * th * c
    a10, a11 = -0.5 * th * c - h * s, -0.5 * th * s + h * c
    wt0, wt1 = dh * tex + 0.5 * tey, -0.5 * tex + dh * tey
    jac_j[0, 0], jac_j[0, 1], jac_j[0, 2] = a00, a01, wt0
    jac_j[1, 0], jac_j[1, 1], jac_j[1, 2] = a10, a11, wt1
    jac_j[2, 0], jac_j[2, 1], jac_j[2, 2] = 0.0, 0.0, 1.0
    if has_i:
        jac_i[0, 0], jac_i[0, 1] = -a00, -a01
        jac_i[1, 0], jac_i[1, 1] = -a10, -a11
        jac_i[0, 2] = h * tpy - 0.5 * th * tpx - wt0
        jac_i[1, 2] = -0.5 * th * tpy - h * tpx - wt1
        jac_i[2, 0], jac_i[2, 1], jac_i[2, 2] = 0.0, 0.0, -1.0


@njit(parallel=True, cache=True)
def _se2_between_residuals(params, index, data, residuals):
    xi, xj = params[0], params[1]
    for n in prange(index.shape[0]):
        a, b = index[n, 0], index[n, 1]
        _se2_log_error(xi[a, 0], xi[a, 1], xi[a, 2], xj[b, 0], xj[b, 1], xj[b, 2], data[n, 0], data[n, 1],
                       data[n, 2], residuals[n], False, residuals, residuals, False)


@njit(parallel=True, cache=True)
def _se2_between_jacobians(params, index, data, residuals, jacobians):
    xi, xj = params[0], params[1]
    jac_i, jac_j = jacobians[0], jacobians[1]
    for n in prange(index.shape[0]):
        a, b = index[n, 0], index[n, 1]
        _se2_log_error(xi[a, 0], xi[a, 1], xi[a, 2], xj[b, 0], xj[b, 1], xj[b, 2], data[n, 0], data[n, 1],
                       data[n, 2], residuals[n], True, jac_j[n], jac_i[n], True)


@njit(parallel=True, cache=True)
def _se2_prior_residuals(params, index, data, residuals):
    x = params[0]
    for n in prange(index.shape[0]):
        b = index[n, 0]
        _se2_log_error(0.0, 0.0, 0.0, x[b, 0], x[b, 1], x[b, 2], data[n, 0], data[n, 1], data[n, 2],
                       residuals[n], False, residuals, residuals, False)


@njit(parallel=True, cache=True)
def _se2_prior_jacobians(params, index, data, residuals, jacobians):
    x = params[0]
    jac = jacobians[0]
    for n in prange(index.shape[0]):
        b = index[n, 0]
        _se2_log_error(0.0, 0.0, 0.0, x[b, 0], x[b, 1], x[b, 2], data[n, 0], data[n, 1], data[n, 2],
                       residuals[n], True, jac[n], jac[n], False)


#: Log(Z^-1 T_i^-1 T_j) between two ``se3`` poses; data row Z = (tx, ty, tz, qx, qy, qz, qw).
SE3_BETWEEN = ResidualType("se3_between", 6, (7, 7), 7, _se3_between_residuals, _se3_between_jacobians,
                           tangent_manifolds=(SE3, SE3))
#: g2o's error (2 vec(q_E), t_E) between two ``se3`` poses; data as SE3_BETWEEN.
SE3_BETWEEN_G2O = ResidualType("se3_between_g2o", 6, (7, 7), 7, _se3_g2o_residuals, _se3_g2o_jacobians,
                               tangent_manifolds=(SE3, SE3))
#: Log(Z^-1 T) of one ``se3`` pose; data row Z as above.
SE3_PRIOR = ResidualType("se3_prior", 6, (7,), 7, _se3_prior_residuals, _se3_prior_jacobians,
                         tangent_manifolds=(SE3,))
#: Log(Z^-1 T_i^-1 T_j) in (vx, vy, theta) between two (x, y, theta) poses; data row Z = (x, y, theta).
SE2_BETWEEN = ResidualType("se2_between", 3, (3, 3), 3, _se2_between_residuals, _se2_between_jacobians)
#: Log(Z^-1 T) of one (x, y, theta) pose; data row Z = (x, y, theta).
SE2_PRIOR = ResidualType("se2_prior", 3, (3,), 3, _se2_prior_residuals, _se2_prior_jacobians)
