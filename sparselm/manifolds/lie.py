r"""Lie-group helpers for SO(3), SE(3) and SE(2): exp, log and their Jacobians, as numba functions.

Every function works on scalars and tuples (no arrays, no allocation), so numba kernels can call
them inside ``prange`` loops. Conventions, used by every manifold and pose-graph residual:

* A quaternion is a 4-tuple ``(x, y, z, w)``: vector part first, scalar last (the order of g2o
  files, Eigen's ``coeffs()`` and ``scipy.spatial.transform.Rotation.as_quat``). Products are
  Hamilton products; ``q`` rotates ``v`` as ``q v q*``, the matrix :func:`quaternion_to_matrix`.
* ``w^`` is the skew matrix with ``w^ v = w x v``; theta = |w|.
* SO(3): ``Exp(w) = I + sin(theta)/theta w^ + (1 - cos theta)/theta^2 w^ w^``; ``Log`` is its
  inverse with theta in [0, pi], computed from a quaternion as ``2 atan2(|v|, w) v / |v|`` (after
  flipping the sign so that w >= 0), accurate at small angles and near pi.
* The right Jacobian's inverse (``Log(Exp(w) Exp(d)) = w + Jr^-1(w) d + O(d^2)``) and the inverse of
  the left Jacobian ``V(w)`` (the SE(3) translation map) are

      Jr^-1(w) = I + 1/2 w^ + c(theta) w^ w^,      V^-1(w) = I - 1/2 w^ + c(theta) w^ w^,
      c(theta) = (1 - (theta/2) cot(theta/2)) / theta^2  = 1/12 + theta^2/720 + ...,
      V(w)     = I + a(theta) w^ + b(theta) w^ w^,
      a = (1 - cos theta)/theta^2 = 2 sin^2(theta/2)/theta^2,   b = (theta - sin theta)/theta^3.

* SE(3) with tangent ``xi = (w, v)``, rotation first (GTSAM's Pose3 order):
  ``Exp(w, v) = (Exp(w), V(w) v)`` and ``Log(R, t) = (w, V^-1(w) t)`` with ``w = Log(R)``.
* SE(2) with tangent ``(vx, vy, w)``, translation first (GTSAM's Pose2 order and g2o's):
  ``Exp(v, w) = (V2(w) v, w)``, ``V2(w) = [[s/w, -(1-c)/w], [(1-c)/w, s/w]]`` and
  ``Log(t, theta) = (W2(theta) t, theta)``, ``W2 = V2^-1 = [[h, theta/2], [-theta/2, h]]``,
  ``h(theta) = (theta/2) cot(theta/2) = 1 - theta^2/12 - ...``; angles are wrapped to (-pi, pi].

Every ratio that cancels at small angles switches to its Taylor series below a threshold where the
series' truncation error and the direct formula's round-off are both below 1e-13 relative.
"""
from __future__ import annotations

import math

from numba import njit

#: below these angles (radians) the series replace the closed forms
SMALL_ANGLE = 0.05
SMALL_ANGLE_DERIVATIVE = 0.1


@njit(cache=True)
def wrap_angle(theta):
    """theta wrapped to (-pi, pi] (radians)."""
    if -math.pi < theta <= math.pi:
        return theta
    wrapped = theta - 2.0 * math.pi * math.floor((theta + math.pi) / (2.0 * math.pi))
    return wrapped + 2.0 * math.pi if wrapped <= -math.pi else wrapped


@njit(cache=True)
def cross(a, b):
    """a x b for 3-tuples."""
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


@njit(cache=True)
def dot(a, b):
    """a . b for 3-tuples."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@njit(cache=True)
def quaternion_multiply(a, b):
    """Hamilton product a (x) b of (x, y, z, w) quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by,
            aw * by + ay * bw + az * bx - ax * bz,
            aw * bz + az * bw + ax * by - ay * bx,
            aw * bw - ax * bx - ay * by - az * bz)


@njit(cache=True)
def quaternion_conjugate(q):
    """q* (the inverse of a unit quaternion)."""
    return (-q[0], -q[1], -q[2], q[3])


@njit(cache=True)
def quaternion_normalize(q):
    """q / |q|."""
    n = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    return (q[0] / n, q[1] / n, q[2] / n, q[3] / n)


@njit(cache=True)
def quaternion_to_matrix(q):
    """The rotation matrix of a unit quaternion, as a row-major 9-tuple."""
    x, y, z, w = q
    return (1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w), 2.0 * (x * z + y * w),
            2.0 * (x * y + z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w),
            2.0 * (x * z - y * w), 2.0 * (y * z + x * w), 1.0 - 2.0 * (x * x + y * y))


@njit(cache=True)
def rotate(q, v):
    """R(q) v for a unit quaternion q and a 3-tuple v: v + 2 w (u x v) + 2 u x (u x v), u = vec(q)."""
    u = (q[0], q[1], q[2])
    uv = cross(u, v)
    uuv = cross(u, uv)
    return (v[0] + 2.0 * (q[3] * uv[0] + uuv[0]), v[1] + 2.0 * (q[3] * uv[1] + uuv[1]),
            v[2] + 2.0 * (q[3] * uv[2] + uuv[2]))


@njit(cache=True)
def so3_exp(w):
    """Exp of a rotation vector w (radians) as a unit quaternion (x, y, z, w)."""
    theta2 = w[0] * w[0] + w[1] * w[1] + w[2] * w[2]
    theta = math.sqrt(theta2)
    if theta < SMALL_ANGLE:
        k = 0.5 - theta2 / 48.0 + theta2 * theta2 / 3840.0 - theta2 * theta2 * theta2 / 645120.0
    else:
        k = math.sin(0.5 * theta) / theta
    return (k * w[0], k * w[1], k * w[2], math.cos(0.5 * theta))


@njit(cache=True)
def so3_log(q):
    """Log of a unit quaternion: the rotation vector (radians) with angle in [0, pi]."""
    x, y, z, w = q
    if w < 0.0:
        x, y, z, w = -x, -y, -z, -w
    n = math.sqrt(x * x + y * y + z * z)
    if n < 1e-4 * w:
        r2 = (n / w) ** 2
        k = 2.0 / w * (1.0 - r2 / 3.0 + r2 * r2 / 5.0)
    else:
        k = 2.0 * math.atan2(n, w) / n
    return (k * x, k * y, k * z)


@njit(cache=True)
def so3_inverse_jacobian_coefficients(theta):
    """(c, c'(theta)/theta) of c(theta) = (1 - (theta/2) cot(theta/2)) / theta^2 (module docstring)."""
    t2 = theta * theta
    if theta < SMALL_ANGLE_DERIVATIVE:
        c = 1.0 / 12.0 + t2 / 720.0 + t2 * t2 / 30240.0 + t2 * t2 * t2 / 1209600.0
        dc = 1.0 / 360.0 + t2 / 7560.0 + t2 * t2 / 201600.0 + t2 * t2 * t2 / 5987520.0
        return c, dc
    half = 0.5 * theta
    cot = math.cos(half) / math.sin(half)
    h = half * cot
    dh = 0.5 * cot - 0.25 * theta / (math.sin(half) ** 2)
    c = (1.0 - h) / t2
    return c, -dh / (t2 * theta) - 2.0 * c / t2


@njit(cache=True)
def so3_left_jacobian_coefficients(theta):
    """(a, b) with V(w) = I + a w^ + b w^ w^ (module docstring)."""
    t2 = theta * theta
    if theta < SMALL_ANGLE:
        a = 0.5 - t2 / 24.0 + t2 * t2 / 720.0
        b = 1.0 / 6.0 - t2 / 120.0 + t2 * t2 / 5040.0 - t2 * t2 * t2 / 362880.0
        return a, b
    s = math.sin(0.5 * theta)
    return 2.0 * s * s / t2, (theta - math.sin(theta)) / (t2 * theta)


@njit(cache=True)
def skew_polynomial(w, p, q):
    """I + p w^ + q w^ w^ as a row-major 9-tuple (w^ w^ = w w^T - |w|^2 I)."""
    t2 = dot(w, w)
    return (1.0 + q * (w[0] * w[0] - t2), -p * w[2] + q * w[0] * w[1], p * w[1] + q * w[0] * w[2],
            p * w[2] + q * w[1] * w[0], 1.0 + q * (w[1] * w[1] - t2), -p * w[0] + q * w[1] * w[2],
            -p * w[1] + q * w[2] * w[0], p * w[0] + q * w[2] * w[1], 1.0 + q * (w[2] * w[2] - t2))


@njit(cache=True)
def matrix_vector(m, v):
    """m v for a row-major 9-tuple m and a 3-tuple v."""
    return (m[0] * v[0] + m[1] * v[1] + m[2] * v[2], m[3] * v[0] + m[4] * v[1] + m[5] * v[2],
            m[6] * v[0] + m[7] * v[1] + m[8] * v[2])


@njit(cache=True)
def so3_right_jacobian_inverse(w):
    """Jr^-1(w) as a row-major 9-tuple: Log(Exp(w) Exp(d)) = w + Jr^-1(w) d + O(d^2), |w| < pi."""
    c, _ = so3_inverse_jacobian_coefficients(math.sqrt(dot(w, w)))
    return skew_polynomial(w, 0.5, c)


@njit(cache=True)
def se3_exp(w, v):
    """Exp of the SE(3) tangent (w, v) (rotation first): (unit quaternion, translation V(w) v)."""
    a, b = so3_left_jacobian_coefficients(math.sqrt(dot(w, w)))
    return so3_exp(w), matrix_vector(skew_polynomial(w, a, b), v)


@njit(cache=True)
def se3_log(q, t):
    """Log of the pose (q, t): the tangent (w, rho) with w = Log(q), rho = V^-1(w) t."""
    w = so3_log(q)
    c, _ = so3_inverse_jacobian_coefficients(math.sqrt(dot(w, w)))
    return w, matrix_vector(skew_polynomial(w, -0.5, c), t)


@njit(cache=True)
def se2_exp(vx, vy, w):
    """Exp of the SE(2) tangent (vx, vy, w): the pose (x, y, theta), theta = wrap(w)."""
    t2 = w * w
    if abs(w) < SMALL_ANGLE:
        s_w = 1.0 - t2 / 6.0 + t2 * t2 / 120.0
        c_w = w * (0.5 - t2 / 24.0 + t2 * t2 / 720.0)
    else:
        s_w = math.sin(w) / w
        c_w = 2.0 * math.sin(0.5 * w) ** 2 / w
    return s_w * vx - c_w * vy, c_w * vx + s_w * vy, wrap_angle(w)


@njit(cache=True)
def se2_log_coefficients(theta):
    """(h, h') of h(theta) = (theta/2) cot(theta/2), the diagonal of W2 = V2^-1."""
    t2 = theta * theta
    if abs(theta) < SMALL_ANGLE_DERIVATIVE:
        return (1.0 - t2 / 12.0 - t2 * t2 / 720.0 - t2 * t2 * t2 / 30240.0,
                -theta / 6.0 - theta * t2 / 180.0 - theta * t2 * t2 / 5040.0)
    half = 0.5 * theta
    cot = math.cos(half) / math.sin(half)
    return half * cot, 0.5 * cot - 0.25 * theta / (math.sin(half) ** 2)


@njit(cache=True)
def se2_log(x, y, theta):
    """Log of the pose (x, y, theta): (W2(theta') (x, y), theta') with theta' = wrap(theta)."""
    th = wrap_angle(theta)
    h, _ = se2_log_coefficients(th)
    return h * x + 0.5 * th * y, -0.5 * th * x + h * y, th


@njit(cache=True)
def se2_compose(a, b):
    """a * b of SE(2) poses (x, y, theta) (theta wrapped)."""
    c, s = math.cos(a[2]), math.sin(a[2])
    return a[0] + c * b[0] - s * b[1], a[1] + s * b[0] + c * b[1], wrap_angle(a[2] + b[2])


@njit(cache=True)
def se2_inverse(a):
    """a^-1 of an SE(2) pose (x, y, theta)."""
    c, s = math.cos(a[2]), math.sin(a[2])
    return -c * a[0] - s * a[1], s * a[0] - c * a[1], wrap_angle(-a[2])


@njit(cache=True)
def matrix_multiply(a, b):
    """a b for row-major 9-tuples."""
    return (a[0] * b[0] + a[1] * b[3] + a[2] * b[6], a[0] * b[1] + a[1] * b[4] + a[2] * b[7],
            a[0] * b[2] + a[1] * b[5] + a[2] * b[8],
            a[3] * b[0] + a[4] * b[3] + a[5] * b[6], a[3] * b[1] + a[4] * b[4] + a[5] * b[7],
            a[3] * b[2] + a[4] * b[5] + a[5] * b[8],
            a[6] * b[0] + a[7] * b[3] + a[8] * b[6], a[6] * b[1] + a[7] * b[4] + a[8] * b[7],
            a[6] * b[2] + a[7] * b[5] + a[8] * b[8])


@njit(cache=True)
def skew(v):
    """v^ as a row-major 9-tuple."""
    return (0.0, -v[2], v[1], v[2], 0.0, -v[0], -v[1], v[0], 0.0)
