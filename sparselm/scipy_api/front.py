"""``sparselm.least_squares``: a drop-in for ``scipy.optimize.least_squares`` on sparse problems.

    from sparselm import least_squares           # instead of scipy.optimize.least_squares
    res = least_squares(fun, x0, jac, bounds, jac_sparsity=S, loss="soft_l1")

scipy's signature, argument order, checks and messages (:mod:`sparselm.scipy_api.arguments`) and
its result fields with its meaning. The minimiser behind them is sparselm's one Levenberg-Marquardt
loop (:class:`~sparselm.lm.minimizer.Minimizer`, Nielsen's damping rule, Ceres' semantics for
invalid and unsuccessful steps) with scipy's termination tests (:class:`~sparselm.lm.termination.
ScipyTermination`) and a step control (:mod:`sparselm.lm.step_control`): a trust radius in the
scaled variables as scipy's trf and MINPACK bound their steps, undamped Gauss-Newton steps where the
model proved exact, and bounds by a projected LM with an active set. Each step solves the damped
normal equations (J^T J + D) d = -J^T r by Cholesky (CHOLMOD, or LAPACK for n <= 300):

* once: the CSC pattern of J (and its CSR twin), the pattern of J^T J, CHOLMOD's symbolic analysis,
  and for finite differences a greedy colouring of the columns (structurally orthogonal columns
  share one function evaluation);
* per Jacobian: the values are copied into the fixed pattern, J^T J is filled in place by a numba
  kernel, gradient and column norms likewise; per trial: the diagonal, a numeric factorization,
  one solve. A Jacobian with entries outside the pattern grows it to the union (rebuilt once).

Termination (scipy's; F the cost, dF its decrease): status 1 gtol (optimality < gtol, optimality
being max |g| or with bounds the Coleman-Li scaled gradient, as trf), 2 ftol (dF < ftol F, gain
ratio > 0.25), 3 xtol (|dx| < xtol (xtol + |x|)), 4 both, 0 max_nfev (default 100 n, trial points
and the first point counted, finite-difference points not counted except for method='lm' as
MINPACK counts them, default then 100 n (n + 1)), -1 stopped without converging (invalid steps
in a row, damping without bound, Gauss-Newton failure, Ctrl-C), -2 the callback stopped it.

Differences from scipy, deliberate and checked:

* ``method`` 'trf' (default) and 'lm' are the same LM; 'lm' keeps scipy's 'lm' rules (no bounds,
  m >= n, dense Jacobians, linear loss, all tolerances above EPS, callback ignored with a warning,
  ``njev`` None and ``nfev`` including difference points for finite differences). 'dogbox' is
  refused, the message naming what to use. ``tr_solver='lsmr'`` (implied by a LinearOperator
  Jacobian, or by ``tr_options``) takes each step from lsmr without forming J^T J
  (:mod:`sparselm.scipy_api.lsmr_step`); otherwise the step is a Cholesky solve, also where scipy
  would pick lsmr for a sparse Jacobian.
* ``x_scale``: the scale of the trust radius is scipy's (default 1 for 'trf', 'jac' for 'lm'); the
  damping is Marquardt's, lambda diag(J^T J), unless an array ``x_scale`` is given (then
  lambda diag(1 / x_scale^2), the variables x / x_scale) or ``damping`` says otherwise.
* Robust losses: the steps use Triggs' correction (Ceres' Corrector): same gradient, same minimum;
  ``res.jac`` is scipy's loss-rescaled Jacobian J sqrt(max(rho' + 2 rho'' f^2, EPS)).
* ``sigma`` (an extension): per-residual standard deviations or a block-diagonal covariance: the
  residuals are whitened, r' = A f with A^T A = Sigma^-1 (:mod:`sparselm.scipy_api.weighting`);
  ``res.fun`` is the user's residual, ``cost``, ``jac``, ``grad`` are of the whitened problem.
* ``jac`` may return any scipy.sparse format or an array; with a callable, ``jac_sparsity`` seeds
  the pattern. Finite differences step by the residuals' precision (EPS of float32 residuals, as
  scipy) and stay inside the bounds.
* A non-finite Jacobian entry at the first point raises NonFiniteError naming row and column; at a
  trial point it makes the step unsuccessful. Extra keyword-only arguments: ``sigma``,
  ``linear_solver``, ``damping``, ``ordering``, ``factorization``; unknown keywords: TypeError.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import time
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.optimize import OptimizeResult
from scipy.sparse.linalg import LinearOperator

from sparselm.covariance.matrix import jacobian_covariance
from sparselm.linalg.auto import DENSE_MAX_COLUMNS
from sparselm.linalg.base import LinearSolverOptions
from sparselm.linalg.cholmod import MODES, ORDERINGS
from sparselm.linalg.csc import JacobianPattern
from sparselm.linalg.dense import MAX_DENSE_COLUMNS
from sparselm.linalg import registry
from sparselm.lm.minimizer import Minimizer
from sparselm.lm.options import SolverOptions
from sparselm.lm.step_control import Box, ScaledStepControl
from sparselm.lm.summary import Summary
from sparselm.lm.termination import TERMINATION_MESSAGES, ScipyTermination
from sparselm.scipy_api import arguments
from sparselm.scipy_api.evaluator import MatrixEvaluator, OperatorEvaluator, callable_loss_terms, scipy_jacobian
from sparselm.scipy_api.jacobian import FiniteDifferenceJacobian, sparsity_pattern
from sparselm.scipy_api.lsmr_step import LsmrStep
from sparselm.scipy_api.objective import POINT, VectorObjective
from sparselm.scipy_api.weighting import whitening_operator
from sparselm.util import threads
from sparselm.util.numerics import first_beyond, magnitude_message
from sparselm.util.timing import PhaseTimer

__all__ = ["least_squares", "TERMINATION_MESSAGES"]

#: 'auto' and the registered linear solvers with a general-matrix variant (:mod:`sparselm.linalg.registry`)
API_LINEAR_SOLVERS = ("auto",) + registry.general_names()

_STATUS_OF_STOP = {"user_success": -2, "failure": -1, "interrupted": -1, "no_convergence": -1}


class _WithArgs:
    """fun(x, *args, **kwargs); a class (not a closure) so that worker pools can pickle it."""

    def __init__(self, fun, args, kwargs):
        self.fun, self.args, self.kwargs = fun, tuple(args), dict(kwargs)

    def __call__(self, x):
        return np.atleast_1d(self.fun(x, *self.args, **self.kwargs))


def _wrap_user_callback(callback):
    if callback is None:
        return None
    try:
        params = set(inspect.signature(callback).parameters)
    except (TypeError, ValueError):
        params = set()
    if params == {"intermediate_result"}:
        return lambda res: callback(intermediate_result=res)
    return lambda res: callback(np.copy(res.x))


def _make_workers(workers):
    if workers is None or callable(workers):
        return workers, None
    if isinstance(workers, int) and not isinstance(workers, bool):
        if workers == 1:
            return None, None
        from scipy._lib._util import MapWrapper  # scipy's own int -> pool rule

        pool = MapWrapper(workers)
        return pool, pool
    raise ValueError("`workers` must be None, an int or a map-like callable")


def _checked_jacobian(j, m, n, method, tr_solver):
    """What ``jac`` returned, checked as scipy does: an array, a sparse matrix or a LinearOperator."""
    if not (sp.issparse(j) or isinstance(j, np.ndarray) or isinstance(j, LinearOperator)):
        j = np.asarray(j, dtype=float)
    if isinstance(j, np.ndarray):
        j = np.atleast_2d(j)
    if j.shape != (m, n):
        raise ValueError(f"The return value of `jac` has wrong shape: expected {(m, n)}, actual {j.shape}.")
    if isinstance(j, np.ndarray):
        return j.astype(float, copy=False)
    if method == "lm":
        raise ValueError("method='lm' works only with dense Jacobian matrices.")
    if tr_solver == "exact":
        raise ValueError("tr_solver='exact' works only with dense Jacobian matrices.")
    if sp.issparse(j) and j.dtype != np.float64:
        return j.astype(np.float64)
    return j


def _callable_jacobian(jac, args, kwargs, x0, j0, ev, timer, check):
    """jacobian_at(x, f) for a callable ``jac`` (its value at x0, j0, is used once rather than recomputed)."""
    first = [j0]

    def jacobian_at(v, fv):
        with timer.phase("jacobian"):
            if first[0] is not None and np.array_equal(v, x0):
                j = first[0]
            else:
                j = check(jac(v, *args, **kwargs))
            first[0] = None
            ev.absorb(j)
    return jacobian_at


@threads.one_solve_at_a_time
def least_squares(fun, x0, jac="2-point", bounds=(-np.inf, np.inf), method="trf", ftol=1e-8, xtol=1e-8, gtol=1e-8,
                  x_scale=None, loss="linear", f_scale=1.0, diff_step=None, tr_solver=None, tr_options=None,
                  jac_sparsity=None, max_nfev=None, verbose=0, args=(), kwargs=None, callback=None, workers=None, *,
                  sigma=None, linear_solver="auto", damping=None, ordering="amd", factorization="auto",
                  return_covariance=False, **unsupported):
    """Solve min_x 1/2 sum rho(f_i(x)^2), lb <= x <= ub, like ``scipy.optimize.least_squares``.

    Parameters are scipy's, in scipy's order (module docstring: what differs), plus keyword-only

    sigma          per-residual standard deviations (m,) or a block-diagonal covariance (m, m).
    linear_solver  'auto' (dense LAPACK for n <= 300, else CHOLMOD), 'dense', 'sparse_normal_cholesky'.
    damping        None (follow ``x_scale``), 'marquardt', 'levenberg' or 'gauss_newton'.
    ordering       CHOLMOD fill-reducing ordering ('amd', 'metis', 'nesdis', 'colamd', 'natural', ...).
    factorization  CHOLMOD method: 'auto' (by the factor's flops per entry, :mod:`sparselm.linalg.cholmod`), 'simplicial' or 'supernodal'.
    return_covariance  also return ``cov_x`` = (J^T J)^-1 at the solution (the Moore-Penrose inverse if
                   singular; NaN for unused parameters), on the pattern of J^T J: dense when ``jac`` is,
                   else sparse. Like scipy's leastsq cov_x, multiply by 2 cost / (m - n) for pcov.

    Returns a ``scipy.optimize.OptimizeResult`` with scipy's fields (x, cost, fun, jac, grad,
    optimality, active_mask, nfev, njev, status, message, success) plus ``nit`` (accepted steps)
    and ``summary`` (a :class:`sparselm.Summary`: every trial, times per phase, sizes).
    """
    start = time.perf_counter()
    if unsupported:
        raise TypeError(f"sparselm.least_squares got unsupported argument(s) {', '.join(sorted(unsupported))}; "
                        "it accepts scipy's arguments plus sigma, linear_solver, damping, ordering, factorization")
    arguments.check_method(method, tr_solver, tr_options)
    if not (callable(jac) or jac in ("2-point", "3-point", "cs")):
        raise ValueError("`jac` must be '2-point', '3-point', 'cs' or callable.")
    arguments.check_loss(loss, method)
    if verbose not in (0, 1, 2):
        raise ValueError("`verbose` must be in [0, 1, 2].")
    if max_nfev is not None and (isinstance(max_nfev, (bool, str, bytes)) or not isinstance(max_nfev, numbers.Real)
                                 or not max_nfev > 0):
        raise ValueError("`max_nfev` must be None or positive integer.")
    if linear_solver not in API_LINEAR_SOLVERS:
        raise ValueError(f"`linear_solver`: unknown {linear_solver!r}; choose one of {', '.join(API_LINEAR_SOLVERS)}")
    if ordering not in ORDERINGS:
        raise ValueError(f"`ordering`: unknown {ordering!r}; choose one of {', '.join(ORDERINGS)}")
    if factorization not in MODES:
        raise ValueError(f"`factorization`: unknown {factorization!r}; choose one of {', '.join(MODES)}")
    if np.iscomplexobj(x0):
        raise ValueError("`x0` must be real.")
    x = np.atleast_1d(np.asarray(x0)).astype(float)
    if x.ndim > 1:
        raise ValueError("`x0` must have at most 1 dimension.")
    if x.size == 0:
        raise ValueError("`x0` must have at least one element.")
    beyond = first_beyond(x)
    if beyond is not None:
        raise ValueError(f"`x0`: {magnitude_message(x[beyond])}, at index {beyond[0]}")
    n = x.size
    lb, ub = arguments.prepare_bounds(bounds, x, method)
    bounded = bool(np.any(np.isfinite(lb)) or np.any(np.isfinite(ub)))
    scale = arguments.check_x_scale(x_scale, n, method)
    ftol, xtol, gtol = arguments.check_tolerances(ftol, xtol, gtol, method)
    f_scale = arguments.check_f_scale(f_scale)
    damping_used, fixed_diagonal = arguments.resolve_damping(x_scale, damping, n)
    kwargs = kwargs or {}
    if method == "lm" and callback is not None:
        warnings.warn("Callback function specified, but not supported with `lm` method.", stacklevel=2)
        callback = None

    fun_wrapped = _WithArgs(fun, args, kwargs)
    timer = PhaseTimer()
    n_threads = threads.configure(None)
    with timer.phase("residual"):
        f_raw = np.atleast_1d(fun_wrapped(x))
    f = f_raw.astype(float)
    if f.ndim != 1:
        raise ValueError(f"`fun` must return at most 1-d array_like. f0.shape: {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("Residuals are not finite in the initial point.")
    m = f.size
    if method == "lm" and m < n:
        raise ValueError("Method 'lm' doesn't work when the number of residuals is less than the number of variables.")
    whitening = whitening_operator(sigma, m)
    j0 = None
    if callable(jac):
        def check(j):
            return _checked_jacobian(j, m, n, method, tr_solver)
        with timer.phase("jacobian"):
            j0 = check(jac(x, *args, **(kwargs or {})))
    operator = isinstance(j0, LinearOperator)
    if operator and isinstance(scale, str):
        raise ValueError("x_scale='jac' can't be used when `jac` returns LinearOperator.")
    if operator and return_covariance:
        raise ValueError("return_covariance needs the Jacobian's entries: return an array or a sparse matrix "
                         "from `jac`, not a LinearOperator.")
    use_lsmr = operator or tr_solver == "lsmr" or (bool(tr_options) and tr_solver is None)
    if operator:  # no column norms: the damping follows x_scale (1 by default), as the trust radius
        damping_used, fixed_diagonal = "marquardt", 1.0 / scale ** 2
    ev = (OperatorEvaluator if operator else MatrixEvaluator)(m, n, loss, f_scale, whitening, timer)
    if callable(loss):
        callable_loss_terms(loss, f_scale, f)  # shape check up front, as scipy
    if not math.isfinite(ev.cost_of(f)):
        raise ValueError(f"The cost at `x0` overflows the float64 range (1/2 sum of {m} squared weighted residuals, "
                         f"the largest |f| being {float(np.max(np.abs(f))):.3g}): rescale `fun` or `sigma`")
    finite_differences = not callable(jac)
    if finite_differences and jac_sparsity is not None and method == "lm":
        raise ValueError("method='lm' does not support `jac_sparsity`.")
    if finite_differences and jac_sparsity is not None and tr_solver == "exact":
        raise ValueError("tr_solver='exact' is incompatible with `jac_sparsity`.")
    box = Box(lb, ub) if bounded else None

    with contextlib.ExitStack() as stack:
        fd = None
        if not finite_differences:
            if workers is not None:
                raise ValueError("`workers` is used for finite-difference Jacobians only; `jac` is a callable here")
            jacobian_at = _callable_jacobian(jac, args, kwargs, x, j0, ev, timer, check)
            if jac_sparsity is not None and not operator:
                # A callable's pattern is its own; jac_sparsity seeds the fixed pattern (entries that are
                # zero at x0 but not later then cost no rebuild).
                seed = sparsity_pattern(jac_sparsity, m, n)
                if whitening is not None and whitening[0] == "matrix":
                    seed = JacobianPattern.from_matrix(whitening[1] @ seed.matrix(np.ones(seed.nnz)))
                ev.set_pattern(seed)
        else:
            workers_map, pool = _make_workers(workers)
            if pool is not None:
                stack.enter_context(pool)  # closed and terminated when the solve ends, however it ends
            if jac_sparsity is None:
                raw = JacobianPattern((m, n), np.arange(0, m * n + 1, m), np.tile(np.arange(m), n), dense=True)
            else:
                raw = sparsity_pattern(jac_sparsity, m, n)
            fd = FiniteDifferenceJacobian(fun_wrapped, raw, jac, diff_step, timer, workers_map,
                                          residual_dtype=f_raw.dtype, bounds=(lb, ub) if bounded else None)
            if whitening is None or whitening[0] == "diag":
                ev.set_pattern(raw)

            def jacobian_at(v, fv):
                with timer.phase("jacobian"):
                    fd(v, fv)
                    if whitening is not None and whitening[0] == "matrix":
                        ev.absorb(raw.matrix() if not raw.dense else raw.data.reshape(n, m).T)
        counts_fd = method == "lm" and fd is not None  # MINPACK counts difference points in nfev
        if max_nfev is None:
            max_nfev = 100 * n * (n + 1) if counts_fd else 100 * n
        options = SolverOptions(function_tolerance=ftol, gradient_tolerance=gtol, parameter_tolerance=xtol,
                                damping=damping_used, ordering=ordering, verbose=verbose == 2,
                                linear_solver=linear_solver, max_consecutive_invalid_steps=10)
        if fixed_diagonal is not None:
            options.min_diagonal = min(options.min_diagonal, float(fixed_diagonal.min()))
            options.max_diagonal = max(options.max_diagonal, float(fixed_diagonal.max()))
        solver_name = linear_solver
        if solver_name == "auto":
            solver_name = "dense" if n <= DENSE_MAX_COLUMNS else "sparse_normal_cholesky"
        if solver_name == "dense" and n > MAX_DENSE_COLUMNS:
            raise ValueError(f"`linear_solver`='dense' is for small problems (<= {MAX_DENSE_COLUMNS} parameters); "
                             f"this one has {n}: use 'sparse_normal_cholesky'")
        objective = VectorObjective(fun_wrapped, jacobian_at, ev, x, f, timer, fixed_diagonal, box)

        def evaluations():
            return objective.nfev + (fd.evaluations if counts_fd else 0)

        termination = ScipyTermination(ftol, xtol, gtol, max_nfev, evaluations)
        step_control = ScaledStepControl(lambda values: values[POINT], x, None if isinstance(scale, str) else scale,
                                         box)
        user_callback = _wrap_user_callback(callback)
        accepted = []

        def on_iteration(rec):
            if not rec.step_is_successful or rec.iteration == 0:
                return False
            accepted.append(rec.iteration)
            if user_callback is None:
                return False
            res = OptimizeResult(x=objective.x.copy(), fun=objective.f.copy(), nit=len(accepted), nfev=objective.nfev)
            res["cost"] = rec.cost
            try:
                return user_callback(res) is True
            except StopIteration:
                return True

        options.callbacks.append(on_iteration)
        lin_opts = LinearSolverOptions(ordering=ordering, factorization=factorization)
        if use_lsmr:
            solver_name = "lsmr"
            ls = LsmrStep(ev, timer, tr_options)
        else:
            ls = registry.get(solver_name).general(ev, timer, lin_opts)
        summary = Summary()
        summary.options_given = {"method": method, "ftol": ftol, "xtol": xtol, "gtol": gtol,
                                 "x_scale": x_scale if x_scale is None or isinstance(x_scale, str) else "array",
                                 "loss": loss if isinstance(loss, str) else "callable", "f_scale": f_scale,
                                 "max_nfev": max_nfev, "jac": jac if isinstance(jac, str) else "callable",
                                 "bounds": "finite" if bounded else None,
                                 "jac_sparsity": None if jac_sparsity is None else "given",
                                 "sigma": None if sigma is None else whitening[0], "linear_solver": linear_solver,
                                 "damping": damping, "ordering": ordering}
        used = options.to_dict()
        summary.options_used = {k: used[k] for k in (
            "initial_trust_region_radius", "max_trust_region_radius", "min_trust_region_radius",
            "min_relative_decrease", "min_diagonal", "max_diagonal", "max_consecutive_invalid_steps", "ordering",
            "factorization")}
        summary.options_used.update(
            method="sparselm LM", ftol=ftol, xtol=xtol, gtol=gtol, max_nfev=max_nfev, linear_solver=solver_name,
            threads=n_threads, sigma=summary.options_given["sigma"], bounds="projected, active set" if bounded else None,
            damping=damping_used if fixed_diagonal is None else "lambda * diag(1/x_scale^2)",
            x_scale=scale if isinstance(scale, str) else "array")
        minimizer = Minimizer(objective, ls, options, termination=termination, step_control=step_control)
        values = {POINT: x.copy()}
        summary.setup_time_s = time.perf_counter() - start
        minimizer.run(values, summary, start)
        x = (minimizer.best_values if minimizer.best_values is not None else values)[POINT].copy()
        status = termination.status if termination.status is not None else _STATUS_OF_STOP[summary.termination]
        message = TERMINATION_MESSAGES[status] if status != -1 else summary.message
        nfev, njev = evaluations(), objective.njev
        summary.total_time_s = time.perf_counter() - start
        summary.phases = timer.table()
        summary.linear_solver = ls.info()
        summary.environment = threads.describe()
        summary.problem = {"residuals": m, "parameters": n, "free_parameters": n, "jacobian_nnz": ev.pattern.nnz,
                           "jacobian_pattern_versions": ev.pattern_version, "nfev": nfev, "njev": njev,
                           "fd_colours": fd.n_colours if fd else None,
                           "fd_function_calls": fd.evaluations if fd else 0,
                           "sigma": None if whitening is None else whitening[0]}
        optimality = step_control.optimality(values={POINT: x}, gradient=ev.gradient)
        active = box.active_mask(x, xtol) if box is not None else np.zeros(n, dtype=int)
        result = OptimizeResult(x=x, cost=float(ev.cost), fun=objective.f.copy(), jac=scipy_jacobian(ev),
                                grad=ev.gradient.copy(), optimality=optimality, active_mask=active, nfev=nfev,
                                njev=None if counts_fd else njev, status=status, message=message, success=status > 0,
                                nit=len(accepted), summary=summary)
        if return_covariance:
            cov_x = jacobian_covariance(result.jac)
            result.cov_x = cov_x if sp.issparse(result.jac) else cov_x.toarray()
        if verbose >= 1:
            print(message, flush=True)
            print(f"Function evaluations {nfev}, initial cost {summary.initial_cost:.4e}, final cost "
                  f"{result.cost:.4e}, first-order optimality {optimality:.2e}.", flush=True)
        return result
