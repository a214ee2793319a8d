"""``solve(problem, options)``: the front door that wires the layers together and reports.

Layout (built once) -> the linear solver (``auto`` resolved, :mod:`sparselm.linalg.auto`) -> the
memory check (:mod:`sparselm.lm.memory`, before anything big is allocated) -> evaluator and linear
solver -> the LM loop (:class:`~sparselm.lm.minimizer.Minimizer`) -> the best point written back
into the problem's groups and the :class:`~sparselm.lm.summary.Summary` filled in.
"""
from __future__ import annotations

import time
from typing import Optional

from sparselm.core.evaluator import Evaluator
from sparselm.core.layout import build_layout
from sparselm.core.problem import Problem
from sparselm.linalg import registry
from sparselm.linalg.auto import choose_linear_solver
from sparselm.linalg.base import LinearSolverOptions
from sparselm.lm.memory import check_memory, estimate_memory
from sparselm.lm.minimizer import Minimizer
from sparselm.lm.options import SolverOptions
from sparselm.lm.summary import Summary
from sparselm.util import threads
from sparselm.util.timing import PhaseTimer


def linear_solver_options(options: SolverOptions) -> LinearSolverOptions:
    """The options the linear solvers read, from the solve's options."""
    return LinearSolverOptions(ordering=options.ordering, factorization=options.factorization,
                               max_cg_iterations=options.max_cg_iterations, min_cg_iterations=options.min_cg_iterations,
                               cg_tolerance=options.cg_tolerance, preconditioner=options.preconditioner,
                               extra={"schur_variant": options.schur_variant,
                                      "cg_termination": options.cg_termination})


@threads.one_solve_at_a_time
def solve(problem: Problem, options: Optional[SolverOptions] = None, **kwargs) -> Summary:
    """Minimise ``problem`` with Levenberg-Marquardt; the solution is written into its groups' values.

    Options come as a SolverOptions or as keyword arguments (names as in SolverOptions).
    Returns a :class:`Summary`; it raises only for invalid input (ValueError), a non-finite
    residual at the starting point (NonFiniteError) or a problem that cannot fit in memory
    (InsufficientMemoryError, before anything big is allocated). Solves from several threads run
    one at a time (see :mod:`sparselm.util.threads`).
    """
    if options is None:
        options = SolverOptions.from_kwargs(**kwargs)
    elif kwargs:
        raise ValueError("give options either as a SolverOptions or as keyword arguments, not both")
    given = options.to_dict()
    start = time.perf_counter()
    timer = PhaseTimer()
    setup = PhaseTimer()  # the set-up steps, reported apart from the per-iteration phases
    n_threads = threads.configure(options.threads)
    with setup.phase("layout"):
        layout = build_layout(problem)
    with setup.phase("solver_choice"):
        choice = choose_linear_solver(layout, options.linear_solver, problem)
    with setup.phase("memory_estimate"):
        factor_nnz = int(choice.factor_estimate["nnz"]) if choice.factor_estimate else None
        check_memory(estimate_memory(problem, choice.name, layout, threads=n_threads, factor_nnz=factor_nnz))
    with setup.phase("evaluator"):
        evaluator = Evaluator(problem, layout, timer)
    with setup.phase("linear_solver"):  # its structure and symbolic analysis (also its "symbolic" phase)
        linear_solver = registry.get(choice.name).solver(layout, evaluator, timer, linear_solver_options(options))
    summary = Summary()
    summary.setup_time_s = time.perf_counter() - start
    summary.setup_phases = {name: t["seconds"] for name, t in setup.table().items()}
    summary.problem = dict(problem.sizes(), free_parameters=layout.n_columns)
    used = dict(given, linear_solver=choice.name, linear_solver_reason=choice.reason, threads=n_threads)
    summary.options_given, summary.options_used = given, used
    values = {g.name: g.values.copy() for g in problem.parameter_groups.values()}
    minimizer = Minimizer(evaluator, linear_solver, options)
    try:
        minimizer.run(values, summary, start)
    finally:
        best = minimizer.best_values if minimizer.best_values is not None else values
        for g in problem.parameter_groups.values():
            g.values[...] = best[g.name]
        summary.total_time_s = time.perf_counter() - start
        summary.phases = timer.table()
        summary.linear_solver = linear_solver.info()
        summary.environment = threads.describe()
    return summary
