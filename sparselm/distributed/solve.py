"""``solve_distributed``: one LM solve over the ranks of an MPI job, with the same answer as
:func:`sparselm.solve` with ``linear_solver='iterative_schur'`` (implicit) up to round-off.

Rank 0 holds the whole problem: it partitions it (:mod:`sparselm.distributed.partition`) and sends
every other rank its part (:mod:`sparselm.distributed.transport`); then all ranks run the same LM
loop (:mod:`sparselm.distributed.solver`) and rank 0 gathers the eliminated blocks back into the
whole problem. Stopping is collective: after every iteration one Allreduce of three flags
(Ctrl-C seen by a rank, the time limit passed on a rank, a callback of rank 0 asking to stop)
ends the loop on all ranks together. SIGINT only sets the flag during the loop, so a Ctrl-C
delivered to every rank by ``mpiexec`` stops them at the same iteration and the best point is
still gathered and returned.
"""
from __future__ import annotations

import dataclasses
import math
import signal
import time
from typing import Optional

import numpy as np

from sparselm.core.layout import build_layout
from sparselm.core.problem import Problem
from sparselm.distributed.comm import Communicator
from sparselm.distributed.partition import eliminated_group, local_problem, make_partition
from sparselm.distributed.solver import DistributedEvaluator, DistributedIterativeSchur, DistributedMinimizer
from sparselm.distributed.transport import receive_object, send_object
from sparselm.lm.memory import check_memory, estimate_memory
from sparselm.lm.options import SolverOptions
from sparselm.lm.solve import linear_solver_options
from sparselm.lm.summary import Summary
from sparselm.util import threads
from sparselm.util.timing import PhaseTimer

SOLVER = "iterative_schur"


class CollectiveStop:
    """The per-iteration callback that makes every rank stop together (see the module docstring)."""

    def __init__(self, comm: Communicator, start: float, max_time_s: float, callbacks):
        self.comm, self.start, self.max_time_s, self.callbacks = comm, start, max_time_s, list(callbacks)
        self.interrupted = self.timed_out = False
        self.signalled = False

    def on_sigint(self, signum, frame) -> None:
        self.signalled = True

    def __call__(self, record) -> bool:
        mine = [float(self.signalled), float(time.perf_counter() - self.start >= self.max_time_s),
                float(any([cb(record) for cb in self.callbacks]))]  # every callback sees every record
        flags = self.comm.max(mine, "stop")
        self.interrupted, self.timed_out = bool(flags[0]), bool(flags[1])
        return bool(flags.any())


def solve_distributed(problem: Optional[Problem], options: SolverOptions, comm: Communicator,
                      partition_method: Optional[str] = None) -> Optional[Summary]:
    """Solve ``problem`` (given on rank 0, None elsewhere) over the ranks of ``comm``; the solution is
    written into rank 0's problem. Returns the Summary on rank 0, None on the other ranks.

    ``options.linear_solver`` must be 'auto' or 'iterative_schur' (the implicit variant is used);
    ``options.callbacks`` run on rank 0 only; the iteration table is printed by rank 0 only.
    """
    if options.linear_solver not in ("auto", SOLVER) or options.schur_variant != "implicit":
        raise ValueError(f"the distributed solve uses the implicit iterative_schur solver; got linear_solver="
                         f"{options.linear_solver!r}, schur_variant={options.schur_variant!r}")
    start = time.perf_counter()
    timer = PhaseTimer()
    n_threads = threads.configure(options.threads)
    root = comm.rank == 0
    part = None
    with timer.phase("partition"):
        if root:
            part = make_partition(problem, comm.size, partition_method)
            for r in range(1, comm.size):
                send_object(comm.comm, local_problem(problem, part, r), r)
            mine = local_problem(problem, part, 0)
        else:
            mine = receive_object(comm.comm, 0)
    layout = build_layout(mine)
    check_memory(estimate_memory(mine, SOLVER, layout, threads=n_threads))
    evaluator = DistributedEvaluator(mine, layout, timer, comm)
    solver = DistributedIterativeSchur(layout, evaluator, timer, linear_solver_options(options), comm)
    stop = CollectiveStop(comm, start, options.max_time_s, options.callbacks if root else ())
    loop_options = dataclasses.replace(options, max_time_s=math.inf, callbacks=[stop],
                                       verbose=options.verbose and root)
    summary = Summary()
    summary.setup_time_s = time.perf_counter() - start
    values = {g.name: g.values.copy() for g in mine.parameter_groups.values()}
    minimizer = DistributedMinimizer(evaluator, solver, loop_options, comm)
    previous = signal.signal(signal.SIGINT, stop.on_sigint)
    try:
        minimizer.run(values, summary, start)
    finally:
        signal.signal(signal.SIGINT, previous)
    if stop.interrupted:
        summary.termination = "interrupted"
        summary.message = "Interrupted (Ctrl-C on a rank); the best point so far is kept."
    elif stop.timed_out:
        summary.termination = "no_convergence"
        summary.message = f"Maximum solver time reached ({options.max_time_s:g} s)."
    best = minimizer.best_values if minimizer.best_values is not None else values
    e_name = eliminated_group(mine).name
    gathered = comm.comm.gather(best[e_name], root=0)
    if not root:
        return None
    for g in problem.parameter_groups.values():
        if g.name != e_name:
            g.values[...] = best[g.name]
    e_values = problem.parameter_groups[e_name].values
    for r, block_values in enumerate(gathered):
        e_values[part.blocks_of(r)] = block_values
    summary.total_time_s = time.perf_counter() - start
    summary.problem = dict(problem.sizes(), free_parameters=sum(int((~g.constant).sum()) * g.block_size
                                                                 for g in problem.parameter_groups.values()))
    summary.options_given = options.to_dict()
    summary.options_used = dict(summary.options_given, linear_solver=SOLVER, threads=n_threads,
                                linear_solver_reason=f"distributed over {comm.size} MPI ranks", ranks=comm.size)
    summary.phases = timer.table()
    summary.linear_solver = dict(solver.info(), partition=part.method,
                                 **{f"per_rank_{k}": v for k, v in part.counts(comm.size).items()})
    summary.environment = threads.describe()
    return summary
