"""When the LM loop stops: the termination tests, pluggable so that one loop serves both front doors.

:class:`~sparselm.lm.minimizer.Minimizer` asks its termination object at fixed points of every
iteration; each answer is None (go on) or a ``Stop`` (the Summary's termination and message).

Ceres' tests (:class:`CeresTermination`, :func:`sparselm.solve`; F the cost, dF its change):

    start / accepted  max |g| <= gradient_tolerance                        convergence
    every trial       |step| <= parameter_tolerance (|x| + parameter_tolerance), before the step
                      is judged (the trial is neither taken nor recorded)   convergence
    every trial       |dF| <= function_tolerance * F                        convergence
    budget            max_iterations, max_time_s                            no_convergence

scipy's tests (:class:`ScipyTermination`, :func:`sparselm.least_squares`; its ``check_termination``
and status codes, with ``optimality`` the gradient measure the step control gives: max |g|, or
the Coleman-Li scaled gradient with bounds):

    1  gtol   optimality < gtol (at the start and after an accepted step)
    2  ftol   dF < ftol * F and the gain ratio > 0.25
    3  xtol   |step| < xtol (xtol + |x|)          4: ftol and xtol together
    0  budget nfev >= max_nfev (function evaluations, trial points included)

On ftol/xtol the last step is kept if it decreased the cost at all (scipy's rule). A trust region
that shrinks to nothing without any test holding is status -1 ("stopped without converging").
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

from sparselm.lm.options import SolverOptions


class Stop(NamedTuple):
    """A reason to stop: the Summary's termination kind and message."""

    termination: str
    message: str


class CeresTermination:
    """Ceres Solver's termination tests on :class:`~sparselm.lm.options.SolverOptions`."""

    callbacks_first = False

    def __init__(self, options: SolverOptions):
        self.options = options
        self._function_converged = False

    def at_start(self, optimality: float) -> Optional[Stop]:
        o = self.options
        if optimality <= o.gradient_tolerance:
            return Stop("convergence", f"Gradient tolerance reached: {optimality:.3e} <= {o.gradient_tolerance:.3e}.")
        return None

    def before_iteration(self, iteration: int, elapsed_s: float) -> Optional[Stop]:
        o = self.options
        if iteration >= o.max_iterations:
            return Stop("no_convergence", f"Maximum number of iterations reached ({o.max_iterations}).")
        if elapsed_s >= o.max_time_s:
            return Stop("no_convergence", f"Maximum solver time reached ({o.max_time_s:g} s).")
        return None

    def before_judging(self, step_norm: float, x_norm: float) -> Optional[Stop]:
        o = self.options
        if step_norm <= o.parameter_tolerance * (x_norm + o.parameter_tolerance):
            return Stop("convergence", f"Parameter tolerance reached: |step| {step_norm:.3e} <= "
                                       f"{o.parameter_tolerance * (x_norm + o.parameter_tolerance):.3e}.")
        return None

    def judge(self, cost: float, cost_change: float, ratio: float, step_norm: float, x_norm: float,
              success: bool) -> bool:
        """Note the function test for after the step; the acceptance stays the gain-ratio one."""
        self._function_converged = math.isfinite(cost_change) and abs(cost_change) <= self.options.function_tolerance * cost
        self._cost_change, self._cost = cost_change, cost
        return success

    def after_trial(self, success: bool, optimality: float) -> Optional[Stop]:
        o = self.options
        if self._function_converged:
            return Stop("convergence", f"Function tolerance reached: |cost change| {abs(self._cost_change):.3e} <= "
                                       f"{o.function_tolerance * self._cost:.3e}.")
        if success and optimality <= o.gradient_tolerance:
            return Stop("convergence", f"Gradient tolerance reached: {optimality:.3e} <= {o.gradient_tolerance:.3e}.")
        return None

    def radius_exhausted(self) -> Stop:
        return Stop("convergence", "Minimum trust region radius reached.")


TERMINATION_MESSAGES = {
    -2: "Stopped because `callback` function raised `StopIteration` or returned `True`",
    -1: "The solver stopped without converging; the best point so far is returned.",
    0: "The maximum number of function evaluations is exceeded.",
    1: "`gtol` termination condition is satisfied.",
    2: "`ftol` termination condition is satisfied.",
    3: "`xtol` termination condition is satisfied.",
    4: "Both `ftol` and `xtol` termination conditions are satisfied.",
}


class ScipyTermination:
    """scipy's ``least_squares`` tests; ``status`` holds scipy's code once one of them fired.

    ``evaluations`` returns the number of function evaluations so far (the budget is max_nfev).
    The callback sees every accepted step, the last one included (``callbacks_first``).
    """

    callbacks_first = True

    def __init__(self, ftol: float, xtol: float, gtol: float, max_nfev: int, evaluations: Callable[[], int]):
        self.ftol, self.xtol, self.gtol, self.max_nfev = ftol, xtol, gtol, max_nfev
        self.evaluations = evaluations
        self.status: Optional[int] = None
        self._pending: Optional[int] = None

    def _fire(self, status: int, termination: str = "convergence") -> Stop:
        self.status = status
        return Stop(termination, TERMINATION_MESSAGES[status])

    def at_start(self, optimality: float) -> Optional[Stop]:
        return self._fire(1) if optimality < self.gtol else None

    def before_iteration(self, iteration: int, elapsed_s: float) -> Optional[Stop]:
        return self._fire(0, "no_convergence") if self.evaluations() >= self.max_nfev else None

    def before_judging(self, step_norm: float, x_norm: float) -> Optional[Stop]:
        return None

    def judge(self, cost: float, cost_change: float, ratio: float, step_norm: float, x_norm: float,
              success: bool) -> bool:
        """scipy's check_termination on this trial; on ftol/xtol keep the step if it decreased the cost."""
        if not math.isfinite(cost_change):
            self._pending = None
            return False
        ftol_ok = cost_change < self.ftol * cost and ratio > 0.25
        xtol_ok = step_norm < self.xtol * (self.xtol + x_norm)
        self._pending = 4 if (ftol_ok and xtol_ok) else 2 if ftol_ok else 3 if xtol_ok else None
        return cost_change > 0 if self._pending is not None else success

    def after_trial(self, success: bool, optimality: float) -> Optional[Stop]:
        if self._pending is not None:
            return self._fire(self._pending)
        if success and optimality < self.gtol:
            return self._fire(1)
        return None

    def radius_exhausted(self) -> Stop:
        self.status = -1
        return Stop("no_convergence", "The damping grew without bound and no step decreased the cost: stopped "
                                      "without converging (the best point so far is returned).")
