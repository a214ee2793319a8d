r"""The BAL / Snavely camera model and its reprojection residual, as numba kernels.

Camera model
------------
A BAL camera is 9 numbers ``[w0, w1, w2, t0, t1, t2, f, k1, k2]``: a rotation ``w`` in angle-axis
(Rodrigues) form, a translation ``t``, a focal length ``f`` and two radial distortion coefficients.
A world point ``X`` (3 numbers) is seen at

.. math::

    Q = R(w) X, \qquad P = Q + t, \qquad p = -P_{0:2} / P_2, \qquad
    d = 1 + k_1 |p|^2 + k_2 |p|^4, \qquad \hat{u} = f\, d\, p,

and the residual is ``r = u_hat - u_observed`` (2 numbers, pixels; the minus sign in ``p`` is the
BAL convention that the camera looks down its -z axis). This is Ceres' ``SnavelyReprojectionError``.

Rotation (Rodrigues)
--------------------
With ``theta = |w|``, ``W = [w]_x`` (so ``W y = w x y``) and ``W^2 = w w^T - theta^2 I``,

.. math::

    R(w) = \exp(W) = I + a W + b W^2 = \cos\theta\, I + a W + b\, w w^T,

    a = \sin\theta / \theta, \qquad b = (1 - \cos\theta) / \theta^2 = 2 \sin^2(\theta/2) / \theta^2.

Derivative with respect to the angle-axis vector
------------------------------------------------
The left Jacobian of SO(3) is

.. math::

    J_l(w) = I + b W + c W^2 = a I + b W + c\, w w^T, \qquad c = (\theta - \sin\theta) / \theta^3

(the second form uses ``1 - c theta^2 = a``). It satisfies ``exp([w + delta]_x) =
exp([J_l(w) delta]_x) exp([w]_x) + O(|delta|^2)``, hence

.. math::

    R(w + \delta) X = (I + [J_l \delta]_x) Q + O(\delta^2) = Q - [Q]_x J_l(w) \delta + O(\delta^2),
    \qquad \partial Q / \partial w = -[Q]_x J_l(w).

It is well defined for every ``w`` (at ``theta = pi``: ``a = 0``, ``b = 2/pi^2``, ``c = 1/pi^2``);
only its inverse is singular, at ``theta = 2 pi``. The three coefficients have a removable
singularity at ``theta = 0`` and ``c`` suffers cancellation for small ``theta``: for
``theta^2 < 1e-2`` they are evaluated by their Taylor series through ``theta^8``

.. math::

    a = \sum_k (-1)^k \theta^{2k} / (2k+1)!, \quad b = \sum_k (-1)^k \theta^{2k} / (2k+2)!, \quad
    c = \sum_k (-1)^k \theta^{2k} / (2k+3)!,

whose truncation error there is below 1e-17 (relative), and which are exact at ``theta = 0``
(``a = 1, b = 1/2, c = 1/6``: ``R = I``, ``J_l = I``). Above the threshold the closed forms are
accurate (``b`` by its half-angle form; the cancellation in ``c`` costs at most ~1e-13 relative,
and ``c`` is multiplied by ``|w|^2`` anyway).

Chain rule through projection and distortion
--------------------------------------------
With ``z = 1 / P_2``: ``p = (-P_0 z, -P_1 z)`` and

.. math::

    \partial p / \partial P = -z \begin{pmatrix} 1 & 0 & p_0 \\ 0 & 1 & p_1 \end{pmatrix}.

With ``r2 = |p|^2``, ``d = 1 + r2 (k1 + k2 r2)`` and ``g = 2 (k1 + 2 k2 r2)`` (so
``partial d / partial p = g p``):

.. math::

    M = \partial \hat{u} / \partial p = f (d I + g\, p p^T), \qquad
    A = \partial r / \partial P = M\, \partial p / \partial P  \quad (2 \times 3).

Then, for each residual row ``k`` with ``A_k`` the k-th row of ``A``:

* ``dr/dw`` row ``k`` = ``-(A_k [Q]_x) J_l = (Q x A_k)^T J_l`` (because ``A_k^T [Q]_x = (A_k x Q)^T``),
* ``dr/dt = A`` (``partial P / partial t = I``),
* ``dr/df = d p``, ``dr/dk1 = f r2 p``, ``dr/dk2 = f r2^2 p``,
* ``dr/dX = A R`` (``partial P / partial X = R``).

Kernels
-------
:data:`BAL_REPROJECTION` is written once, as the residual function :func:`snavely_reprojection` of
one observation with the rotation matrix precomputed per camera; :func:`sparselm.residual` derives
its exact Jacobian and generates both kernels (``params = (cameras (nc, 9), points (np, 3))``,
``index (n, 2)`` int64 ``[camera, point]``, ``data (n, 2)`` the observed pixel). The derivation above
is that of the hand-fused Jacobian kernel :func:`bal_reprojection_jacobians` (``R`` and ``J_l`` once
per camera, then scalar arithmetic per observation), kept as :data:`BAL_REPROJECTION_HANDWRITTEN`: the
generated Jacobian must equal it (to 1e-12 relative, tested), and benchmarks/bench_residual_function.py
compares their speed.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from sparselm.residuals.base import ResidualType
from sparselm.residuals.function import residual
from sparselm.residuals.geometry import angle_axis_to_matrix, matrix_times

__all__ = [
    "BAL_REPROJECTION",
    "bal_reprojection_jacobians",
    "rotation_matrices",
    "left_jacobians",
    "angle_axis_rotate_point",
    "project",
    "snavely_reprojection",
    "reprojection_pixel_errors",
    "BAL_REPROJECTION_HANDWRITTEN",
]

#: below this theta^2 the SO(3) coefficients are evaluated by their Taylor series.
_TAYLOR_THETA2 = 1e-2


@njit(cache=True, fastmath=False)
def _so3_coefficients(w0, w1, w2):
    """Return (cos theta, a, b, c) for the angle-axis vector w (see the module docstring)."""
    t2 = w0 * w0 + w1 * w1 + w2 * w2
    if t2 < _TAYLOR_THETA2:
        t4 = t2 * t2
        t6 = t4 * t2
        t8 = t4 * t4
        a = 1.0 - t2 / 6.0 + t4 / 120.0 - t6 / 5040.0 + t8 / 362880.0
        b = 0.5 - t2 / 24.0 + t4 / 720.0 - t6 / 40320.0 + t8 / 3628800.0
        c = 1.0 / 6.0 - t2 / 120.0 + t4 / 5040.0 - t6 / 362880.0 + t8 / 39916800.0
        cs = 1.0 - t2 * b
    else:
        theta = math.sqrt(t2)
        s = math.sin(theta)
        cs = math.cos(theta)
        hs = math.sin(0.5 * theta)
        a = s / theta
        b = 2.0 * hs * hs / t2
        c = (theta - s) / (t2 * theta)
    return cs, a, b, c


@njit(cache=True, fastmath=False)
def _fill_camera_cache(w0, w1, w2, cache, j, with_jl):
    """Write R(w) (row-major) into cache[j, 0:9] and, if with_jl, J_l(w) into cache[j, 9:18]."""
    cs, a, b, c = _so3_coefficients(w0, w1, w2)
    cache[j, 0] = cs + b * w0 * w0
    cache[j, 1] = -a * w2 + b * w0 * w1
    cache[j, 2] = a * w1 + b * w0 * w2
    cache[j, 3] = a * w2 + b * w0 * w1
    cache[j, 4] = cs + b * w1 * w1
    cache[j, 5] = -a * w0 + b * w1 * w2
    cache[j, 6] = -a * w1 + b * w0 * w2
    cache[j, 7] = a * w0 + b * w1 * w2
    cache[j, 8] = cs + b * w2 * w2
    if with_jl:
        cache[j, 9] = a + c * w0 * w0
        cache[j, 10] = -b * w2 + c * w0 * w1
        cache[j, 11] = b * w1 + c * w0 * w2
        cache[j, 12] = b * w2 + c * w0 * w1
        cache[j, 13] = a + c * w1 * w1
        cache[j, 14] = -b * w0 + c * w1 * w2
        cache[j, 15] = -b * w1 + c * w0 * w2
        cache[j, 16] = b * w0 + c * w1 * w2
        cache[j, 17] = a + c * w2 * w2


@njit(parallel=True, fastmath=False, cache=True)
def rotation_matrices(w):
    """R(w) for each row of ``w`` (n, 3) angle-axis vectors: (n, 3, 3)."""
    n = w.shape[0]
    cache = np.empty((n, 9))
    for j in prange(n):
        _fill_camera_cache(w[j, 0], w[j, 1], w[j, 2], cache, j, False)
    return cache.reshape((n, 3, 3))


@njit(parallel=True, fastmath=False, cache=True)
def left_jacobians(w):
    """The left Jacobian of SO(3) J_l(w) for each row of ``w`` (n, 3): (n, 3, 3)."""
    n = w.shape[0]
    cache = np.empty((n, 18))
    for j in prange(n):
        _fill_camera_cache(w[j, 0], w[j, 1], w[j, 2], cache, j, True)
    return np.ascontiguousarray(cache[:, 9:]).reshape((n, 3, 3))


@njit(parallel=True, fastmath=False, cache=True)
def angle_axis_rotate_point(w, x):
    """R(w_i) x_i for each row i of ``w`` (n, 3) and ``x`` (n, 3): (n, 3)."""
    n = w.shape[0]
    out = np.empty((n, 3))
    for i in prange(n):
        w0 = w[i, 0]
        w1 = w[i, 1]
        w2 = w[i, 2]
        x0 = x[i, 0]
        x1 = x[i, 1]
        x2 = x[i, 2]
        cs, a, b, c = _so3_coefficients(w0, w1, w2)
        wx = w0 * x0 + w1 * x1 + w2 * x2
        # R x = cos(theta) x + a (w x x) + b (w . x) w
        out[i, 0] = cs * x0 + a * (w1 * x2 - w2 * x1) + b * wx * w0
        out[i, 1] = cs * x1 + a * (w2 * x0 - w0 * x2) + b * wx * w1
        out[i, 2] = cs * x2 + a * (w0 * x1 - w1 * x0) + b * wx * w2
    return out


def project(cameras, points, camera_index, point_index):
    """Predicted pixels f d(p) p of points[point_index[i]] in cameras[camera_index[i]]: (n, 2)."""
    index = np.ascontiguousarray(np.column_stack([camera_index, point_index]), dtype=np.int64)
    out = np.empty((index.shape[0], 2))
    BAL_REPROJECTION.residual_kernel((cameras, points), index, np.zeros((index.shape[0], 2)), out)
    return out


@njit(parallel=True, fastmath=False, cache=True)
def bal_reprojection_jacobians(params, index, data, residuals, jacobians):
    """Jacobian kernel of :data:`BAL_REPROJECTION`: residuals, d r / d camera (n, 2, 9) and
    d r / d point (n, 2, 3) (calling convention of sparselm.residuals.base)."""
    cameras = params[0]
    points = params[1]
    jc = jacobians[0]
    jp = jacobians[1]
    nc = cameras.shape[0]
    n = index.shape[0]
    cache = np.empty((nc, 18))
    for j in prange(nc):
        _fill_camera_cache(cameras[j, 0], cameras[j, 1], cameras[j, 2], cache, j, True)
    for i in prange(n):
        cj = index[i, 0]
        pj = index[i, 1]
        r00 = cache[cj, 0]
        r01 = cache[cj, 1]
        r02 = cache[cj, 2]
        r10 = cache[cj, 3]
        r11 = cache[cj, 4]
        r12 = cache[cj, 5]
        r20 = cache[cj, 6]
        r21 = cache[cj, 7]
        r22 = cache[cj, 8]
        f = cameras[cj, 6]
        k1 = cameras[cj, 7]
        k2 = cameras[cj, 8]
        x0 = points[pj, 0]
        x1 = points[pj, 1]
        x2 = points[pj, 2]
        # Q = R X, P = Q + t
        q0 = r00 * x0 + r01 * x1 + r02 * x2
        q1 = r10 * x0 + r11 * x1 + r12 * x2
        q2 = r20 * x0 + r21 * x1 + r22 * x2
        iz = 1.0 / (q2 + cameras[cj, 5])
        px = -(q0 + cameras[cj, 3]) * iz
        py = -(q1 + cameras[cj, 4]) * iz
        r2 = px * px + py * py
        d = 1.0 + r2 * (k1 + k2 * r2)
        fd = f * d
        residuals[i, 0] = fd * px - data[i, 0]
        residuals[i, 1] = fd * py - data[i, 1]
        # M = f (d I + g p p^T), A = M dp/dP = -z M [[1, 0, p0], [0, 1, p1]]
        g = 2.0 * (k1 + 2.0 * k2 * r2)
        fg = f * g
        m00 = fd + fg * px * px
        m01 = fg * px * py
        m11 = fd + fg * py * py
        a00 = -iz * m00
        a01 = -iz * m01
        a02 = -iz * (m00 * px + m01 * py)
        a10 = -iz * m01
        a11 = -iz * m11
        a12 = -iz * (m01 * px + m11 * py)
        # v_k = Q x A_k; d r_k / d w = v_k^T J_l
        v00 = q1 * a02 - q2 * a01
        v01 = q2 * a00 - q0 * a02
        v02 = q0 * a01 - q1 * a00
        v10 = q1 * a12 - q2 * a11
        v11 = q2 * a10 - q0 * a12
        v12 = q0 * a11 - q1 * a10
        l00 = cache[cj, 9]
        l01 = cache[cj, 10]
        l02 = cache[cj, 11]
        l10 = cache[cj, 12]
        l11 = cache[cj, 13]
        l12 = cache[cj, 14]
        l20 = cache[cj, 15]
        l21 = cache[cj, 16]
        l22 = cache[cj, 17]
        jc[i, 0, 0] = v00 * l00 + v01 * l10 + v02 * l20
        jc[i, 0, 1] = v00 * l01 + v01 * l11 + v02 * l21
        jc[i, 0, 2] = v00 * l02 + v01 * l12 + v02 * l22
        jc[i, 1, 0] = v10 * l00 + v11 * l10 + v12 * l20
        jc[i, 1, 1] = v10 * l01 + v11 * l11 + v12 * l21
        jc[i, 1, 2] = v10 * l02 + v11 * l12 + v12 * l22
        # translation
        jc[i, 0, 3] = a00
        jc[i, 0, 4] = a01
        jc[i, 0, 5] = a02
        jc[i, 1, 3] = a10
        jc[i, 1, 4] = a11
        jc[i, 1, 5] = a12
        # intrinsics
        fr2 = f * r2
        fr4 = fr2 * r2
        jc[i, 0, 6] = d * px
        jc[i, 0, 7] = fr2 * px
        jc[i, 0, 8] = fr4 * px
        jc[i, 1, 6] = d * py
        jc[i, 1, 7] = fr2 * py
        jc[i, 1, 8] = fr4 * py
        # point: A R
        jp[i, 0, 0] = a00 * r00 + a01 * r10 + a02 * r20
        jp[i, 0, 1] = a00 * r01 + a01 * r11 + a02 * r21
        jp[i, 0, 2] = a00 * r02 + a01 * r12 + a02 * r22
        jp[i, 1, 0] = a10 * r00 + a11 * r10 + a12 * r20
        jp[i, 1, 1] = a10 * r01 + a11 * r11 + a12 * r21
        jp[i, 1, 2] = a10 * r02 + a11 * r12 + a12 * r22


def snavely_reprojection(camera, point, observed, R):
    """The BAL reprojection residual of one observation, as a residual function (see the module
    docstring): ``R`` is the camera's rotation matrix, precomputed once per camera."""
    P = [q + t for q, t in zip(matrix_times(R, point), (camera[3], camera[4], camera[5]))]
    px = -P[0] / P[2]
    py = -P[1] / P[2]
    r2 = px * px + py * py
    fd = camera[6] * (1.0 + r2 * (camera[7] + camera[8] * r2))
    return [fd * px - observed[0], fd * py - observed[1]]


def reprojection_pixel_errors(slot_values, index, data) -> np.ndarray:
    """|projection - observation| in pixels per observation, from (cameras, points), the (n, 2) index
    (camera, point) and the (n, 2) observed pixels: the ``observation_error`` of BAL_REPROJECTION."""
    cameras, points = slot_values
    predicted = project(np.ascontiguousarray(cameras, dtype=np.float64), np.ascontiguousarray(points, dtype=np.float64),
                        np.ascontiguousarray(index[:, 0]), np.ascontiguousarray(index[:, 1]))
    return np.hypot(predicted[:, 0] - data[:, 0], predicted[:, 1] - data[:, 1])


#: The BAL reprojection residual: 2 rows, slots (camera 9, point 3), data = observed pixel (2). Its
#: kernels are generated by :func:`sparselm.residual` from :func:`snavely_reprojection` (exact
#: Jacobian; the rotation matrix and its derivative computed once per camera per evaluation).
BAL_REPROJECTION = residual(residual_size=2, block_sizes=(9, 3), data_size=2, name="bal_reprojection",
                            precompute={"R": ("camera", angle_axis_to_matrix)},
                            observation_error=reprojection_pixel_errors)(snavely_reprojection)

#: The same residual with the hand-fused Jacobian kernel :func:`bal_reprojection_jacobians` (derived
#: in the module docstring): kept as an independent check of the generated kernel and as the
#: baseline of benchmarks/bench_residual_function.py.
BAL_REPROJECTION_HANDWRITTEN = ResidualType("bal_reprojection_handwritten", 2, (9, 3), 2,
                                            BAL_REPROJECTION.residual_kernel, bal_reprojection_jacobians,
                                            observation_error=reprojection_pixel_errors)
