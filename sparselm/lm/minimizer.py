"""The LM loop: linearise, solve the damped system, evaluate the trial, accept or reject, stop.

The one Levenberg-Marquardt loop of sparselm: :func:`sparselm.solve` and
:func:`sparselm.least_squares` both run it, with different termination tests
(:mod:`sparselm.lm.termination`: Ceres' or scipy's) and, for the scipy front door, a step control
(:mod:`sparselm.lm.step_control`: trust radius in scaled variables, undamped steps where the model
is exact, bounds).

Semantics follow Ceres' TrustRegionMinimizer: every trial counts as an iteration; a step whose
linear solve fails or whose model decrease is not positive is *invalid* (more damping, at most
``max_consecutive_invalid_steps`` in a row); a trial with a non-finite cost is unsuccessful. Only
decreasing steps are accepted, so the point held is always the best seen. The order of the tests
in one iteration: the budget (before the solve); after the trial cost, ``before_judging`` (Ceres'
parameter tolerance: the trial is neither taken nor recorded); then the acceptance (``judge``),
relinearisation of an accepted trial, the record, ``after_trial`` (function and gradient tests,
scipy's statuses); a trust radius below its minimum; the callbacks (before ``after_trial`` where the
termination says ``callbacks_first``, as scipy calls its callback). Ctrl-C keeps the best point.

Every quantity these tests and the acceptance decide on is finite or the iteration does not count:
|x| and |step| are overflow-safe norms (:mod:`sparselm.util.numerics`), so the parameter test can
never pass against an infinite |x|, and Ceres' parameter test must also hold block by block (one
huge coordinate must not mask the steps of all others); a linearisation whose cost, gradient or
diag(J^T J) is not finite raises NonFiniteError (refused at the start, an unsuccessful step at a
trial point); a step whose norm, model decrease or gain ratio is not finite is invalid, and its
record says why.
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
from sparselm.lm.termination import CeresTermination, Stop
from sparselm.util.numerics import combined_norm, stable_norm, unit_rows

#: re-solves with more damping per iteration to bring a step near the trust radius (scipy front door)
FIT_RADIUS_SOLVES = 3


class Minimizer:
    """Runs LM on parameter values (dict of group arrays), in place; fills a Summary.

    ``termination`` decides when to stop (default: Ceres' tests on ``options``); ``step_control``
    (optional, see :class:`~sparselm.lm.step_control.ScaledStepControl`) shapes the damping and
    the step and measures optimality.
    """

    def __init__(self, evaluator: Evaluator, linear_solver: LinearSolver, options: SolverOptions,
                 out: Optional[Callable[[str], None]] = None, termination=None, step_control=None):
        self.evaluator = evaluator
        self.linear_solver = linear_solver
        self.options = options
        self.strategy = LevenbergMarquardtStrategy(options, evaluator.layout.constant_columns)
        self.out = out or (lambda line: print(line, flush=True))
        self.termination = termination if termination is not None else CeresTermination(options)
        self.step_control = step_control
        #: the best point after :meth:`run` (also when it ended with an exception inside the loop);
        #: None before the loop started (e.g. a non-finite residual at the starting point)
        self.best_values: Optional[Dict[str, np.ndarray]] = None

    # The norms the stopping rules read (a distributed subclass reduces them over its ranks).
    def _gradient_max_norm(self) -> float:
        g = self.evaluator.gradient
        return float(np.max(np.abs(g))) if g.size else 0.0

    def _step_norm(self, step: np.ndarray) -> float:
        return stable_norm(step)

    def _free_norm(self, values: Dict[str, np.ndarray]) -> float:
        """|x| over the free parameter blocks, without overflow."""
        return combined_norm(stable_norm(values[name] if (ids >= 0).all() else values[name][ids >= 0])
                             for name, ids in self.evaluator.layout.block_id.items())

    def _optimality(self, values) -> float:
        if self.step_control is not None:
            return self.step_control.optimality(values, self.evaluator.gradient)
        return self._gradient_max_norm()

    def run(self, values: Dict[str, np.ndarray], summary: Summary, start_time: float) -> None:
        """Minimise from ``values``; records go to ``summary``, the best point to :attr:`best_values` (the
        dict may be the trial buffers after swaps)."""
        ev, ls, o, tr = self.evaluator, self.linear_solver, self.options, self.strategy
        term, sc = self.termination, self.step_control
        trial = {k: np.empty_like(v) for k, v in values.items()}
        cost = self._linearize(values)
        tr.fix_jacobi_scaling(ev.column_norms)
        summary.initial_cost = summary.final_cost = cost
        grad_norm = self._optimality(values)
        self._record(summary, IterationRecord(0, cost, 0.0, grad_norm, 0.0, 0.0, tr.radius, 0, 0.0,
                                              time.perf_counter() - start_time, True))
        stop = term.at_start(grad_norm)
        if stop is not None:
            return self._stop(summary, stop)
        iteration, invalid_in_row = 0, 0
        try:
            while True:
                stop = term.before_iteration(iteration, time.perf_counter() - start_time)
                if stop is not None:
                    return self._stop(summary, stop)
                iteration += 1
                t_iter = time.perf_counter()
                diagonal = tr.diagonal(ev.column_norms)
                if sc is not None:
                    diagonal = sc.damping(values, ev.gradient, diagonal)
                solution = ls.solve(diagonal)
                if sc is not None and solution.ok:
                    solution, diagonal = self._fit_radius(values, solution, diagonal)
                step = solution.step
                if not solution.ok:
                    model_change = math.nan
                elif sc is None:
                    model_change = self._model_cost_change(solution, diagonal)
                else:
                    step = sc.shape(values, step)
                    model_change = ev.model_cost_change(step)
                step_norm = self._step_norm(step) if solution.ok else math.nan
                reason = self._invalid_step_reason(solution, model_change, step_norm)
                if reason is None:
                    ev.apply_step(values, step, trial)
                    trial_cost = ev.cost_at(trial)
                    if not math.isfinite(trial_cost):
                        trial_cost = math.inf
                    cost_change = cost - trial_cost
                    ratio, reason = self.gain_ratio(cost_change, model_change)
                if reason is not None:
                    invalid_in_row += 1
                    summary.invalid_steps += 1
                    summary.unsuccessful_steps += 1
                    tr.step_rejected()
                    if sc is not None:
                        sc.invalid()
                    self._record(summary, IterationRecord(iteration, cost, 0.0, grad_norm, 0.0, 0.0, tr.radius,
                                                          solution.iterations, time.perf_counter() - t_iter,
                                                          time.perf_counter() - start_time, False, False, reason))
                    if invalid_in_row > o.max_consecutive_invalid_steps:
                        return self._stop(summary, Stop("failure", f"{invalid_in_row} consecutive invalid steps "
                                                                   f"(last: {reason})."))
                    if tr.below_minimum:
                        return self._stop(summary, term.radius_exhausted())
                    if self._callbacks_say_stop(summary):
                        return
                    continue
                invalid_in_row = 0
                x_norm = self._free_norm(values)
                stop = term.before_judging(step_norm, x_norm)
                if stop is not None and self._every_block_moves_little(values, step):
                    return self._stop(summary, stop)
                success = ratio > o.min_relative_decrease if o.damping != "gauss_newton" else cost_change > 0
                success = term.judge(cost, cost_change, ratio, step_norm, x_norm, success)
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
                        grad_norm = self._optimality(values)
                        tr.step_accepted(ratio)
                        summary.successful_steps += 1
                if not success:
                    summary.unsuccessful_steps += 1
                    tr.step_rejected()
                if sc is not None:
                    sc.judged(ratio, success)
                self._record(summary, IterationRecord(iteration, cost, cost_change if success else 0.0, grad_norm,
                                                      step_norm, ratio, tr.radius, solution.iterations,
                                                      time.perf_counter() - t_iter, time.perf_counter() - start_time,
                                                      success))
                if term.callbacks_first and self._callbacks_say_stop(summary):
                    return
                stop = term.after_trial(success, grad_norm)
                if stop is not None:
                    return self._stop(summary, stop)
                if not success and o.damping == "gauss_newton":
                    return self._stop(summary, Stop("no_convergence", "Gauss-Newton step did not decrease the cost "
                                                                      "(use damping='marquardt')."))
                if tr.below_minimum:
                    return self._stop(summary, term.radius_exhausted())
                if not term.callbacks_first and self._callbacks_say_stop(summary):
                    return
        except KeyboardInterrupt:
            return self._stop(summary, Stop("interrupted", "Interrupted by the user (Ctrl-C); the best point so far "
                                                           "is kept."))
        finally:
            self.best_values = values

    def _fit_radius(self, values, solution, diagonal):
        """More damping while the step is well beyond the step control's trust radius.

        A coarse version of MINPACK's lmpar: for a large damping the step length falls like
        1 / damping, so the diagonal is multiplied by the excess |h| / Delta (at most
        FIT_RADIUS_SOLVES times, until |h| <= 1.5 Delta); the LM radius follows, so the next
        iteration starts from the damping found. An undamped trial that is too long restarts from
        the strategy's damping. What is still too long is shortened by the step control.
        """
        sc, tr, ls = self.step_control, self.strategy, self.linear_solver
        for _ in range(FIT_RADIUS_SOLVES):
            excess = sc.excess(solution.step)
            if excess <= 1.5:
                break
            if diagonal.any():
                diagonal = diagonal * excess
                tr.radius /= excess
            else:
                diagonal = sc.damping(values, self.evaluator.gradient, tr.diagonal(self.evaluator.column_norms),
                                      undamped=False)
            candidate = ls.solve(diagonal)
            if not candidate.ok:
                break
            solution = candidate
        return solution, diagonal

    def _linearize(self, values) -> float:
        cost = self.evaluator.linearize(values, gradient=not self.linear_solver.provides_gradient,
                                        check_jacobian=False)  # checked below, through the column norms
        self.linear_solver.linearize()
        self.evaluator.check_linearization_finite(cost)
        if self.step_control is not None:
            self.step_control.linearized(self.evaluator.column_norms)
        return cost

    def _every_block_moves_little(self, values: Dict[str, np.ndarray], step: np.ndarray) -> bool:
        """The parameter test block by block: |step_b| <= parameter_tolerance * (|x_b| + parameter_tolerance)
        for every free block b, so that one huge coordinate (a BAL point at 1e150) cannot make |x| so large
        that the global test passes while every other block still moves."""
        tolerance = self.options.parameter_tolerance
        layout = self.evaluator.layout
        for name, ids in layout.block_id.items():
            free = ids >= 0
            if not free.any():
                continue
            first, size = int(layout.block_col[ids[free][0]]), int(layout.block_size[ids[free][0]])
            step_rows = step[first:first + int(free.sum()) * size].reshape(-1, size)
            if np.any(unit_rows(step_rows)[1] > tolerance * (unit_rows(values[name][free])[1] + tolerance)):
                return False
        return True

    @staticmethod
    def gain_ratio(cost_change: float, model_change: float):
        """(actual / predicted decrease, None), or (ratio, why the step is invalid) when a finite cost
        change over the positive model decrease overflows: the model then predicts nothing measurable.
        An infinite cost change (a trial where the cost is not finite) gives ratio -inf: unsuccessful."""
        ratio = cost_change / model_change
        if math.isfinite(cost_change) and not math.isfinite(ratio):
            return ratio, (f"gain ratio {cost_change:.3e} / {model_change:.3e} is not finite (the model "
                           "decrease is below the resolution of the cost)")
        return ratio, None

    @staticmethod
    def _invalid_step_reason(solution, model_change: float, step_norm: float) -> Optional[str]:
        """Why the linear solution cannot be used as a step, or None when it can."""
        if not solution.ok:
            return solution.message or "the linear solve failed"
        if not math.isfinite(step_norm):
            return f"step norm {step_norm:.3e} is not finite"
        if not (math.isfinite(model_change) and model_change > 0.0):
            return f"model cost change {model_change:.3e} is not positive and finite"
        return None

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
                self._stop(summary, Stop("user_success", "A callback asked the solver to stop."))
                return True
        return False

    @staticmethod
    def _stop(summary: Summary, stop: Stop) -> None:
        summary.termination = stop.termination
        summary.message = stop.message
