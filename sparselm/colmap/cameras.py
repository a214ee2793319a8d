r"""COLMAP's camera models as numba projection functions with analytic Jacobians.

Projection (COLMAP's ``ImgFromCam``, ``src/colmap/sensor/models.h``)
--------------------------------------------------------------------
A point ``(u, v, w)`` in the camera frame (z forward) is projected only when ``w >= eps`` (machine
epsilon, 2.2e-16): COLMAP reports the projection as failed otherwise. Then

.. math::

    (a, b) = (u / w, v / w)                                    \quad\text{normalised coordinates}

    (\tilde a, \tilde b) = (a, b)\,\frac{\arctan \rho}{\rho}, \ \rho = |(a, b)|  \quad
    \text{(fisheye models only; the identity when } \rho \le \epsilon)

    x = f_x (\tilde a + \delta_u) + c_x, \qquad y = f_y (\tilde b + \delta_v) + c_y

with ``f_x = f_y = f`` for one-focal models and the distortion, written for every model in one form
with ``s = \tilde a^2 + \tilde b^2``,

.. math::

    R_1 = \frac{P(s) - Q(s)}{1 + Q(s)}, \quad P = \sum_{j=1}^{4} c_j s^j, \quad Q = \sum_{j=1}^{3} d_j s^j

    \delta_u = \tilde a R_1 + 2 p_1 \tilde a \tilde b + p_2 (s + 2 \tilde a^2) + s_1 s, \qquad
    \delta_v = \tilde b R_1 + 2 p_2 \tilde a \tilde b + p_1 (s + 2 \tilde b^2) + s_2 s.

(``R_1`` is COLMAP's ``radial`` for the polynomial models, where ``Q = 0`` and ``R_1 = P`` exactly,
and ``radial - 1`` for FULL_OPENCV's rational one.) Each model says which of its extra parameters
are ``c_j, d_j, p_1, p_2, s_1, s_2`` (absent ones are zero), see :data:`_LAYOUT`:

==========================  =====================================  ============================
model                       parameters                             distortion roles
==========================  =====================================  ============================
SIMPLE_PINHOLE, PINHOLE     f, cx, cy / fx, fy, cx, cy             none
SIMPLE_RADIAL               f, cx, cy, k                           c1 = k
RADIAL                      f, cx, cy, k1, k2                      c1, c2
OPENCV                      fx, fy, cx, cy, k1, k2, p1, p2         c1, c2, p1, p2
OPENCV_FISHEYE (fisheye)    fx, fy, cx, cy, k1, k2, k3, k4         c1..c4
FULL_OPENCV                 fx, fy, cx, cy, k1, k2, p1, p2,        c1, c2, p1, p2, c3, d1, d2, d3
                            k3, k4, k5, k6
SIMPLE_RADIAL_FISHEYE       f, cx, cy, k                           c1 (fisheye)
RADIAL_FISHEYE              f, cx, cy, k1, k2                      c1, c2 (fisheye)
THIN_PRISM_FISHEYE          fx, fy, cx, cy, k1, k2, p1, p2,        c1, c2, p1, p2, c3, c4,
                            k3, k4, sx1, sy1                       s1, s2 (fisheye)
==========================  =====================================  ============================

Pixel convention: COLMAP's. The image's upper-left corner is (0, 0), so the centre of the first
pixel is (0.5, 0.5) and of the last (width - 0.5, height - 0.5); the principal point and the 2-D
points stored in a model are both in this convention, so a residual is simply the projection minus
the stored 2-D point, with no half-pixel shift anywhere.

Jacobians
---------
With ``F = diag(f_x, f_y)`` and ``D = \partial(\delta_u, \delta_v) / \partial(\tilde a, \tilde b)``:

* ``\partial(x, y)/\partial(u, v, w) = F (I + D) G \begin{pmatrix} 1/w & 0 & -a/w \\ 0 & 1/w & -b/w
  \end{pmatrix}``, where ``G = \partial(\tilde a, \tilde b)/\partial(a, b)`` is the identity for
  non-fisheye models and, with ``h = \arctan\rho / \rho``, ``G = h I + (h'/\rho) (a, b)^T (a, b)``
  for fisheye ones (``h'/\rho = (1/(1+\rho^2) - h) / \rho^2``, by its series ``-2/3 + 4\rho^2/5``
  below ``\rho = 10^{-4}``);
* ``D_{00} = R_1 + 2\tilde a^2 R_1' + 2 p_1 \tilde b + 6 p_2 \tilde a + 2 s_1 \tilde a``,
  ``D_{01} = 2\tilde a\tilde b R_1' + 2 p_1 \tilde a + 2 p_2 \tilde b + 2 s_1 \tilde b``,
  ``D_{10} = 2\tilde a\tilde b R_1' + 2 p_2 \tilde b + 2 p_1 \tilde a + 2 s_2 \tilde a``,
  ``D_{11} = R_1 + 2\tilde b^2 R_1' + 2 p_2 \tilde a + 6 p_1 \tilde b + 2 s_2 \tilde b``, with
  ``R_1' = (P'(1 + Q) - (1 + P) Q') / (1 + Q)^2``;
* focal: ``\partial x / \partial f_x = \tilde a + \delta_u``, ``\partial y / \partial f_y =
  \tilde b + \delta_v`` (both in the one column ``f`` for one-focal models); principal point: the
  identity; extra parameters: ``F`` times ``\partial \delta / \partial c_j = (\tilde a, \tilde b)
  s^j / (1 + Q)``, ``\partial \delta / \partial d_j = -(\tilde a, \tilde b) s^j (1 + P)/(1 + Q)^2``,
  ``\partial \delta/\partial p_1 = (2\tilde a\tilde b, s + 2\tilde b^2)``,
  ``\partial \delta/\partial p_2 = (s + 2\tilde a^2, 2\tilde a\tilde b)``,
  ``\partial \delta/\partial s_1 = (s, 0)``, ``\partial \delta/\partial s_2 = (0, s)``.

Where the projection fails (``w < eps``) the functions return ok = False and zeros.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from sparselm.colmap.camera_models import CAMERA_MODELS

__all__ = ["PROJECTABLE_MODEL_IDS", "check_projectable", "img_from_cam", "img_from_cam_jacobians", "project_point"]

#: roles in a row of _LAYOUT: 0 fx, 1 fy, 2 cx, 3 cy (parameter positions), 4 fisheye flag,
#: 5-8 c1..c4, 9-11 d1..d3, 12 p1, 13 p2, 14 s1, 15 s2 (parameter positions, -1 when absent).
_N_ROLES = 16
_ROLES = {"c1": 5, "c2": 6, "c3": 7, "c4": 8, "d1": 9, "d2": 10, "d3": 11, "p1": 12, "p2": 13, "s1": 14, "s2": 15}
_DISTORTION = {  # model name -> (fisheye, extra parameter name -> role)
    "SIMPLE_PINHOLE": (0, {}), "PINHOLE": (0, {}),
    "SIMPLE_RADIAL": (0, {"k": "c1"}), "RADIAL": (0, {"k1": "c1", "k2": "c2"}),
    "OPENCV": (0, {"k1": "c1", "k2": "c2", "p1": "p1", "p2": "p2"}),
    "OPENCV_FISHEYE": (1, {"k1": "c1", "k2": "c2", "k3": "c3", "k4": "c4"}),
    "FULL_OPENCV": (0, {"k1": "c1", "k2": "c2", "p1": "p1", "p2": "p2", "k3": "c3", "k4": "d1", "k5": "d2",
                        "k6": "d3"}),
    "SIMPLE_RADIAL_FISHEYE": (1, {"k": "c1"}), "RADIAL_FISHEYE": (1, {"k1": "c1", "k2": "c2"}),
    "THIN_PRISM_FISHEYE": (1, {"k1": "c1", "k2": "c2", "p1": "p1", "p2": "p2", "k3": "c3", "k4": "c4",
                               "sx1": "s1", "sy1": "s2"}),
}


def _build_layout() -> np.ndarray:
    layout = np.full((max(CAMERA_MODELS) + 1, _N_ROLES), -1, np.int64)
    for model in CAMERA_MODELS.values():
        if not model.projectable:
            continue
        fisheye, roles = _DISTORTION[model.name]
        f = model.focal_indices
        layout[model.model_id, 0:4] = (f[0], f[-1], *model.principal_point_indices)
        layout[model.model_id, 4] = fisheye
        for name, role in roles.items():
            layout[model.model_id, _ROLES[role]] = model.param_names.index(name)
    return layout


_LAYOUT = _build_layout()
#: ids of the models this module projects.
PROJECTABLE_MODEL_IDS = tuple(int(i) for i in np.flatnonzero(_LAYOUT[:, 0] >= 0))
_EPS = np.finfo(np.float64).eps


@njit(cache=True, inline="always")
def _coef(params, layout, role):
    k = layout[role]
    return params[k] if k >= 0 else 0.0


@njit(cache=True)
def project_point(model_id, params, u, v, w, jparams, want_jacobian):
    """Project the camera-frame point (u, v, w) with camera ``params`` of COLMAP model ``model_id``.

    Returns ``(ok, x, y, j00, j01, j02, j10, j11, j12)``: the pixel (x, y) and d(x, y)/d(u, v, w)
    row-major; when ``want_jacobian``, also writes d(x, y)/d(params) into ``jparams`` (2, n_params).
    ``ok`` is False (and everything zero) where COLMAP's projection fails (w < eps).
    """
    layout = _LAYOUT[model_id]
    if want_jacobian:
        jparams[:, :] = 0.0
    if not w >= _EPS:
        return False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    fx = params[layout[0]]
    fy = params[layout[1]]
    iw = 1.0 / w
    a = u * iw
    b = v * iw
    # fisheye map (a, b) -> (ta, tb) and its Jacobian G
    g00 = 1.0
    g01 = 0.0
    g11 = 1.0
    ta = a
    tb = b
    if layout[4] == 1:
        rho2 = a * a + b * b
        rho = math.sqrt(rho2)
        if rho > _EPS:
            h = math.atan(rho) / rho
            ta = a * h
            tb = b * h
            if rho < 1e-4:
                hr = -2.0 / 3.0 + 0.8 * rho2
            else:
                hr = (1.0 / (1.0 + rho2) - h) / rho2
            g00 = h + hr * a * a
            g01 = hr * a * b
            g11 = h + hr * b * b
    s = ta * ta + tb * tb
    c1 = _coef(params, layout, 5)
    c2 = _coef(params, layout, 6)
    c3 = _coef(params, layout, 7)
    c4 = _coef(params, layout, 8)
    d1 = _coef(params, layout, 9)
    d2 = _coef(params, layout, 10)
    d3 = _coef(params, layout, 11)
    p1 = _coef(params, layout, 12)
    p2 = _coef(params, layout, 13)
    s1 = _coef(params, layout, 14)
    s2 = _coef(params, layout, 15)
    big_p = s * (c1 + s * (c2 + s * (c3 + s * c4)))
    big_q = s * (d1 + s * (d2 + s * d3))
    q1 = 1.0 + big_q
    r1 = (big_p - big_q) / q1
    ab = ta * tb
    xd = ta + ta * r1 + 2.0 * p1 * ab + p2 * (s + 2.0 * ta * ta) + s1 * s
    yd = tb + tb * r1 + 2.0 * p2 * ab + p1 * (s + 2.0 * tb * tb) + s2 * s
    x = fx * xd + params[layout[2]]
    y = fy * yd + params[layout[3]]
    # d(distorted)/d(ta, tb) = I + D
    dp = c1 + s * (2.0 * c2 + s * (3.0 * c3 + s * 4.0 * c4))
    dq = d1 + s * (2.0 * d2 + s * 3.0 * d3)
    r1p = (dp * q1 - (1.0 + big_p) * dq) / (q1 * q1)
    e00 = 1.0 + r1 + 2.0 * ta * ta * r1p + 2.0 * p1 * tb + 6.0 * p2 * ta + 2.0 * s1 * ta
    e01 = 2.0 * ab * r1p + 2.0 * p1 * ta + 2.0 * p2 * tb + 2.0 * s1 * tb
    e10 = 2.0 * ab * r1p + 2.0 * p2 * tb + 2.0 * p1 * ta + 2.0 * s2 * ta
    e11 = 1.0 + r1 + 2.0 * tb * tb * r1p + 2.0 * p2 * ta + 6.0 * p1 * tb + 2.0 * s2 * tb
    # M = F (I + D) G: d(x, y)/d(a, b)
    m00 = fx * (e00 * g00 + e01 * g01)
    m01 = fx * (e00 * g01 + e01 * g11)
    m10 = fy * (e10 * g00 + e11 * g01)
    m11 = fy * (e10 * g01 + e11 * g11)
    j00 = m00 * iw
    j01 = m01 * iw
    j02 = -(m00 * a + m01 * b) * iw
    j10 = m10 * iw
    j11 = m11 * iw
    j12 = -(m10 * a + m11 * b) * iw
    if want_jacobian:
        jparams[0, layout[0]] += xd
        jparams[1, layout[1]] += yd
        jparams[0, layout[2]] = 1.0
        jparams[1, layout[3]] = 1.0
        inv_q = 1.0 / q1
        sj = s
        for j in range(4):
            k = layout[5 + j]
            if k >= 0:
                jparams[0, k] = fx * ta * sj * inv_q
                jparams[1, k] = fy * tb * sj * inv_q
            if j < 3:
                k = layout[9 + j]
                if k >= 0:
                    scale = -sj * (1.0 + big_p) * inv_q * inv_q
                    jparams[0, k] = fx * ta * scale
                    jparams[1, k] = fy * tb * scale
            sj *= s
        if layout[12] >= 0:
            jparams[0, layout[12]] = fx * 2.0 * ab
            jparams[1, layout[12]] = fy * (s + 2.0 * tb * tb)
        if layout[13] >= 0:
            jparams[0, layout[13]] = fx * (s + 2.0 * ta * ta)
            jparams[1, layout[13]] = fy * 2.0 * ab
        if layout[14] >= 0:
            jparams[0, layout[14]] = fx * s
        if layout[15] >= 0:
            jparams[1, layout[15]] = fy * s
    return True, x, y, j00, j01, j02, j10, j11, j12


@njit(parallel=True, cache=True)
def _img_from_cam(model_id, params, points, with_jacobians):
    n = points.shape[0]
    pixels = np.empty((n, 2))
    j_params = np.zeros((n, 2, params.shape[0]))
    j_point = np.zeros((n, 2, 3))
    for i in prange(n):
        ok, x, y, j00, j01, j02, j10, j11, j12 = project_point(model_id, params, points[i, 0], points[i, 1],
                                                               points[i, 2], j_params[i], with_jacobians)
        if not ok:
            pixels[i, 0] = np.nan
            pixels[i, 1] = np.nan
            continue
        pixels[i, 0] = x
        pixels[i, 1] = y
        j_point[i, 0, 0] = j00
        j_point[i, 0, 1] = j01
        j_point[i, 0, 2] = j02
        j_point[i, 1, 0] = j10
        j_point[i, 1, 1] = j11
        j_point[i, 1, 2] = j12
    return pixels, j_params, j_point


def check_projectable(model_id: int, camera_id=None) -> None:
    """ValueError naming the model (and the camera) when sparselm cannot project COLMAP model ``model_id``."""
    if int(model_id) not in PROJECTABLE_MODEL_IDS:
        name = CAMERA_MODELS[int(model_id)].name if int(model_id) in CAMERA_MODELS else f"id {model_id}"
        whose = "" if camera_id is None else f"camera {camera_id}: "
        raise ValueError(f"{whose}camera model {name} is not supported for projection (supported: "
                         f"{', '.join(CAMERA_MODELS[i].name for i in PROJECTABLE_MODEL_IDS)})")


def _check(model_id, params, points):
    model_id = int(model_id)
    check_projectable(model_id)
    params = np.ascontiguousarray(params, dtype=np.float64)
    if params.shape != (CAMERA_MODELS[model_id].n_params,):
        raise ValueError(f"{CAMERA_MODELS[model_id].name} takes {CAMERA_MODELS[model_id].n_params} parameters, "
                         f"got shape {params.shape}")
    points = np.ascontiguousarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (n, 3) camera-frame coordinates, got shape {points.shape}")
    return model_id, params, points


def img_from_cam(model_id: int, params, points) -> np.ndarray:
    """Pixels (n, 2) of camera-frame points (n, 3) in a camera of COLMAP model ``model_id`` with
    parameter vector ``params`` (COLMAP's order, pixels for focal lengths and principal point).
    NaN where COLMAP's projection fails (depth below machine epsilon)."""
    model_id, params, points = _check(model_id, params, points)
    return _img_from_cam(model_id, params, points, False)[0]


def img_from_cam_jacobians(model_id: int, params, points):
    """``(pixels (n, 2), d pixel / d params (n, 2, n_params), d pixel / d point (n, 2, 3))``; see
    :func:`img_from_cam`. Jacobians are zero where the projection fails."""
    model_id, params, points = _check(model_id, params, points)
    return _img_from_cam(model_id, params, points, True)
