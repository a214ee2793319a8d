"""Distributed solve over MPI ranks (optional extra ``sparselm[mpi]``): implicit-Schur PCG with
the cameras replicated and the points partitioned. See docs/scaling.md."""
from sparselm.distributed.comm import Communicator, launched_by_mpiexec
from sparselm.distributed.partition import NotDistributable, make_partition
from sparselm.distributed.solve import solve_distributed

__all__ = ["Communicator", "launched_by_mpiexec", "NotDistributable", "make_partition", "solve_distributed"]
