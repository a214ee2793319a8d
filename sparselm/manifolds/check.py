"""Consistency checks of a manifold, as :func:`sparselm.residuals.check_jacobian` is for residuals.

For blocks x and random tangent steps d (|d| <= ``step_scale``) it measures

* identity        |x [+] 0 - x|,
* round trip      |(x [+] d) [-] x - d|     (minus inverts plus),
* zero            |x [-] x|,
* plus-Jacobian   the largest entry of |P(x) - FD| where FD is the central difference
                  ((x [+] h e_c) - (x [+] -h e_c)) / (2 h) in each tangent direction e_c.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparselm.manifolds.base import Manifold


@dataclass
class ManifoldCheck:
    """Worst errors found by :func:`check_manifold` (absolute, in the manifold's coordinates)."""

    identity_error: float
    round_trip_error: float
    zero_error: float
    plus_jacobian_error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return max(self.identity_error, self.round_trip_error, self.zero_error,
                   self.plus_jacobian_error) <= self.tolerance

    def __str__(self) -> str:
        return (f"manifold check {'passed' if self.ok else 'FAILED'} (tolerance {self.tolerance:g}): identity "
                f"{self.identity_error:.2e}, round trip {self.round_trip_error:.2e}, x [-] x "
                f"{self.zero_error:.2e}, plus-Jacobian {self.plus_jacobian_error:.2e}")


def check_manifold(manifold: Manifold, x, *, step_scale: float = 0.5, seed: int = 0, step: float = 1e-6,
                   tolerance: float = 1e-7) -> ManifoldCheck:
    """Check ``manifold`` at the blocks ``x`` (n, ambient_size) with random steps; see the module doc."""
    x = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float64)
    n, t = x.shape[0], manifold.tangent_size
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, t))
    d *= step_scale * rng.uniform(0.0, 1.0, size=(n, 1)) / np.linalg.norm(d, axis=1, keepdims=True)
    identity = float(np.abs(manifold.plus(x, np.zeros((n, t))) - x).max())
    round_trip = float(np.abs(manifold.minus(manifold.plus(x, d), x) - d).max())
    zero = float(np.abs(manifold.minus(x, x)).max())
    analytic = manifold.plus_jacobian(x)
    numeric = np.empty_like(analytic)
    for c in range(t):
        e = np.zeros((n, t))
        e[:, c] = step
        numeric[:, :, c] = (manifold.plus(x, e) - manifold.plus(x, -e)) / (2.0 * step)
    return ManifoldCheck(identity, round_trip, zero, float(np.abs(analytic - numeric).max()), tolerance)
