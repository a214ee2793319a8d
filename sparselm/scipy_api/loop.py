"""The Levenberg-Marquardt loop of :func:`sparselm.least_squares` with scipy's termination tests.

One iteration: solve the damped normal equations for a step (the linear solver of
:mod:`sparselm.linalg.general_normal`), reject it as invalid when the solve failed or the model does
not decrease, else evaluate the residuals at the trial point, accept or reject by the gain ratio
(:class:`~sparselm.lm.strategy.LevenbergMarquardtStrategy`), and relinearise after an accepted
step. Termination codes are scipy's (see :mod:`sparselm.scipy_api.front`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from scipy.optimize import OptimizeResult

from sparselm.linalg.base import LinearSolver
from sparselm.lm.options import SolverOptions
from sparselm.lm.strategy import LevenbergMarquardtStrategy
from sparselm.lm.summary import TABLE_HEADER, IterationRecord, Summary
from sparselm.scipy_api.evaluator import MatrixEvaluator
from sparselm.util.timing import PhaseTimer
from sparselm.util.numerics import stable_norm


@dataclass
class LoopSetup:
    """What the loop works with.

    fun             x -> f (the user's residual function with its arguments).
    jacobian_at     (x, f) -> None: evaluate the Jacobian at x into ``evaluator``.
    ftol, xtol, gtol, max_nfev   scipy's tolerances and evaluation limit.
    fixed_diagonal  the damping diagonal for an array ``x_scale`` (None: the column norms).
    damping         the strategy's damping ('marquardt', 'levenberg', 'gauss_newton').
    callback        called with an OptimizeResult after each accepted step (True: stop).
    verbose         scipy's verbose (2: the iteration table).
    """

    fun: Callable
    jacobian_at: Callable
    evaluator: MatrixEvaluator
    linear_solver: LinearSolver
    strategy: LevenbergMarquardtStrategy
    options: SolverOptions
    timer: PhaseTimer
    ftol: float
    xtol: float
    gtol: float
    max_nfev: int
    fixed_diagonal: Optional[np.ndarray]
    damping: str
    callback: Optional[Callable]
    verbose: int


@dataclass
class LoopOutcome:
    """The loop's end: scipy's status code, the reason of a failure, the point and its counters."""

    status: int
    reason: str
    x: np.ndarray
    f: np.ndarray
    cost: float
    nfev: int
    njev: int
    nit: int


def run_loop(setup: LoopSetup, x: np.ndarray, f: np.ndarray, nfev: int, njev: int, summary: Summary,
             start: float) -> LoopOutcome:
    """Iterate from x (residuals f, Jacobian already evaluated) until a termination test holds.

    Records every iteration in ``summary`` (counts, initial/final cost, setup time); Ctrl-C ends
    the loop with status -1 and the best point so far.
    """
    fun_wrapped, jacobian_at, ev, ls = setup.fun, setup.jacobian_at, setup.evaluator, setup.linear_solver
    strategy, options, timer = setup.strategy, setup.options, setup.timer
    ftol, xtol, gtol, max_nfev_used = setup.ftol, setup.xtol, setup.gtol, setup.max_nfev
    fixed_diagonal, damping_used, cb, verbose = setup.fixed_diagonal, setup.damping, setup.callback, setup.verbose
    n = x.size
    cost = math.nan

    def out(line):
        print(line, flush=True)

    def record(rec):
        summary.iterations.append(rec)
        if verbose == 2:
            if rec.iteration == 0:
                out(TABLE_HEADER)
            out(rec.row())

    status = None
    reason = ""
    nit = 0
    try:
        with timer.phase("assembly"):
            cost = ev.linearize(f)
        ls.linearize()
        summary.setup_time_s = time.perf_counter() - start
        summary.initial_cost = summary.final_cost = cost
        g_norm = float(np.max(np.abs(ev.gradient))) if n else 0.0
        record(IterationRecord(0, cost, 0.0, g_norm, 0.0, 0.0, strategy.radius, 0, 0.0,
                               time.perf_counter() - start, True))
        if g_norm < gtol:
            status = 1
        iteration = 0
        invalid_in_row = 0
        while status is None:
            if nfev >= max_nfev_used:
                status = 0
                break
            iteration += 1
            t_iter = time.perf_counter()
            diag_source = ev.column_norms if fixed_diagonal is None else fixed_diagonal
            solution = ls.solve(strategy.diagonal(diag_source))
            model_change = ev.model_cost_change(solution.step) if solution.ok else math.nan
            if not (solution.ok and math.isfinite(model_change) and model_change > 0.0):
                invalid_in_row += 1
                summary.invalid_steps += 1
                summary.unsuccessful_steps += 1
                strategy.step_rejected()
                record(IterationRecord(iteration, cost, 0.0, g_norm, 0.0, 0.0, strategy.radius, solution.iterations,
                                       time.perf_counter() - t_iter, time.perf_counter() - start, False, False))
                if invalid_in_row > options.max_consecutive_invalid_steps:
                    status = -1
                    reason = (f"{invalid_in_row} consecutive invalid steps (last: "
                              f"{solution.message or f'model cost change {model_change:.3e} is not positive'}).")
                elif strategy.below_minimum:
                    status = -1
                    reason = "Minimum trust region radius reached without a valid step."
                continue
            invalid_in_row = 0
            step = solution.step
            x_new = x + step
            with timer.phase("residual"):
                f_new = fun_wrapped(x_new).astype(float)
            nfev += 1
            step_norm = stable_norm(step)
            trial_cost = ev.cost_of(f_new) if np.all(np.isfinite(f_new)) else math.nan
            if math.isfinite(trial_cost):
                actual = cost - trial_cost
                ratio = actual / model_change
                # scipy's check_termination
                ftol_ok = actual < ftol * cost and ratio > 0.25
                xtol_ok = step_norm < xtol * (xtol + stable_norm(x))
                status = 4 if (ftol_ok and xtol_ok) else 2 if ftol_ok else 3 if xtol_ok else None
                success = ratio > options.min_relative_decrease if damping_used != "gauss_newton" else actual > 0
                if status is not None:
                    success = actual > 0  # scipy keeps any decrease on its last step
            else:
                actual, ratio, success = math.nan, math.nan, False
            if success:
                x, f = x_new, f_new
                jacobian_at(x, f)
                njev += 1
                with timer.phase("assembly"):
                    cost = ev.linearize(f)
                ls.linearize()
                g_norm = float(np.max(np.abs(ev.gradient)))
                strategy.step_accepted(ratio)
                summary.successful_steps += 1
                summary.final_cost = cost
                nit += 1
                if g_norm < gtol:
                    status = 1
            else:
                summary.unsuccessful_steps += 1
                strategy.step_rejected()
            record(IterationRecord(iteration, cost, actual if success else 0.0, g_norm, step_norm,
                                   ratio if math.isfinite(ratio) else 0.0, strategy.radius, solution.iterations,
                                   time.perf_counter() - t_iter, time.perf_counter() - start, success))
            if success and cb is not None:
                res = OptimizeResult(x=x.copy(), fun=f.copy(), nit=nit, nfev=nfev)
                res["cost"] = cost
                try:
                    if cb(res) is True:
                        status = -2
                except StopIteration:
                    status = -2
            if status is None and not success and damping_used == "gauss_newton":
                status = -1
                reason = "Gauss-Newton step did not decrease the cost (use damping='marquardt')."
            if status is None and strategy.below_minimum:
                status = -1
                reason = "Minimum trust region radius reached."
    except KeyboardInterrupt:
        status = -1
        reason = "Interrupted by the user (Ctrl-C); the best point so far is returned."
    return LoopOutcome(status, reason, x, f, cost, nfev, njev, nit)
