"""``solve(problem, options)``: the front door that wires the layers together and reports."""
from __future__ import annotations

import time
from typing import Optional

from sparselm.util import threads
from sparselm.core.evaluator import Evaluator
from sparselm.linalg import SOLVERS, LinearSolverOptions
from sparselm.linalg.auto import choose_linear_solver
from sparselm.lm.memory import check_memory, estimate_memory
from sparselm.lm.minimizer import Minimizer
from sparselm.lm.options import SolverOptions
from sparselm.core.problem import Problem
from sparselm.core.layout import build_layout
from sparselm.lm.summary import Summary
from sparselm.util.timing import PhaseTimer


@threads.one_solve_at_a_time
def solve(problem: Problem, options: Optional[SolverOptions] = None, **kwargs) -> Summary:
    """Minimise ``problem`` with Levenberg-Marquardt; the solution is written into its groups' values.

    Options come as a SolverOptions or as keyword arguments (names as in SolverOptions).
    Returns a :class:`Summary`; it raises only for invalid input (ValueError) or a non-finite
    residual at the starting point (NonFiniteError). Solves from several threads run one at a time
    (see :mod:`sparselm.util.threads`).
    """
    if options is None:
        options = SolverOptions.from_kwargs(**kwargs)
    elif kwargs:
        raise ValueError("give options either as a SolverOptions or as keyword arguments, not both")
    given = options.to_dict()
    start = time.perf_counter()
    timer = PhaseTimer()
    n_threads = threads.configure(options.threads)
    layout = build_layout(problem)
    name, reason = choose_linear_solver(layout, options.linear_solver, SOLVERS)
    check_memory(estimate_memory(problem, name, layout, threads=n_threads))
    evaluator = Evaluator(problem, layout, timer)
    lin_opts = LinearSolverOptions(ordering=options.ordering, factorization=options.factorization,
                                   max_cg_iterations=options.max_cg_iterations,
                                   min_cg_iterations=options.min_cg_iterations, cg_tolerance=options.cg_tolerance,
                                   preconditioner=options.preconditioner,
                                   extra={"schur_variant": options.schur_variant,
                                          "cg_termination": options.cg_termination})
    linear_solver = SOLVERS[name](layout, evaluator, timer, lin_opts)
    summary = Summary()
    summary.setup_time_s = time.perf_counter() - start
    summary.problem = dict(problem.sizes(), free_parameters=layout.n_columns)
    used = dict(given, linear_solver=name, linear_solver_reason=reason, threads=n_threads)
    summary.options_given, summary.options_used = given, used
    values = {g.name: g.values.copy() for g in problem.parameter_groups.values()}
    minimizer = Minimizer(evaluator, linear_solver, options)
    try:
        minimizer.run(values, summary, start)
    finally:
        best = minimizer.result_values() if hasattr(minimizer, "_values_out") else values
        for g in problem.parameter_groups.values():
            g.values[...] = best[g.name]
        summary.total_time_s = time.perf_counter() - start
        summary.phases = timer.table()
        summary.linear_solver = linear_solver.info()
        summary.environment = threads.describe()
    return summary
