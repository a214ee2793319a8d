"""The user's residual function and Jacobian as the evaluator of the one LM loop.

:class:`~sparselm.lm.minimizer.Minimizer` works on a dict of parameter arrays through an evaluator
(``linearize``, ``apply_step``, ``cost_at``, ``gradient``, ``column_norms``, ``model_cost_change``,
``layout``). :class:`VectorObjective` gives it that for one vector ``values['x']``: the residuals
come from the user's ``fun``, the Jacobian from ``jacobian_at`` (a callable ``jac`` or finite
differences) into a :class:`~sparselm.scipy_api.evaluator.MatrixEvaluator`. The residuals of the
last trial point are kept, so accepting it costs no second evaluation; ``nfev`` counts calls of
``fun`` at points the loop asked for (scipy's count), ``njev`` Jacobian evaluations.
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np

from sparselm.core.evaluator import NonFiniteError
from sparselm.scipy_api.evaluator import MatrixEvaluator
from sparselm.util.timing import PhaseTimer

POINT = "x"


def residuals_at(fun: Callable, x: np.ndarray, timer: PhaseTimer) -> np.ndarray:
    """fun(x) as a float64 1-d array (scipy promotes the residuals to float the same way)."""
    with timer.phase("residual"):
        return np.atleast_1d(fun(x)).astype(float)


class VectorObjective:
    """Evaluator protocol of the LM loop over the single block ``values['x']`` (n parameters).

    ``fixed_diagonal`` (an array ``x_scale``: 1 / x_scale^2) replaces the column norms as the
    source of the damping diagonal; ``box`` (a :class:`~sparselm.lm.step_control.Box`) keeps
    trial points inside the bounds.
    """

    def __init__(self, fun: Callable, jacobian_at: Callable, evaluator: MatrixEvaluator, x0: np.ndarray,
                 f0: np.ndarray, timer: PhaseTimer, fixed_diagonal: Optional[np.ndarray] = None, box=None):
        n = x0.size
        self.fun, self.jacobian_at, self.matrix, self.timer = fun, jacobian_at, evaluator, timer
        self.fixed_diagonal = fixed_diagonal
        self.box = box
        self.layout = SimpleNamespace(block_id={POINT: np.arange(n)}, constant_columns=np.zeros(n, dtype=bool))
        self.nfev, self.njev = 1, 0
        self._last_x, self._last_f = x0.copy(), f0
        self.x, self.f = x0.copy(), f0  # the point of the current linearisation

    @property
    def gradient(self) -> np.ndarray:
        return self.matrix.gradient

    @property
    def column_norms(self) -> np.ndarray:
        return self.matrix.column_norms if self.fixed_diagonal is None else self.fixed_diagonal

    def _residuals(self, x: np.ndarray) -> np.ndarray:
        if np.array_equal(x, self._last_x):
            return self._last_f
        f = residuals_at(self.fun, x, self.timer)
        self.nfev += 1
        self._last_x, self._last_f = x.copy(), f
        return f

    def linearize(self, values, gradient: bool = True, check_jacobian: bool = True) -> float:
        """Jacobian, loss correction, gradient and column norms at ``values['x']``; returns the cost.
        (``check_jacobian`` is ignored: the Jacobian is checked as it is evaluated.)"""
        x = values[POINT]
        f = self._residuals(x)
        self.jacobian_at(x, f)
        self.njev += 1
        with self.timer.phase("assembly"):
            cost = self.matrix.linearize(f)
        self.x, self.f = x.copy(), f
        return cost

    def check_linearization_finite(self, cost: float) -> None:
        """Raise NonFiniteError unless the cost, J^T f and diag(J^T J) of the last linearisation are finite
        (they overflow when finite residuals and Jacobian entries are too large together)."""
        if math.isfinite(cost) and np.isfinite(self.gradient).all() and np.isfinite(self.column_norms).all():
            return
        raise NonFiniteError(f"the cost or the gradient of `fun` overflows the float64 range (largest |f| "
                             f"{float(np.max(np.abs(self.f))):.3g})")

    def apply_step(self, values, step: np.ndarray, out) -> None:
        """out['x'] = x + step, clipped to the bounds (a projected step may round past them)."""
        np.add(values[POINT], step, out=out[POINT])
        if self.box is not None:
            np.clip(out[POINT], self.box.lb, self.box.ub, out=out[POINT])

    def cost_at(self, values) -> float:
        """The cost at a trial point (NaN if its residuals are not finite)."""
        f = self._residuals(values[POINT])
        if not np.all(np.isfinite(f)):
            return math.nan
        return self.matrix.cost_of(f)

    def model_cost_change(self, step: np.ndarray) -> float:
        return self.matrix.model_cost_change(step)
