"""``mpiexec -n K sparselm solve FILE ...``: the distributed solve (:mod:`sparselm.distributed`).

Rank 0 does everything the single-process command does (read, check the outputs, print the
table and the report, write the outputs atomically, once); its solve is
:func:`~sparselm.distributed.solve.solve_distributed`, which the other ranks join with no
input of their own. Faults never hang the job: any exception on any rank (bad input on rank 0,
an error or MemoryError mid-solve on another) prints ``sparselm: rank R: error: <message>`` and
calls MPI_Abort, which makes ``mpiexec`` end every rank at once with a non-zero status (2 for an
input error, 1 otherwise, 130 for Ctrl-C outside the solve loop); a rank killed by a signal is
reported by ``mpiexec``, which then ends the others. Nothing is written before the solve has
ended on every rank, and outputs are written atomically, so no fault leaves a partial file.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Callable

from sparselm.cli.common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, USER_ERRORS, one_line
from sparselm.distributed.comm import Communicator
from sparselm.distributed.solve import solve_distributed

#: seconds a failing rank waits between printing its message and MPI_Abort: the launcher forwards
#: each rank's output asynchronously and drops what it has not forwarded when the abort ends the job
#: (seen under load: a MemoryError's message lost, mpiexec ending with status 1 and no output)
ABORT_GRACE_S = 1.0


def run_ranks(args, solve_and_report: Callable, make_options: Callable) -> int:
    """Run the ``solve`` command on this rank: rank 0 through ``solve_and_report(args, solve)``, the
    others inside the distributed solve only, with ``make_options(args)``. Returns the exit status."""
    comm = Communicator()
    try:
        if comm.rank == 0:
            status = solve_and_report(args, lambda problem, options: solve_distributed(problem, options, comm))
        else:
            solve_distributed(None, make_options(args), comm)
            status = 0
        comm.comm.Barrier()
        return status
    except BaseException as exc:  # noqa: BLE001 - every fault must end every rank
        code = (EXIT_USAGE if isinstance(exc, USER_ERRORS) else
                EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_FAILURE)
        if getattr(args, "traceback", False):
            traceback.print_exc()
        print(f"sparselm: rank {comm.rank} of {comm.size}: error: {one_line(exc)}; ending all ranks",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        time.sleep(ABORT_GRACE_S)
        comm.abort(code)
        os._exit(code)  # pragma: no cover - in case MPI_Abort returns before the launcher ends this rank
