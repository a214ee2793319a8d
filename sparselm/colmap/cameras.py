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
are ``c_j, d_j, p_1, p_2, s_1, s_2`` (absent ones are zero), see :data:`_DISTORTION`:

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

Specialisation
--------------
:func:`project` is one function for every model, driven by a :class:`ProjectionSpec` (which terms
the model has: fisheye map, radial polynomial ``P``, rational ``Q``, tangential ``p``, thin prism
``s``; where each parameter is read; which Jacobian columns are written). It is inlined into the
kernels that call it, and a kernel compiled for one model holds its spec as a constant
(:mod:`sparselm.colmap.reprojection`), so the terms the model lacks and the columns not wanted are
compiled away: SIMPLE_PINHOLE costs ``x = f u / w + c_x`` and no model id is read at run time.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import numpy as np
from numba import njit

from sparselm.colmap.camera_models import CAMERA_MODELS

__all__ = ["PROJECTABLE_MODEL_IDS", "check_projectable", "img_from_cam", "img_from_cam_jacobians", "project",
           "projection_spec", "ProjectionSpec"]

_DISTORTION = {  # model name -> (fisheye, extra parameter name -> role)
    "SIMPLE_PINHOLE": (False, {}), "PINHOLE": (False, {}),
    "SIMPLE_RADIAL": (False, {"k": "c1"}), "RADIAL": (False, {"k1": "c1", "k2": "c2"}),
    "OPENCV": (False, {"k1": "c1", "k2": "c2", "p1": "p1", "p2": "p2"}),
    "OPENCV_FISHEYE": (True, {"k1": "c1", "k2": "c2", "k3": "c3", "k4": "c4"}),
    "FULL_OPENCV": (False, {"k1": "c1", "k2": "c2", "p1": "p1", "p2": "p2", "k3": "c3", "k4": "d1", "k5": "d2",
                            "k6": "d3"}),
    "SIMPLE_RADIAL_FISHEYE": (True, {"k": "c1"}), "RADIAL_FISHEYE": (True, {"k1": "c1", "k2": "c2"}),
    "THIN_PRISM_FISHEYE": (True, {"k1": "c1", "k2": "c2", "p1": "p1", "p2": "p2", "k3": "c3", "k4": "c4",
                                  "sx1": "s1", "sy1": "s2"}),
}
#: ids of the models this module projects.
PROJECTABLE_MODEL_IDS = tuple(sorted(m.model_id for m in CAMERA_MODELS.values() if m.projectable))
_EPS = np.finfo(np.float64).eps


@njit(cache=True)
def _read(block, fixed, at):
    """Parameter stored at ``at``: ``block[at]`` when ``at >= 0``, else ``fixed[-1 - at]``."""
    return block[at] if at >= 0 else fixed[-1 - at]


@njit(cache=True)
def _fisheye(a, b):
    """(ta, tb, g00, g01, g11): the fisheye map of (a, b) and its symmetric Jacobian G."""
    rho2 = a * a + b * b
    rho = math.sqrt(rho2)
    if not rho > _EPS:
        return a, b, 1.0, 0.0, 1.0
    h = math.atan(rho) / rho
    hr = -2.0 / 3.0 + 0.8 * rho2 if rho < 1e-4 else (1.0 / (1.0 + rho2) - h) / rho2
    return a * h, b * h, h + hr * a * a, hr * a * b, h + hr * b * b


class ProjectionSpec(NamedTuple):
    """What :func:`project` computes for one camera model, as constants of the calling kernel.

    ``at_*``: where a parameter is read, ``block[at]`` when ``at >= 0`` else ``fixed[-1 - at]``;
    ``to_*``: the column of ``jout`` its derivative goes to, -1 for none. ``c``/``d`` hold the
    coefficients c1..c4 / d1..d3 of P and Q (the first ``n_c`` / ``n_d`` entries count).
    """

    fisheye: bool
    one_focal: bool
    n_c: int
    n_d: int
    tangential: bool
    prism: bool
    writes: bool
    write: Tuple[int, ...]
    at_fx: int
    at_fy: int
    at_cx: int
    at_cy: int
    at_c: Tuple[int, int, int, int]
    at_d: Tuple[int, int, int]
    at_p1: int
    at_p2: int
    at_s1: int
    at_s2: int
    to_fx: int
    to_fy: int
    to_cx: int
    to_cy: int
    to_c: Tuple[int, int, int, int]
    to_d: Tuple[int, int, int]
    to_p1: int
    to_p2: int
    to_s1: int
    to_s2: int


def projection_spec(model_id: int, read: Optional[Tuple[int, ...]] = None,
                    write: Optional[Tuple[int, ...]] = None) -> ProjectionSpec:
    """The :class:`ProjectionSpec` of COLMAP model ``model_id``. Parameter ``j`` (COLMAP's order) is
    read from ``block[read[j]]``, or from ``fixed[-1 - read[j]]`` where ``read[j] < 0`` (default:
    ``block[j]``); d(x, y)/d(parameter j) is written to column ``write[j]`` of ``jout``, nowhere where
    ``write[j] < 0`` (default: column j)."""
    spec = CAMERA_MODELS[int(model_id)]
    check_projectable(spec.model_id)
    k = spec.n_params
    read = tuple(range(k)) if read is None else tuple(int(v) for v in read)
    write = tuple(range(k)) if write is None else tuple(int(v) for v in write)
    if len(read) != k or len(write) != k:
        raise ValueError(f"{spec.name}: read and write need {k} entries, got {len(read)} and {len(write)}")
    fisheye, names = _DISTORTION[spec.name]
    role = {r: spec.param_names.index(n) for n, r in names.items()}
    fx, fy = spec.focal_indices[0], spec.focal_indices[-1]
    cx, cy = spec.principal_point_indices
    c = [role[f"c{j}"] for j in range(1, 5) if f"c{j}" in role]
    d = [role[f"d{j}"] for j in range(1, 4) if f"d{j}" in role]

    def at(name):
        return read[role[name]] if name in role else 0

    def to(name):
        return write[role[name]] if name in role else -1

    def padded(values, size):
        return tuple(values) + (-1,) * (size - len(values))

    return ProjectionSpec(
        fisheye=fisheye, one_focal=fx == fy, n_c=len(c), n_d=len(d), tangential="p1" in role, prism="s1" in role,
        writes=any(v >= 0 for v in write), write=write,
        at_fx=read[fx], at_fy=read[fy], at_cx=read[cx], at_cy=read[cy],
        at_c=padded([read[j] for j in c], 4), at_d=padded([read[j] for j in d], 3),
        at_p1=at("p1"), at_p2=at("p2"), at_s1=at("s1"), at_s2=at("s2"),
        to_fx=write[fx], to_fy=write[fy] if fy != fx else -1, to_cx=write[cx], to_cy=write[cy],
        to_c=padded([write[j] for j in c], 4), to_d=padded([write[j] for j in d], 3),
        to_p1=to("p1"), to_p2=to("p2"), to_s1=to("s1"), to_s2=to("s2"))


@njit(cache=True, inline="always")
def project(spec, block, fixed, u, v, w, jout):
    """Project the camera-frame point (u, v, w) with the camera described by ``spec`` (a
    :class:`ProjectionSpec`; its parameters in ``block`` and ``fixed``, see there). Returns
    ``(ok, x, y, j00, j01, j02, j10, j11, j12)``: the pixel (x, y) and d(x, y)/d(u, v, w) row-major
    (pixels per unit of the point's coordinates); writes d(x, y)/d(parameter) into the columns of
    ``jout`` (2, width) that ``spec`` names, and no others. ``ok`` is False (the pixel, the point
    Jacobian and the written columns zero) where COLMAP's projection fails (w < eps).

    Inlined into its callers: with ``spec`` a constant of the caller, the terms a model lacks and
    the columns not written are compiled away, and so is whatever the caller does not use."""
    if not w >= _EPS:
        if spec.writes:
            for j in range(len(spec.write)):
                if spec.write[j] >= 0:
                    jout[0, spec.write[j]] = 0.0
                    jout[1, spec.write[j]] = 0.0
        return False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    f_x = _read(block, fixed, spec.at_fx)
    f_y = _read(block, fixed, spec.at_fy)
    iw = 1.0 / w
    a = u * iw
    b = v * iw
    if spec.fisheye:
        ta, tb, g00, g01, g11 = _fisheye(a, b)
    else:
        ta, tb, g00, g01, g11 = a, b, 1.0, 0.0, 1.0
    s = ta * ta + tb * tb
    ab = ta * tb
    q1 = 1.0
    big_p = 0.0
    if spec.n_c or spec.tangential or spec.prism:
        # radial: r1 = (P - Q) / (1 + Q) and r1' = d r1 / d s (Horner, highest coefficient first)
        dp = 0.0
        for j in range(spec.n_c - 1, -1, -1):
            cj = _read(block, fixed, spec.at_c[j])
            big_p = s * (cj + big_p)
            dp = (j + 1) * cj + s * dp
        if spec.n_d:
            big_q = 0.0
            dq = 0.0
            for j in range(spec.n_d - 1, -1, -1):
                dj = _read(block, fixed, spec.at_d[j])
                big_q = s * (dj + big_q)
                dq = (j + 1) * dj + s * dq
            q1 = 1.0 + big_q
            r1 = (big_p - big_q) / q1
            r1p = (dp * q1 - (1.0 + big_p) * dq) / (q1 * q1)
        else:
            r1 = big_p
            r1p = dp
        xd = ta + ta * r1
        yd = tb + tb * r1
        e00 = 1.0 + r1 + 2.0 * ta * ta * r1p
        e01 = 2.0 * ab * r1p
        e10 = e01
        e11 = 1.0 + r1 + 2.0 * tb * tb * r1p
        if spec.tangential:
            p1 = _read(block, fixed, spec.at_p1)
            p2 = _read(block, fixed, spec.at_p2)
            xd += 2.0 * p1 * ab + p2 * (s + 2.0 * ta * ta)
            yd += 2.0 * p2 * ab + p1 * (s + 2.0 * tb * tb)
            e00 += 2.0 * p1 * tb + 6.0 * p2 * ta
            e01 += 2.0 * p1 * ta + 2.0 * p2 * tb
            e10 += 2.0 * p2 * tb + 2.0 * p1 * ta
            e11 += 2.0 * p2 * ta + 6.0 * p1 * tb
        if spec.prism:
            s1 = _read(block, fixed, spec.at_s1)
            s2 = _read(block, fixed, spec.at_s2)
            xd += s1 * s
            yd += s2 * s
            e00 += 2.0 * s1 * ta
            e01 += 2.0 * s1 * tb
            e10 += 2.0 * s2 * ta
            e11 += 2.0 * s2 * tb
        # M = F (I + D) G: d(x, y)/d(a, b)
        if spec.fisheye:
            m00 = f_x * (e00 * g00 + e01 * g01)
            m01 = f_x * (e00 * g01 + e01 * g11)
            m10 = f_y * (e10 * g00 + e11 * g01)
            m11 = f_y * (e10 * g01 + e11 * g11)
        else:
            m00, m01, m10, m11 = f_x * e00, f_x * e01, f_y * e10, f_y * e11
    else:
        xd = ta
        yd = tb
        if spec.fisheye:
            m00, m01, m10, m11 = f_x * g00, f_x * g01, f_y * g01, f_y * g11
        else:
            m00, m01, m10, m11 = f_x, 0.0, 0.0, f_y
    x = f_x * xd + _read(block, fixed, spec.at_cx)
    y = f_y * yd + _read(block, fixed, spec.at_cy)
    if spec.writes:
        _put(jout, spec.to_fx, xd, yd if spec.one_focal else 0.0)
        _put(jout, spec.to_fy, 0.0, yd)
        _put(jout, spec.to_cx, 1.0, 0.0)
        _put(jout, spec.to_cy, 0.0, 1.0)
        inv_q = 1.0 / q1
        sj = s
        for j in range(max(spec.n_c, spec.n_d)):
            if j < spec.n_c:
                _put(jout, spec.to_c[j], f_x * ta * sj * inv_q, f_y * tb * sj * inv_q)
            if j < spec.n_d:
                scale = -sj * (1.0 + big_p) * inv_q * inv_q
                _put(jout, spec.to_d[j], f_x * ta * scale, f_y * tb * scale)
            sj *= s
        _put(jout, spec.to_p1, f_x * 2.0 * ab, f_y * (s + 2.0 * tb * tb))
        _put(jout, spec.to_p2, f_x * (s + 2.0 * ta * ta), f_y * 2.0 * ab)
        _put(jout, spec.to_s1, f_x * s, 0.0)
        _put(jout, spec.to_s2, 0.0, f_y * s)
    return (True, x, y, m00 * iw, m01 * iw, -(m00 * a + m01 * b) * iw,
            m10 * iw, m11 * iw, -(m10 * a + m11 * b) * iw)


@njit(cache=True)
def _put(jout, column, dx, dy):
    """d(x, y)/d(one parameter) into ``jout[:, column]``, unless ``column < 0``."""
    if column >= 0:
        jout[0, column] = dx
        jout[1, column] = dy


@njit(cache=True)
def _img_from_cam(spec, params, points):
    """(pixels, d pixel / d params, d pixel / d point) of points (n, 3), serially."""
    n = points.shape[0]
    pixels = np.empty((n, 2))
    j_params = np.zeros((n, 2, params.shape[0]))
    j_point = np.zeros((n, 2, 3))
    for i in range(n):
        ok, x, y, j00, j01, j02, j10, j11, j12 = project(spec, params, params, points[i, 0], points[i, 1],
                                                         points[i, 2], j_params[i])
        pixels[i, 0] = x if ok else np.nan
        pixels[i, 1] = y if ok else np.nan
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
    return _img_from_cam(projection_spec(model_id), params, points)[0]


def img_from_cam_jacobians(model_id: int, params, points):
    """``(pixels (n, 2), d pixel / d params (n, 2, n_params), d pixel / d point (n, 2, 3))``; see
    :func:`img_from_cam`. Jacobians are zero where the projection fails."""
    model_id, params, points = _check(model_id, params, points)
    return _img_from_cam(projection_spec(model_id), params, points)
