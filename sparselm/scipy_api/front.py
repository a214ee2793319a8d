"""``sparselm.least_squares``: a drop-in for ``scipy.optimize.least_squares`` on sparse problems.

    from sparselm import least_squares           # instead of scipy.optimize.least_squares
    res = least_squares(fun, x0, jac=jac, jac_sparsity=S, loss="soft_l1")

Arguments keep scipy's meaning (see scipy's documentation); the minimiser behind them is sparselm's
Levenberg-Marquardt (:class:`~sparselm.lm.strategy.LevenbergMarquardtStrategy`, Nielsen's radius
rule, Ceres semantics for invalid and unsuccessful steps) with the damped normal equations
(J^T J + D) step = -J^T r solved by CHOLMOD. What is done once and what per call:

* once: the CSC pattern of J (and its CSR twin with a value permutation), the lower-triangle pattern
  of J^T J (a boolean product), CHOLMOD's symbolic analysis, and for finite differences a greedy
  colouring of the columns (structurally orthogonal columns share one function evaluation);
* per Jacobian: the user's values are copied into the fixed pattern (a CSR or CSC matrix with the
  same pattern costs one copy; any other format is converted), J^T J is filled in place by a numba
  kernel (Gustavson's product into the fixed pattern), gradient and column norms likewise;
* per damping trial: D on the diagonal, numeric refactorization, one solve.

If a later Jacobian has entries outside the pattern, the pattern becomes the union of the two and
the normal-matrix structure and CHOLMOD analysis are rebuilt (counted in ``summary.problem``);
entries missing from a later Jacobian are zeros in the pattern.

Termination uses scipy's definitions, so results are comparable (F the cost, dF its decrease):

    gtol  (status 1)  max |g| < gtol, g = J^T r the gradient of the cost (loss included)
    ftol  (status 2)  dF < ftol * F and the step's gain ratio > 0.25
    xtol  (status 3)  |dx| < xtol * (xtol + |x|)           (status 4: ftol and xtol together)
    max_nfev (0)      function evaluations, counted as scipy's 'trf' counts them: the initial one
                      and one per trial step; evaluations for finite-difference Jacobians are not
                      counted (summary.problem['fd_function_calls'] has them). Default 100 * n.
    -1                failure: more than max_consecutive_invalid_steps (5) steps in a row whose
                      linear solve failed or did not decrease the model; or Ctrl-C
    -2                the callback raised StopIteration or returned True

Differences from scipy, all deliberate and checked:

* ``method``: 'trf' and 'lm' both mean sparselm's LM; 'dogbox' is refused. ``bounds`` must be
  infinite (ValueError otherwise). ``tr_solver``/``tr_options`` are refused (the trust-region
  subproblem is solved by Cholesky; choose ``linear_solver``/``ordering`` instead). A Jacobian
  given as a LinearOperator is refused (J^T J must be formed).
* ``x_scale``: None (default) means 'jac', Marquardt scaling D = lambda * diag(J^T J) (scipy's
  'lm' default, sparselm's 'marquardt' damping); an array means the variables x / x_scale, i.e.
  D = lambda * diag(1 / x_scale^2); ``damping`` (None, 'marquardt', 'levenberg', 'gauss_newton')
  is the sparselm name for the same choice and must agree with ``x_scale`` if both are given.
* Robust losses use Triggs' correction as sparselm's evaluator does (Ceres' Corrector), not
  scipy's rescaling: the gradient is the same, the Gauss-Newton model differs, the minimum is the same.
* ``sigma`` (an extension): per-residual standard deviations (shape (m,)) or a covariance matrix
  Sigma (m, m), dense or sparse, block diagonal (blocks found as connected components, each at most
  MAX_SIGMA_BLOCK rows). The cost becomes the Mahalanobis form 1/2 sum rho(r'^2) with whitened
  residuals r' = A f, A = L^T where Sigma^-1 = L L^T per block (A^T A = Sigma^-1), J' = A J.
  ``res.fun`` is the user's (unwhitened) residual; ``cost``, ``jac`` and ``grad`` are of the
  whitened, loss-corrected problem (as scipy's ``jac`` is its loss-modified Jacobian).
* ``callback`` is called after each accepted step with an OptimizeResult (x, fun, nit, nfev, cost),
  or with x alone if its only parameter is not named ``intermediate_result`` (scipy's rule).
* ``jac``: a callable may return any scipy.sparse format or a dense array (a LinearOperator is
  refused); with a callable, ``jac_sparsity`` (ignored by scipy there) seeds the fixed pattern.
  '2-point', '3-point' and 'cs' difference on ``jac_sparsity`` (dense, n evaluations, without it).
  ``workers`` (a map-like callable, or an int for scipy's process pool) evaluates the difference
  points; with a callable ``jac`` it has nothing to do and is refused. ``njev`` counts Jacobian
  evaluations for every method (scipy's 'lm' reports None for differences).
* A non-finite Jacobian entry raises :class:`sparselm.core.evaluator.NonFiniteError` naming row and
  column (scipy carries on with NaNs). Non-finite residuals at a trial point are a rejected step.
* Extra keywords: ``sigma``, ``linear_solver``, ``damping``, ``ordering`` and ``factorization``
  (CHOLMOD 'auto' (default: simplicial unless the factor's columns are dense enough for supernodal
  to pay, see :mod:`sparselm.linalg.cholmod`), 'simplicial', 'supernodal'). Unknown keywords are a TypeError.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import OptimizeResult

from sparselm.linalg.auto import DENSE_MAX_COLUMNS
from sparselm.linalg.base import LinearSolverOptions
from sparselm.linalg.cholmod import MODES, ORDERINGS
from sparselm.linalg.dense import MAX_DENSE_COLUMNS
from sparselm.linalg import registry
from sparselm.lm.options import SolverOptions
from sparselm.lm.strategy import LevenbergMarquardtStrategy
from sparselm.lm.summary import Summary
from sparselm.linalg.csc import JacobianPattern
from sparselm.scipy_api.evaluator import MatrixEvaluator, callable_loss_terms
from sparselm.scipy_api.jacobian import EPS, FiniteDifferenceJacobian, sparsity_pattern
from sparselm.scipy_api.loop import LoopSetup, run_loop
from sparselm.scipy_api.weighting import whitening_operator
from sparselm.util import threads
from sparselm.util.timing import PhaseTimer

__all__ = ["least_squares", "TERMINATION_MESSAGES"]

SCIPY_LOSSES = ("linear", "huber", "soft_l1", "cauchy", "arctan")
METHODS = ("trf", "lm")
#: 'auto' and the registered linear solvers with a general-matrix variant (:mod:`sparselm.linalg.registry`)
API_LINEAR_SOLVERS = ("auto",) + registry.general_names()

TERMINATION_MESSAGES = {
    -2: "Stopped because `callback` function raised `StopIteration` or returned `True`",
    -1: "The solver could not continue (see summary.message); the best point so far is returned.",
    0: "The maximum number of function evaluations is exceeded.",
    1: "`gtol` termination condition is satisfied.",
    2: "`ftol` termination condition is satisfied.",
    3: "`xtol` termination condition is satisfied.",
    4: "Both `ftol` and `xtol` termination conditions are satisfied.",
}
_SUMMARY_TERMINATION = {-2: "user_success", -1: "failure", 0: "no_convergence", 1: "convergence", 2: "convergence",
                        3: "convergence", 4: "convergence"}


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
def _check_bounds(bounds, n):
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):
        lb, ub = bounds.lb, bounds.ub
    else:
        try:
            lb, ub = bounds
        except (TypeError, ValueError):
            raise ValueError("`bounds` must contain 2 elements.") from None
    lb = np.broadcast_to(np.asarray(lb, dtype=float), (n,))
    ub = np.broadcast_to(np.asarray(ub, dtype=float), (n,))
    if np.any(lb != -np.inf) or np.any(ub != np.inf):
        raise ValueError("`bounds`: sparselm.least_squares supports unbounded problems only (bounds=(-inf, inf)); "
                         "use scipy.optimize.least_squares(method='trf') for bounded problems")


def _check_tolerance(tol, name):
    if tol is None:
        return 0.0
    tol = float(tol)
    if not (tol >= 0):
        raise ValueError(f"`{name}` must be non-negative, got {tol}")
    return tol


def _resolve_damping(x_scale, damping, n):
    """(damping for the strategy, fixed damping diagonal or None, x_scale as used)."""
    if damping is not None and damping not in ("marquardt", "levenberg", "gauss_newton"):
        raise ValueError(f"`damping`: unknown {damping!r}; choose 'marquardt', 'levenberg' or 'gauss_newton'")
    if x_scale is None:
        d = damping or "marquardt"
        return d, (np.ones(n) if d == "levenberg" else None), ("jac" if d == "marquardt" else 1.0)
    if isinstance(x_scale, str):
        if x_scale != "jac":
            raise ValueError("`x_scale` must be 'jac' or array_like with positive numbers.")
        if damping not in (None, "marquardt"):
            raise ValueError(f"`x_scale`='jac' is Marquardt scaling; it contradicts damping={damping!r}")
        return "marquardt", None, "jac"
    scale = np.asarray(x_scale, dtype=float)
    if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError("`x_scale` must be 'jac' or array_like with positive numbers.")
    if scale.ndim == 0:
        scale = np.full(n, float(scale))
    if scale.shape != (n,):
        raise ValueError("Inconsistent shapes between `x_scale` and `x0`.")
    if damping not in (None, "levenberg"):
        raise ValueError(f"an array `x_scale` means damping lambda * diag(1/x_scale^2); it contradicts "
                         f"damping={damping!r} (give one of the two)")
    return "marquardt", 1.0 / scale ** 2, scale


class _WithArgs:
    """fun(x, *args, **kwargs) as a 1-d array; a class (not a closure) so that worker pools can pickle it."""

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


# ---------------------------------------------------------------------------------------------
# the front door
# ---------------------------------------------------------------------------------------------
def least_squares(fun, x0, jac="2-point", *, bounds=(-np.inf, np.inf), method="trf", ftol=1e-8, xtol=1e-8,
                  gtol=1e-8, x_scale=None, loss="linear", f_scale=1.0, diff_step=None, tr_solver=None,
                  tr_options=None, jac_sparsity=None, max_nfev=None, verbose=0, args=(), kwargs=None,
                  callback=None, workers=None, sigma=None, linear_solver="auto", damping=None, ordering="amd",
                  factorization="auto",
                  **unsupported):
    """Solve min_x 1/2 sum rho(f_i(x)^2) like ``scipy.optimize.least_squares``, with sparselm's LM.

    Parameters are scipy's (module docstring: what differs and why) plus

    sigma          per-residual standard deviations (m,) or a block-diagonal covariance (m, m):
                   minimise the Mahalanobis form with residuals whitened by A, A^T A = Sigma^-1.
    linear_solver  'auto' (dense LAPACK for n <= 300, else CHOLMOD), 'dense', 'sparse_normal_cholesky'.
    damping        sparselm's name for the scaling (None: follow ``x_scale``; 'marquardt' = 'jac',
                   'levenberg' = x_scale 1, 'gauss_newton' = no damping).
    ordering       CHOLMOD fill-reducing ordering ('amd', 'metis', 'nesdis', 'colamd', 'natural', ...).
    factorization  CHOLMOD method: 'auto' (by the factor's flops per entry), 'simplicial' or 'supernodal'.

    Returns a ``scipy.optimize.OptimizeResult`` with scipy's fields (x, cost, fun, jac, grad,
    optimality, active_mask, nfev, njev, status, message, success) plus ``nit`` (accepted steps)
    and ``summary`` (a :class:`sparselm.Summary`: every trial, times per phase, sizes).
    """
    start = time.perf_counter()
    if unsupported:
        raise TypeError(f"sparselm.least_squares got unsupported argument(s) {', '.join(sorted(unsupported))}; "
                        "it accepts scipy's arguments plus sigma, linear_solver, damping, ordering")
    if method == "dogbox":
        raise ValueError("`method`='dogbox' is not supported: sparselm.least_squares solves with Levenberg-Marquardt "
                         "(method='trf' or 'lm' both select it); dogbox is for bounded problems, which it "
                         "does not support")
    if method not in METHODS:
        raise ValueError(f"`method` must be 'trf' or 'lm' (both select sparselm's LM), got {method!r}")
    if tr_solver is not None:
        raise ValueError(f"`tr_solver`={tr_solver!r} is not supported: the step is solved by Cholesky of the damped "
                         "normal equations; choose `linear_solver` ('auto', 'dense', 'sparse_normal_cholesky') "
                         "and `ordering` instead")
    if tr_options:
        raise ValueError("`tr_options` is not supported (no lsmr / exact trust-region subproblem here); "
                         "see `linear_solver` and `ordering`")
    if linear_solver not in API_LINEAR_SOLVERS:
        raise ValueError(f"`linear_solver`: unknown {linear_solver!r}; choose one of {', '.join(API_LINEAR_SOLVERS)}")
    if ordering not in ORDERINGS:
        raise ValueError(f"`ordering`: unknown {ordering!r}; choose one of {', '.join(ORDERINGS)}")
    if factorization not in MODES:
        raise ValueError(f"`factorization`: unknown {factorization!r}; choose one of {', '.join(MODES)}")
    if not (loss in SCIPY_LOSSES or callable(loss)):
        raise ValueError(f"`loss` must be one of {SCIPY_LOSSES} or a callable.")
    if verbose not in (0, 1, 2):
        raise ValueError("`verbose` must be in [0, 1, 2].")
    if max_nfev is not None and max_nfev <= 0:
        raise ValueError("`max_nfev` must be None or positive integer.")
    if not (callable(jac) or jac in ("2-point", "3-point", "cs")):
        raise ValueError("`jac` must be '2-point', '3-point', 'cs' or callable.")
    if np.iscomplexobj(x0):
        raise ValueError("`x0` must be real.")
    x = np.atleast_1d(np.asarray(x0)).astype(float)
    if x.ndim > 1:
        raise ValueError("`x0` must have at most 1 dimension.")
    n = x.size
    _check_bounds(bounds, n)
    ftol, xtol, gtol = (_check_tolerance(t, k) for t, k in ((ftol, "ftol"), (xtol, "xtol"), (gtol, "gtol")))
    if ftol < EPS and xtol < EPS and gtol < EPS:
        raise ValueError(f"At least one of the tolerances must be higher than machine epsilon ({EPS:.2e}).")
    f_scale = float(f_scale)
    if not (math.isfinite(f_scale) and f_scale > 0):
        raise ValueError("`f_scale` must be positive.")
    damping_used, fixed_diagonal, x_scale_used = _resolve_damping(x_scale, damping, n)
    kwargs = kwargs or {}
    max_nfev_used = 100 * n if max_nfev is None else int(max_nfev)

    fun_wrapped = _WithArgs(fun, args, kwargs)
    timer = PhaseTimer()
    n_threads = threads.configure(None)
    with timer.phase("residual"):
        f = fun_wrapped(x).astype(float)
    nfev = 1
    if f.ndim != 1:
        raise ValueError(f"`fun` must return at most 1-d array_like. f0.shape: {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("Residuals are not finite in the initial point.")
    m = f.size
    whitening = whitening_operator(sigma, m)
    ev = MatrixEvaluator(m, n, loss, f_scale, whitening, timer)
    if callable(loss):
        callable_loss_terms(loss, f_scale, f)  # shape check up front, as scipy

    with contextlib.ExitStack() as stack:
        fd = None
        if callable(jac):
            def jacobian_at(v, fv):
                with timer.phase("jacobian"):
                    j = jac(v, *args, **kwargs)
                    if not (sp.issparse(j) or isinstance(j, np.ndarray)):
                        if hasattr(j, "matvec") and hasattr(j, "shape"):
                            raise ValueError("`jac` returned a LinearOperator: sparselm.least_squares needs the "
                                             "Jacobian's entries (a sparse matrix or an array)")
                        j = np.atleast_2d(np.asarray(j, dtype=float))
                    if sp.issparse(j) and j.dtype != np.float64:
                        j = j.astype(np.float64)
                    elif isinstance(j, np.ndarray):
                        j = np.atleast_2d(np.asarray(j, dtype=float))
                    if j.shape != (m, n):
                        raise ValueError(f"The return value of `jac` has wrong shape: expected {(m, n)}, "
                                         f"actual {j.shape}.")
                    ev.absorb(j)
            if workers is not None:
                raise ValueError("`workers` is used for finite-difference Jacobians only; `jac` is a callable here")
            if jac_sparsity is not None:
                # A callable's pattern is its own; jac_sparsity, if given, seeds the fixed pattern (entries
                # that are zero at x0 but not later then cost no rebuild).
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
            fd = FiniteDifferenceJacobian(fun_wrapped, raw, jac, diff_step, timer, workers_map)
            if whitening is None or whitening[0] == "diag":
                ev.set_pattern(raw)

            def jacobian_at(v, fv):
                with timer.phase("jacobian"):
                    fd(v, fv)
                    if whitening is not None and whitening[0] == "matrix":
                        ev.absorb(raw.matrix() if not raw.dense else raw.data.reshape(n, m).T)
        jacobian_at(x, f)
        njev = 1
        options = SolverOptions(function_tolerance=ftol, gradient_tolerance=gtol, parameter_tolerance=xtol,
                                damping=damping_used, ordering=ordering, verbose=verbose == 2,
                                linear_solver=linear_solver)
        if fixed_diagonal is not None:
            options.min_diagonal = min(options.min_diagonal, float(fixed_diagonal.min()))
            options.max_diagonal = max(options.max_diagonal, float(fixed_diagonal.max()))
        solver_name = linear_solver
        if solver_name == "auto":
            solver_name = "dense" if n <= DENSE_MAX_COLUMNS else "sparse_normal_cholesky"
        if solver_name == "dense" and n > MAX_DENSE_COLUMNS:
            raise ValueError(f"`linear_solver`='dense' is for small problems (<= {MAX_DENSE_COLUMNS} parameters); "
                             f"this one has {n}: use 'sparse_normal_cholesky'")
        lin_opts = LinearSolverOptions(ordering=ordering, factorization=factorization)
        ls = registry.get(solver_name).general(ev, timer, lin_opts)
        strategy = LevenbergMarquardtStrategy(options, np.zeros(n, dtype=bool))
        cb = _wrap_user_callback(callback)

        summary = Summary()
        summary.options_given = {"method": method, "ftol": ftol, "xtol": xtol, "gtol": gtol,
                                 "x_scale": x_scale if x_scale is None or isinstance(x_scale, str) else "array",
                                 "loss": loss if isinstance(loss, str) else "callable", "f_scale": f_scale,
                                 "max_nfev": max_nfev, "jac": jac if isinstance(jac, str) else "callable",
                                 "diff_step": None if diff_step is None else "given",
                                 "jac_sparsity": None if jac_sparsity is None else "given",
                                 "sigma": None if sigma is None else whitening[0], "linear_solver": linear_solver,
                                 "damping": damping, "ordering": ordering}
        used = options.to_dict()
        summary.options_used = {k: used[k] for k in (
            "damping", "initial_trust_region_radius", "max_trust_region_radius", "min_trust_region_radius",
            "min_relative_decrease", "min_diagonal", "max_diagonal", "max_consecutive_invalid_steps", "ordering",
            "factorization")}
        summary.options_used.update(
            method="sparselm LM", ftol=ftol, xtol=xtol, gtol=gtol, max_nfev=max_nfev_used, linear_solver=solver_name,
            threads=n_threads, sigma=summary.options_given["sigma"], damping=damping if damping else damping_used,
            x_scale=x_scale_used if isinstance(x_scale_used, str) or np.ndim(x_scale_used) == 0 else "array")
        summary.options_used["damping"] = damping_used if fixed_diagonal is None else "lambda * diag(1/x_scale^2)"

        setup = LoopSetup(fun=fun_wrapped, jacobian_at=jacobian_at, evaluator=ev, linear_solver=ls, strategy=strategy,
                          options=options, timer=timer, ftol=ftol, xtol=xtol, gtol=gtol, max_nfev=max_nfev_used,
                          fixed_diagonal=fixed_diagonal, damping=damping_used, callback=cb, verbose=verbose)
        end = run_loop(setup, x, f, nfev, njev, summary, start)
        status, reason, x, f, cost, nfev, njev, nit = (end.status, end.reason, end.x, end.f, end.cost, end.nfev,
                                                       end.njev, end.nit)
        message = TERMINATION_MESSAGES[status] if status != -1 else reason
        summary.termination = _SUMMARY_TERMINATION[status] if "Ctrl-C" not in reason else "interrupted"
        summary.message = message
        summary.total_time_s = time.perf_counter() - start
        summary.phases = timer.table()
        summary.linear_solver = ls.info()
        summary.environment = threads.describe()
        summary.problem = {"residuals": m, "parameters": n, "free_parameters": n, "jacobian_nnz": ev.pattern.nnz,
                           "jacobian_pattern_versions": ev.pattern_version, "nfev": nfev, "njev": njev,
                           "fd_colours": fd.n_colours if fd else None,
                           "fd_function_calls": fd.evaluations if fd else 0,
                           "sigma": None if whitening is None else whitening[0]}
        g_norm = float(np.max(np.abs(ev.gradient))) if n else 0.0
        result = OptimizeResult(x=x, cost=float(cost), fun=f, jac=ev.jacobian_matrix(), grad=ev.gradient.copy(),
                                optimality=g_norm, active_mask=np.zeros_like(x), nfev=nfev, njev=njev,
                                status=status, message=message, success=status > 0, nit=nit, summary=summary)
        if verbose >= 1:
            print(message, flush=True)
            print(f"Function evaluations {nfev}, initial cost {summary.initial_cost:.4e}, final cost {cost:.4e}, "
                  f"first-order optimality {g_norm:.2e}.", flush=True)
        return result
