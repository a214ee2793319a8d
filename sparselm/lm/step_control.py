"""Step control for the LM loop on one parameter vector: a trust radius in scaled variables, exact
Gauss-Newton steps where the model is exact, and box constraints lb <= x <= ub.

Used by :func:`sparselm.least_squares` through the hooks of :class:`~sparselm.lm.minimizer.Minimizer`
(:func:`sparselm.solve` runs without it). x is the parameter vector, g = J^T r the gradient, d the
step the damped normal equations give, s > 0 the scale of the variables (``x_scale``: an array, or
'jac': s_i = 1 / |J_:i|, the column norms only ever growing as in scipy).

Trust radius (MINPACK's lmder and scipy's trf bound the step the same way). In the scaled variables
h = d / s the step may not exceed Delta, with Delta_0 = |x_0 / s| (1 where that is 0): a longer LM
step is shortened along its own direction, which keeps the model decrease positive (on the ray
t d, t in [0, 1], the model m(t d) decreases since m'(t) = g^T d + t d^T J^T J d <= -d^T D d <= 0).
After the trial, with gain ratio rho: rho < 0.25 gives Delta = |h| / 4; rho > 0.75 with the step
at the radius gives Delta = max(Delta, 2 |h|). So no step jumps onto a plateau many times the scale
of the parameters away, and the first step can land exactly where the radius ends (f = x^2 + c
from x_0: straight to 0, as scipy's trf).

Exact Gauss-Newton steps. After an accepted step whose gain ratio is 1 within 1e-3 (the quadratic
model predicted the decrease), the next trial is undamped (D = 0), still bounded by Delta: a linear
least-squares problem is solved exactly, and damping cannot slow the final convergence. A failed
undamped trial (singular J^T J, no decrease) falls back to the damped step.

Bounds: a projected LM with an active set (it keeps every iterate feasible).

* Active set A = {i: x_i = lb_i, g_i > 0} U {i: x_i = ub_i, g_i < 0}: coordinates at a bound that
  the gradient pushes outward. Their step is pinned to 0: a huge damping entry BIG on the diagonal
  (the free block then solves its own damped system; the coupling left is O(1/BIG)), then the
  entries are zeroed. It works for every linear solver, CHOLMOD included, at the cost of nothing.
* The step is projected, d <- clip(x + d, lb, ub) - x, and its model decrease is computed from
  J d (no longer the exact solution of the damped system). A projected step that does not
  decrease the model is an invalid step (more damping): as the damping grows the step tends to
  -D^-1 g / mu, whose free part points into the box, so a decreasing step always exists away
  from a KKT point.
* Optimality is scipy's trf measure, the Coleman-Li scaled gradient max_i |v_i g_i| with
  v_i = ub_i - x_i (g_i < 0, ub finite), x_i - lb_i (g_i > 0, lb finite), else 1: 0 exactly at a
  KKT point (free coordinates with g_i = 0, active ones with outward gradient).
* The returned ``active_mask`` follows scipy's find_active_constraints with rtol = xtol: -1 where
  x_i - lb_i <= rtol max(1, |lb_i|), +1 where ub_i - x_i <= rtol max(1, |ub_i|).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

#: the damping that pins an active coordinate (relative to the largest diagonal entry)
PIN_FACTOR = 1e20
#: the gain ratio within this of 1 makes the next trial an undamped Gauss-Newton step
EXACT_MODEL = 1e-3


class Box:
    """Bounds lb <= x <= ub (arrays of the parameter count; -inf / inf where unbounded)."""

    def __init__(self, lb: np.ndarray, ub: np.ndarray):
        self.lb = np.asarray(lb, dtype=float)
        self.ub = np.asarray(ub, dtype=float)

    def active(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """The coordinates at a bound whose gradient points out of the box."""
        return ((x <= self.lb) & (g > 0)) | ((x >= self.ub) & (g < 0))

    def coleman_li(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        v = np.ones_like(x)
        up = (g < 0) & np.isfinite(self.ub)
        down = (g > 0) & np.isfinite(self.lb)
        v[up] = self.ub[up] - x[up]
        v[down] = x[down] - self.lb[down]
        return v

    def active_mask(self, x: np.ndarray, rtol: float) -> np.ndarray:
        """scipy's find_active_constraints: -1 at the lower bound, 1 at the upper one, else 0."""
        mask = np.zeros(x.shape, dtype=int)
        if rtol == 0:
            mask[x <= self.lb] = -1
            mask[x >= self.ub] = 1
            return mask
        lower = np.isfinite(self.lb) & (x - self.lb <= rtol * np.maximum(1, np.abs(self.lb)))
        upper = np.isfinite(self.ub) & (self.ub - x <= rtol * np.maximum(1, np.abs(self.ub)))
        mask[lower] = -1
        mask[upper] = 1
        return mask


class ScaledStepControl:
    """Trust radius, undamped steps where the model is exact, and an optional :class:`Box`.

    ``point(values)`` gives the parameter vector of the minimizer's values; ``scale`` is an array
    of s, or None for 'jac' scaling (s from the column norms of each Jacobian).
    """

    def __init__(self, point: Callable, x0: np.ndarray, scale: Optional[np.ndarray], box: Optional[Box] = None):
        self.point = point
        self.box = box
        self._fixed_scale = scale is not None
        self.scale_inv = None if scale is None else 1.0 / np.asarray(scale, dtype=float)
        self._x0 = np.asarray(x0, dtype=float).copy()
        self.radius: Optional[float] = None
        self._undamped = False
        self._active = np.zeros(self._x0.size, dtype=bool)
        self._hit_radius = False
        self._scaled_norm = 0.0

    # -- per linearisation ----------------------------------------------------------------------
    def linearized(self, column_norms: np.ndarray) -> None:
        """Update 'jac' scaling from the new Jacobian's squared column norms; set Delta_0 once."""
        if not self._fixed_scale:
            norms = np.sqrt(column_norms)
            norms = np.where(norms == 0, 1.0, norms)
            self.scale_inv = norms if self.scale_inv is None else np.maximum(self.scale_inv, norms)
        if self.radius is None:
            self.radius = float(np.linalg.norm(self._x0 * self.scale_inv)) or 1.0

    def optimality(self, values, gradient: np.ndarray) -> float:
        """max |g| (scaled by Coleman-Li's v with bounds), the measure gtol compares with."""
        if gradient.size == 0:
            return 0.0
        if self.box is None:
            return float(np.max(np.abs(gradient)))
        return float(np.max(np.abs(gradient * self.box.coleman_li(self.point(values), gradient))))

    # -- per trial --------------------------------------------------------------------------------
    def damping(self, values, gradient: np.ndarray, diagonal: np.ndarray, undamped: Optional[bool] = None) -> np.ndarray:
        """The diagonal to solve with: undamped if the model was exact, pinned on active bounds."""
        undamped = self._undamped if undamped is None else undamped
        d = np.zeros_like(diagonal) if undamped else diagonal.copy()
        if self.box is not None:
            self._active = self.box.active(self.point(values), gradient)
            if self._active.any():
                d[self._active] = PIN_FACTOR * (1.0 + float(np.max(diagonal)))
        return d

    def excess(self, step: np.ndarray) -> float:
        """|h| / Delta of a step (pinned entries left out)."""
        free = np.where(self._active, 0.0, step)
        return float(np.linalg.norm(free * self.scale_inv)) / self.radius

    def shape(self, values, step: np.ndarray) -> np.ndarray:
        """Zero pinned entries, shorten to the radius, project onto the box."""
        step = step.copy()
        step[self._active] = 0.0
        scaled = float(np.linalg.norm(step * self.scale_inv))
        self._hit_radius = scaled > self.radius
        if self._hit_radius:
            step *= self.radius / scaled
        if self.box is not None:
            x = self.point(values)
            step = np.clip(x + step, self.box.lb, self.box.ub) - x
        self._scaled_norm = float(np.linalg.norm(step * self.scale_inv))
        return step

    def invalid(self) -> None:
        """The trial's linear solve failed or its model did not decrease."""
        self._undamped = False

    def judged(self, ratio: float, success: bool) -> None:
        """scipy's radius update from the gain ratio; an exact model makes the next trial undamped."""
        h = self._scaled_norm
        if not math.isfinite(ratio) or ratio < 0.25:
            self.radius = max(0.25 * h, np.finfo(float).tiny)
        elif ratio > 0.75 and self._hit_radius:
            self.radius = max(self.radius, 2.0 * h)
        self._undamped = success and abs(ratio - 1.0) < EXACT_MODEL
