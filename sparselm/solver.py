"""``solve(problem, options)``: the front door that wires the layers together and reports."""
from __future__ import annotations

import time
from typing import Optional

from sparselm import threads
from sparselm.evaluator import Evaluator
from sparselm.linalg import SOLVERS, LinearSolverOptions
from sparselm.minimizer import Minimizer
from sparselm.options import SolverOptions
from sparselm.problem import Problem
from sparselm.structure import Layout, build_layout
from sparselm.summary import Summary
from sparselm.timing import PhaseTimer

DENSE_MAX_COLUMNS = 300


def choose_linear_solver(problem: Problem, layout: Layout, requested: str) -> str:
    """Resolve 'auto': a Schur solver when a group is eliminated and the solver exists,
    dense for tiny problems, sparse normal Cholesky otherwise."""
    if requested != "auto":
        if requested not in SOLVERS:
            raise ValueError(f"linear solver {requested!r} is not available; available: {', '.join(sorted(SOLVERS))}")
        return requested
    if layout.n_reduced_columns < layout.n_columns and "sparse_schur" in SOLVERS:
        from sparselm.linalg.schur import auto_schur_choice

        return auto_schur_choice(layout)
    if layout.n_columns <= DENSE_MAX_COLUMNS:
        return "dense"
    return "sparse_normal_cholesky"


def solve(problem: Problem, options: Optional[SolverOptions] = None, **kwargs) -> Summary:
    """Minimise ``problem`` with Levenberg-Marquardt; the solution is written into its groups' values.

    Options come as a SolverOptions or as keyword arguments (names as in SolverOptions).
    Returns a :class:`Summary`; it raises only for invalid input (ValueError) or a non-finite
    residual at the starting point (NonFiniteError).
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
    name = choose_linear_solver(problem, layout, options.linear_solver)
    evaluator = Evaluator(problem, layout, timer)
    lin_opts = LinearSolverOptions(ordering=options.ordering, factorization=options.factorization,
                                   max_cg_iterations=options.max_cg_iterations, cg_tolerance=options.cg_tolerance,
                                   preconditioner=options.preconditioner)
    linear_solver = SOLVERS[name](layout, evaluator, timer, lin_opts)
    summary = Summary()
    summary.setup_time_s = time.perf_counter() - start
    summary.problem = dict(problem.sizes(), free_parameters=layout.n_columns)
    used = dict(given, linear_solver=name, threads=n_threads)
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
