"""The Levenberg-Marquardt trust-region strategy (Ceres' LevenbergMarquardtStrategy, Nielsen's rule).

With trust-region radius mu, the damped system is (J^T J + D / mu) step = -J^T r, where

    marquardt     D = clamp(diag(J^T J), min_diagonal, max_diagonal)   (scale-invariant)
    levenberg     D = I
    gauss_newton  D = 0 (no damping; mu is unused)

Gauss-Newton (mu -> inf) and scaled steepest descent (mu -> 0, step ~ -mu D^-1 J^T r) are the two
limits. After a step with gain ratio rho = actual / predicted decrease:

    accepted (rho > min_relative_decrease):  mu <- min(mu / max(1/3, 1 - (2 rho - 1)^3), mu_max), v <- 2
    rejected:                                mu <- mu / v, v <- 2 v

Jacobi scaling (Ceres' ``jacobi_scaling``): Ceres solves for y in the column-scaled problem
J S, S = diag(1 / (1 + |J_c|)) fixed at the first Jacobian, and steps by d = S y. Since
(S J^T J S + D_s) y = -S g  <=>  (J^T J + S^-1 D_s S^-1) d = -g, the same step comes from the
unscaled system with the damping diagonal D_s / s^2, where D_s is built from the scaled column
norms s^2 diag(J^T J). So scaling changes only the damping: for Marquardt only where the clamp
bites, for Levenberg it turns lambda * I into lambda * (1 + |J_c|)^2.
"""
from __future__ import annotations

import numpy as np

from sparselm.lm.options import SolverOptions


class LevenbergMarquardtStrategy:
    """Holds the radius mu and the rejection factor v; builds the damping diagonal."""

    def __init__(self, options: SolverOptions, constant_columns: np.ndarray):
        self.options = options
        self.radius = options.initial_trust_region_radius
        self.decrease_factor = 2.0
        # Coordinates held constant have zero Jacobian columns: a unit diagonal keeps their step at 0.
        self._fixed = constant_columns.astype(np.float64)
        self._diagonal = np.zeros(constant_columns.shape[0])
        self._scale2 = None  # s^2 per column once Jacobi scaling is fixed

    def fix_jacobi_scaling(self, column_norms: np.ndarray) -> None:
        """Fix s = 1 / (1 + |J_c|) from the first Jacobian's squared column norms (if enabled)."""
        if self.options.jacobi_scaling and self._scale2 is None:
            self._scale2 = (1.0 / (1.0 + np.sqrt(column_norms))) ** 2

    def diagonal(self, column_norms: np.ndarray) -> np.ndarray:
        """The damping diagonal D / mu for the current radius (plus 1 on constant coordinates)."""
        o = self.options
        d = self._diagonal
        s2 = self._scale2
        if o.damping == "marquardt":
            if s2 is None:
                np.clip(column_norms, o.min_diagonal, o.max_diagonal, out=d)
            else:
                np.multiply(column_norms, s2, out=d)
                np.clip(d, o.min_diagonal, o.max_diagonal, out=d)
                d /= s2
            d /= self.radius
        elif o.damping == "levenberg":
            if s2 is None:
                d.fill(1.0 / self.radius)
            else:
                np.divide(1.0 / self.radius, s2, out=d)
        else:
            d.fill(0.0)
        d += self._fixed
        return d

    def step_accepted(self, ratio: float) -> None:
        """Grow the radius after a successful step."""
        self.radius = min(self.radius / max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3),
                          self.options.max_trust_region_radius)
        self.decrease_factor = 2.0

    def step_rejected(self) -> None:
        """Shrink the radius after an unsuccessful or invalid step."""
        self.radius /= self.decrease_factor
        self.decrease_factor *= 2.0

    @property
    def below_minimum(self) -> bool:
        return self.radius < self.options.min_trust_region_radius
