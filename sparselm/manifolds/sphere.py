r"""The unit sphere S^2 in R^3 (directions, normals): ambient 3, tangent 2.

At a unit vector x, B(x) is a 3 x 2 matrix whose columns are an orthonormal basis of the tangent
plane x^perp, a fixed smooth-enough function of x: b1 = normalize(e_k - x_k x) for the axis e_k on
which |x_k| is smallest, b2 = x cross b1. Then, with u = B(x) d,

    x [+] d = cos|u| x + sin|u| u / |u|        (the geodesic of length |d| along u),
    y [-] x = B(x)^T theta (y - (x.y) x) / |y - (x.y) x|,   theta = atan2(|x cross y|, x.y),
    d (x [+] d)/d d at 0 = B(x),

so y [-] x is the inverse of x [+] d for |d| < pi. The result of plus is renormalised.
"""
from __future__ import annotations

import math

from numba import njit, prange

from sparselm.manifolds import lie
from sparselm.manifolds.base import Manifold


@njit(cache=True)
def _basis(x):
    """(b1, b2), an orthonormal basis of the plane orthogonal to the unit vector x."""
    ax = (abs(x[0]), abs(x[1]), abs(x[2]))
    k = 0
    if ax[1] < ax[k]:
        k = 1
    if ax[2] < ax[k]:
        k = 2
    e = (1.0 if k == 0 else 0.0, 1.0 if k == 1 else 0.0, 1.0 if k == 2 else 0.0)
    u = (e[0] - x[k] * x[0], e[1] - x[k] * x[1], e[2] - x[k] * x[2])
    n = math.sqrt(lie.dot(u, u))
    b1 = (u[0] / n, u[1] / n, u[2] / n)
    return b1, lie.cross(x, b1)


@njit(cache=True)
def _unit(x, b):
    n = math.sqrt(x[b, 0] ** 2 + x[b, 1] ** 2 + x[b, 2] ** 2)
    return (x[b, 0] / n, x[b, 1] / n, x[b, 2] / n)


@njit(parallel=True, cache=True)
def _plus(x, delta, out):
    for b in prange(x.shape[0]):
        p = _unit(x, b)
        b1, b2 = _basis(p)
        u = (b1[0] * delta[b, 0] + b2[0] * delta[b, 1], b1[1] * delta[b, 0] + b2[1] * delta[b, 1],
             b1[2] * delta[b, 0] + b2[2] * delta[b, 1])
        theta = math.sqrt(lie.dot(u, u))
        k = 1.0 - theta * theta / 6.0 if theta < 1e-4 else math.sin(theta) / theta
        y = (math.cos(theta) * p[0] + k * u[0], math.cos(theta) * p[1] + k * u[1], math.cos(theta) * p[2] + k * u[2])
        n = math.sqrt(lie.dot(y, y))
        for c in range(3):
            out[b, c] = y[c] / n


@njit(parallel=True, cache=True)
def _minus(y, x, out):
    for b in prange(x.shape[0]):
        p = _unit(x, b)
        q = _unit(y, b)
        b1, b2 = _basis(p)
        cosine = lie.dot(p, q)
        perp = (q[0] - cosine * p[0], q[1] - cosine * p[1], q[2] - cosine * p[2])
        sine = math.sqrt(lie.dot(perp, perp))
        theta = math.atan2(sine, cosine)
        k = 1.0 + theta * theta / 6.0 if sine < 1e-8 else theta / sine
        out[b, 0] = k * lie.dot(b1, perp)
        out[b, 1] = k * lie.dot(b2, perp)


@njit(parallel=True, cache=True)
def _plus_jacobian(x, out):
    for b in prange(x.shape[0]):
        b1, b2 = _basis(_unit(x, b))
        for r in range(3):
            out[b, r, 0] = b1[r]
            out[b, r, 1] = b2[r]


SPHERE2 = Manifold("sphere2", 3, 2, _plus, _minus, _plus_jacobian,
                   description="unit vector in R^3, geodesic step in the tangent plane")
