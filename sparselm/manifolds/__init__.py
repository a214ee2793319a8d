r"""Manifolds for parameter blocks: rotations, poses and directions updated in their tangent space.

A parameter group stores each block in *ambient* coordinates x (a unit quaternion has 4) but LM
solves for a step d in *tangent* coordinates (3 for a rotation) and moves by ``x <- x [+] d``.
A manifold is three maps, each a numba kernel over an array of blocks (no Python loop per block):

    plus(x, d)      x [+] d, with x [+] 0 = x                    (n, a) x (n, t) -> (n, a)
    minus(y, x)     y [-] x, the inverse: (x [+] d) [-] x = d      (n, a) x (n, a) -> (n, t)
    plus_jacobian   P(x) = d (x [+] d) / d d at d = 0              (n, a) -> (n, a, t)

The engine differentiates a residual r(x) in ambient terms, J_amb = dr/dx (a columns per block),
and turns it into the tangent Jacobian by the chain rule, J = dr(x [+] d)/dd at 0 = J_amb P(x),
once per block per linearisation. Damping, scaling, Schur elimination, sizes in reports and the
parameter tolerance are all in tangent coordinates. A residual type may instead differentiate in
tangent terms directly by naming the manifolds of its slots (``ResidualType.tangent_manifolds``).

Provided (and registered by name for ``add_parameter_group(..., manifold="name")``):

==================== ======= ======= ==============================================================
name                 ambient tangent update
==================== ======= ======= ==============================================================
(None)               k       k       x + d (Euclidean, :func:`euclidean`)
``so3_quaternion``   4       3       q (x) Exp(d), q = (qx, qy, qz, qw), renormalised
``so3_rotation_vector`` 3    3       Log(Exp(r) Exp(d))
``se3``              7       6       T Exp(w, v): (t, q) = (tx, ty, tz, qx, qy, qz, qw), rotation first
``se2``              3       3       T Exp(vx, vy, w) with T = (x, y, theta)
``sphere2``          3       2       geodesic step on the unit sphere
``so3_quaternion x R^k`` 4+k 3+k     quaternion as above, then k Euclidean coordinates
                                     (:func:`quaternion_and_vector`, e.g. a pose with intrinsics)
==================== ======= ======= ==============================================================

All rotations are perturbed on the right (R [+] d = R Exp(d), d in the body frame), the
convention of GTSAM; formulas and the small-angle series are in :mod:`sparselm.manifolds.lie`.

Writing your own: build ``Manifold(name, ambient_size, tangent_size, plus_kernel, minus_kernel,
plus_jacobian_kernel)`` from three ``@numba.njit`` kernels with the signatures above that write
into their last argument and do not allocate inside their ``prange`` loop; check it with
:func:`check_manifold` (plus/minus round trips and P against central differences) and, to refer to
it by name, :func:`register_manifold` it.
"""
from sparselm.manifolds.base import Manifold
from sparselm.manifolds.check import ManifoldCheck, check_manifold
from sparselm.manifolds.euclidean import euclidean
from sparselm.manifolds.poses import SE2, SE3
from sparselm.manifolds.product import quaternion_and_vector
from sparselm.manifolds.registry import register_manifold, registered_manifolds, resolve_manifold
from sparselm.manifolds.rotations import SO3_QUATERNION, SO3_ROTATION_VECTOR
from sparselm.manifolds.sphere import SPHERE2

__all__ = ["Manifold", "ManifoldCheck", "check_manifold", "euclidean", "register_manifold", "registered_manifolds",
           "resolve_manifold", "quaternion_and_vector", "SO3_QUATERNION", "SO3_ROTATION_VECTOR", "SE3", "SE2", "SPHERE2"]
