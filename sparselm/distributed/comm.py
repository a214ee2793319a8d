"""The MPI communicator as the distributed solve uses it: sums and maxima over the ranks, each
call's payload counted per phase.

Only this module imports mpi4py (the optional extra ``sparselm[mpi]``: mpi4py and the ``mpich``
wheel, which ships ``mpiexec``). Every collective of the solve goes through :class:`Communicator`,
so :attr:`Communicator.sent` is the payload each rank hands MPI, in bytes, per phase name (what
one Allreduce of n doubles sends: 8 n bytes of payload; on the wire a ring or
reduce-scatter/allgather Allreduce moves 2 (K - 1) / K of that per rank, K ranks).

The reductions use MPI's Allreduce, whose result MPICH delivers identically to every rank (each
element is reduced once and broadcast, or reduced in a commutative order that gives the same
bits), so every rank's copy of a replicated vector, and every decision taken from it, is the same.
"""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Dict

import numpy as np

#: environment variables set by an MPI launcher (MPICH/hydra: PMI_*; Open MPI: OMPI_*; PMIx: PMIX_*)
LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


def launched_by_mpiexec() -> bool:
    """True when this process was started by ``mpiexec`` (any rank count, 1 included)."""
    return any(v in os.environ for v in LAUNCHER_VARIABLES)


def mpi_world():
    """mpi4py's COMM_WORLD; ImportError with the install hint when the extra is missing."""
    try:
        from mpi4py import MPI
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the distributed solve needs mpi4py and an MPI library: "
                          "pip install 'sparselm[mpi]' (mpi4py and the mpich wheel)") from exc
    return MPI.COMM_WORLD


class Communicator:
    """Sums and maxima over all ranks of an mpi4py communicator, payload counted per phase."""

    def __init__(self, comm=None):
        from mpi4py import MPI
        self._mpi = MPI
        self.comm = comm if comm is not None else mpi_world()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        #: payload bytes this rank passed to collectives, per phase name
        self.sent: Dict[str, int] = defaultdict(int)
        #: number of collectives, per phase name
        self.calls: Dict[str, int] = defaultdict(int)

    def sum_in_place(self, array: np.ndarray, phase: str) -> np.ndarray:
        """array <- the sum over ranks of every rank's ``array`` (contiguous float64); returns it."""
        assert array.flags.c_contiguous and array.dtype == np.float64
        self.comm.Allreduce(self._mpi.IN_PLACE, array, op=self._mpi.SUM)
        self.sent[phase] += array.nbytes
        self.calls[phase] += 1
        return array

    def sum(self, value: float, phase: str) -> float:
        """Sum of one float over the ranks."""
        return float(self.sum_in_place(np.array([value], dtype=np.float64), phase)[0])

    def max(self, values, phase: str) -> np.ndarray:
        """Elementwise maximum over the ranks of a small float vector."""
        buf = np.ascontiguousarray(values, dtype=np.float64).copy()
        self.comm.Allreduce(self._mpi.IN_PLACE, buf, op=self._mpi.MAX)
        self.sent[phase] += buf.nbytes
        self.calls[phase] += 1
        return buf

    def abort(self, code: int) -> None:
        """End every rank now (MPI_Abort) with exit status ``code``."""
        self.comm.Abort(code)
