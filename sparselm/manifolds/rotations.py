r"""SO(3) as a unit quaternion and as a rotation vector, both updated multiplicatively on the right.

``so3_quaternion``: x = (qx, qy, qz, qw) unit quaternion (scalar last), tangent = a rotation
vector d in the body frame (radians):

    x [+] d = normalize(x (x) Exp(d)),        y [-] x = Log(x* (x) y),
    d (x [+] d)/d d at 0 = 1/2 [[w I + v^], [-v^T]]     (4 x 3; rows qx, qy, qz, qw; v = vec(x)).

That is R [+] d = R Exp(d) (a right perturbation, as GTSAM's Rot3; Ceres' QuaternionManifold
perturbs on the left and stores w first). The result is renormalised so that the norm stays 1 to
round-off through any number of steps.

``so3_rotation_vector``: x = r, a rotation vector (radians), tangent as above:

    r [+] d = Log(Exp(r) Exp(d)),      s [-] r = Log(Exp(r)^T Exp(s)),
    d (r [+] d)/d d at 0 = Jr^-1(r)   (see :mod:`sparselm.manifolds.lie`),

valid while |r| < pi (Log returns angles in [0, pi], so r [+] d stays in the ball of radius pi).
"""
from __future__ import annotations

from numba import njit, prange

from sparselm.manifolds import lie
from sparselm.manifolds.base import Manifold


@njit(cache=True)
def _quaternion(x, b):
    return (x[b, 0], x[b, 1], x[b, 2], x[b, 3])


@njit(parallel=True, cache=True)
def _quaternion_plus(x, delta, out):
    for b in prange(x.shape[0]):
        q = lie.quaternion_normalize(lie.quaternion_multiply(
            _quaternion(x, b), lie.so3_exp((delta[b, 0], delta[b, 1], delta[b, 2]))))
        for c in range(4):
            out[b, c] = q[c]


@njit(parallel=True, cache=True)
def _quaternion_minus(y, x, out):
    for b in prange(x.shape[0]):
        w = lie.so3_log(lie.quaternion_multiply(lie.quaternion_conjugate(_quaternion(x, b)), _quaternion(y, b)))
        for c in range(3):
            out[b, c] = w[c]


@njit(cache=True)
def write_quaternion_plus_jacobian(q, out, r0, c0):
    """out[r0:r0+4, c0:c0+3] = 1/2 [[w I + v^], [-v^T]] for the quaternion q = (v, w)."""
    x, y, z, w = q
    rows = ((w, -z, y), (z, w, -x), (-y, x, w), (-x, -y, -z))
    for r in range(4):
        for c in range(3):
            out[r0 + r, c0 + c] = 0.5 * rows[r][c]


@njit(parallel=True, cache=True)
def _quaternion_plus_jacobian(x, out):
    for b in prange(x.shape[0]):
        write_quaternion_plus_jacobian(_quaternion(x, b), out[b], 0, 0)


@njit(parallel=True, cache=True)
def _rotation_vector_plus(x, delta, out):
    for b in prange(x.shape[0]):
        q = lie.quaternion_multiply(lie.so3_exp((x[b, 0], x[b, 1], x[b, 2])),
                                    lie.so3_exp((delta[b, 0], delta[b, 1], delta[b, 2])))
        w = lie.so3_log(lie.quaternion_normalize(q))
        for c in range(3):
            out[b, c] = w[c]


@njit(parallel=True, cache=True)
def _rotation_vector_minus(y, x, out):
    for b in prange(x.shape[0]):
        q = lie.quaternion_multiply(lie.quaternion_conjugate(lie.so3_exp((x[b, 0], x[b, 1], x[b, 2]))),
                                    lie.so3_exp((y[b, 0], y[b, 1], y[b, 2])))
        w = lie.so3_log(q)
        for c in range(3):
            out[b, c] = w[c]


@njit(parallel=True, cache=True)
def _rotation_vector_plus_jacobian(x, out):
    for b in prange(x.shape[0]):
        m = lie.so3_right_jacobian_inverse((x[b, 0], x[b, 1], x[b, 2]))
        for r in range(3):
            for c in range(3):
                out[b, r, c] = m[3 * r + c]


SO3_QUATERNION = Manifold("so3_quaternion", 4, 3, _quaternion_plus, _quaternion_minus, _quaternion_plus_jacobian,
                          description="unit quaternion (qx, qy, qz, qw), R [+] d = R Exp(d)")
SO3_ROTATION_VECTOR = Manifold("so3_rotation_vector", 3, 3, _rotation_vector_plus, _rotation_vector_minus,
                               _rotation_vector_plus_jacobian,
                               description="rotation vector r (radians), r [+] d = Log(Exp(r) Exp(d))")
