"""Run ``sparselm solve`` under mpiexec with a fault injected on one rank (used by test_faults.py).

usage: python fault_rank.py MODE RANK CALL -- SOLVE_ARGS...
MODE: raise (RuntimeError), oom (MemoryError) or kill (SIGKILL to itself);
the fault happens in the CALL-th evaluation of the trial cost on rank RANK.
"""
import os
import signal
import sys
import time

from sparselm.cli.main import main
from sparselm.distributed.comm import mpi_world
from sparselm.distributed.solver import DistributedEvaluator

mode, fault_rank, fault_call = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
solve_args = sys.argv[sys.argv.index("--") + 1:]
calls = [0]
original = DistributedEvaluator.cost_at


def faulty_cost_at(self, values):
    calls[0] += 1
    if calls[0] == fault_call:
        print(f"FAULT_AT {time.time():.3f}", file=sys.stderr, flush=True)
        if mode == "raise":
            raise RuntimeError(f"injected fault on rank {fault_rank}")
        if mode == "oom":
            raise MemoryError("injected out-of-memory")
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
    return original(self, values)


if mpi_world().Get_rank() == fault_rank:
    DistributedEvaluator.cost_at = faulty_cost_at
sys.exit(main(solve_args))
