"""The LM loop: linearise, solve the damped system, evaluate the trial, accept or reject, stop.

Semantics follow Ceres' TrustRegionMinimizer: every trial counts as an iteration; a step whose
linear solve fails or whose model decrease is not positive is *invalid* (more damping, at most
``max_consecutive_invalid_steps`` in a row); a trial with a non-finite cost is unsuccessful. Only
decreasing steps are accepted, so the point held is always the best seen. Termination tests:

    gradient      max |J^T r| <= gradient_tolerance                      (after a linearisation)
    parameter     |step| <= parameter_tolerance * (|x| + parameter_tolerance)
    function      |cost change| <= function_tolerance * cost
    radius        trust-region radius below min_trust_region_radius
    limits        max_iterations, max_time_s; a callback returning True; Ctrl-C
"""
from __future__ import annotations

import math
import time
from typing import Callable, Dict, Optional

import numpy as np

from sparselm.core.evaluator import Evaluator, NonFiniteError
from sparselm.linalg.base import LinearSolver
from sparselm.lm.options import SolverOptions
from sparselm.lm.strategy import LevenbergMarquardtStrategy
from sparselm.lm.summary import TABLE_HEADER, IterationRecord, Summary


class Minimizer:
    """Runs LM on parameter values (dict of group arrays), in place; fills a Summary."""

    def __init__(self, evaluator: Evaluator, linear_solver: LinearSolver, options: SolverOptions,
                 out: Optional[Callable[[str], None]] = None):
        self.evaluator = evaluator
        self.linear_solver = linear_solver
        self.options = options
        self.strategy = LevenbergMarquardtStrategy(options, evaluator.layout.constant_columns)
        self.out = out or (lambda line: print(line, flush=True))
        #: the best point after :meth:`run` (also when it ended with an exception inside the loop);
        #: None before the loop started (e.g. a non-finite residual at the starting point)
        self.best_values: Optional[Dict[str, np.ndarray]] = None

    # The three norms the stopping rules read (a distributed subclass reduces them over its ranks).
    def _gradient_max_norm(self) -> float:
        g = self.evaluator.gradient
        return float(np.max(np.abs(g))) if g.size else 0.0

    def _step_norm(self, step: np.ndarray) -> float:
        return float(np.linalg.norm(step))

    def _free_norm(self, values: Dict[str, np.ndarray]) -> float:
        total = 0.0
        for name, ids in self.evaluator.layout.block_id.items():
            v = values[name]
            total += float(np.sum(v * v)) if (ids >= 0).all() else float(np.sum(v[ids >= 0] ** 2))
        return math.sqrt(total)

    def run(self, values: Dict[str, np.ndarray], summary: Summary, start_time: float) -> None:
        """Minimise from ``values``; records go to ``summary``, the best point to :attr:`best_values` (the
        dict may be the trial buffers after swaps)."""
        ev, ls, o, tr = self.evaluator, self.linear_solver, self.options, self.strategy
        trial = {k: np.empty_like(v) for k, v in values.items()}
        cost = self._linearize(values)
        tr.fix_jacobi_scaling(ev.column_norms)
        summary.initial_cost = summary.final_cost = cost
        grad_norm = self._gradient_max_norm()
        self._record(summary, IterationRecord(0, cost, 0.0, grad_norm, 0.0, 0.0, tr.radius, 0, 0.0,
                                              time.perf_counter() - start_time, True))
        if grad_norm <= o.gradient_tolerance:
            return self._stop(summary, "convergence", f"Gradient tolerance reached: {grad_norm:.3e} <= "
                                                      f"{o.gradient_tolerance:.3e}.")
        iteration, invalid_in_row = 0, 0
        try:
            while True:
                if iteration >= o.max_iterations:
                    return self._stop(summary, "no_convergence", f"Maximum number of iterations reached ({o.max_iterations}).")
                if time.perf_counter() - start_time >= o.max_time_s:
                    return self._stop(summary, "no_convergence", f"Maximum solver time reached ({o.max_time_s:g} s).")
                iteration += 1
                t_iter = time.perf_counter()
                diagonal = tr.diagonal(ev.column_norms)
                solution = ls.solve(diagonal)
                step = solution.step
                model_change = self._model_cost_change(solution, diagonal) if solution.ok else math.nan
                valid = solution.ok and math.isfinite(model_change) and model_change > 0.0
                if not valid:
                    invalid_in_row += 1
                    summary.invalid_steps += 1
                    summary.unsuccessful_steps += 1
                    tr.step_rejected()
                    reason = solution.message or f"model cost change {model_change:.3e} is not positive"
                    self._record(summary, IterationRecord(iteration, cost, 0.0, grad_norm, 0.0, 0.0, tr.radius,
                                                          solution.iterations, time.perf_counter() - t_iter,
                                                          time.perf_counter() - start_time, False, False))
                    if invalid_in_row > o.max_consecutive_invalid_steps:
                        return self._stop(summary, "failure", f"{invalid_in_row} consecutive invalid steps "
                                                              f"(last: {reason}).")
                    if tr.below_minimum:
                        return self._stop(summary, "convergence", "Minimum trust region radius reached.")
                    if self._callbacks_say_stop(summary):
                        return
                    continue
                invalid_in_row = 0
                step_norm = self._step_norm(step)
                ev.apply_step(values, step, trial)
                trial_cost = ev.cost_at(trial)
                if not math.isfinite(trial_cost):
                    trial_cost = math.inf
                x_norm = self._free_norm(values)
                if step_norm <= o.parameter_tolerance * (x_norm + o.parameter_tolerance):
                    # As Ceres: the step is not taken and the iteration is not recorded.
                    return self._stop(summary, "convergence", f"Parameter tolerance reached: |step| {step_norm:.3e} <= "
                                      f"{o.parameter_tolerance * (x_norm + o.parameter_tolerance):.3e}.")
                cost_change = cost - trial_cost
                ratio = cost_change / model_change
                success = ratio > o.min_relative_decrease if o.damping != "gauss_newton" else cost_change > 0
                function_converged = math.isfinite(cost_change) and abs(cost_change) <= o.function_tolerance * cost
                if success:
                    # Linearise the trial before adopting it: a Jacobian that is not finite there
                    # makes the step unsuccessful, and a Ctrl-C here keeps the old point and cost.
                    try:
                        new_cost = self._linearize(trial)
                    except NonFiniteError:
                        self._linearize(values)
                        success = False
                    else:
                        values, trial = self._swap(values, trial)
                        cost = summary.final_cost = new_cost
                        grad_norm = self._gradient_max_norm()
                        tr.step_accepted(ratio)
                        summary.successful_steps += 1
                if not success:
                    summary.unsuccessful_steps += 1
                    tr.step_rejected()
                self._record(summary, IterationRecord(iteration, cost, cost_change if success else 0.0, grad_norm,
                                                      step_norm, ratio, tr.radius, solution.iterations,
                                                      time.perf_counter() - t_iter, time.perf_counter() - start_time,
                                                      success))
                if function_converged:
                    return self._stop(summary, "convergence", f"Function tolerance reached: |cost change| "
                                      f"{abs(cost_change):.3e} <= {o.function_tolerance * cost:.3e}.")
                if success and grad_norm <= o.gradient_tolerance:
                    return self._stop(summary, "convergence", f"Gradient tolerance reached: {grad_norm:.3e} <= "
                                                              f"{o.gradient_tolerance:.3e}.")
                if not success and o.damping == "gauss_newton":
                    return self._stop(summary, "no_convergence", "Gauss-Newton step did not decrease the cost "
                                                                 "(use damping='marquardt').")
                if tr.below_minimum:
                    return self._stop(summary, "convergence", "Minimum trust region radius reached.")
                if self._callbacks_say_stop(summary):
                    return
        except KeyboardInterrupt:
            return self._stop(summary, "interrupted", "Interrupted by the user (Ctrl-C); the best point so far is kept.")
        finally:
            self.best_values = values

    def _linearize(self, values) -> float:
        cost = self.evaluator.linearize(values, gradient=not self.linear_solver.provides_gradient)
        self.linear_solver.linearize()
        return cost

    def _model_cost_change(self, solution, diagonal) -> float:
        """L(0) - L(step) of the model L(d) = 1/2 |r + J d|^2.

        For an exact solution of (J^T J + D) d = -g, d^T J^T J d = -g^T d - d^T D d, hence
        L(0) - L(d) = -g^T d - 1/2 d^T J^T J d = (-g^T d + d^T D d) / 2 (two non-negative
        terms, no cancellation); inexact (iterative) steps use J d explicitly.
        """
        d = solution.step
        if solution.exact:
            g = self.evaluator.gradient
            return 0.5 * (float(d @ (diagonal * d)) - float(g @ d))
        return self.evaluator.model_cost_change(d)

    @staticmethod
    def _swap(a, b):
        return b, a

    def _record(self, summary: Summary, rec: IterationRecord) -> None:
        summary.iterations.append(rec)
        if self.options.verbose:
            if rec.iteration == 0:
                self.out(TABLE_HEADER)
            self.out(rec.row())

    def _callbacks_say_stop(self, summary: Summary) -> bool:
        rec = summary.iterations[-1]
        for cb in self.options.callbacks:
            if cb(rec):
                self._stop(summary, "user_success", "A callback asked the solver to stop.")
                return True
        return False

    @staticmethod
    def _stop(summary: Summary, termination: str, message: str) -> None:
        summary.termination = termination
        summary.message = message
