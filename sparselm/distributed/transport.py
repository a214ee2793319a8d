"""Sending a rank its :class:`~sparselm.core.problem.Problem`: pickled arrays, residual types by reference.

A residual type's numba kernels pickled by value would be compiled afresh on every rank (no disk
cache hit: 10-30 s); a type that is a module-level object (as ``sparselm.bal.BAL_REPROJECTION``)
travels as (module, attribute) and is looked up on arrival, so every rank uses the same cached
kernels. A type found in no imported module travels by value. The bytes go as one MPI message of
raw bytes (its length first), so messages over pickle's in-memory limits of mpi4py's ``send`` work.
"""
from __future__ import annotations

import importlib
import io
import pickle
import sys

import numpy as np

from sparselm.residuals.base import ResidualType


def _module_reference(obj):
    """(module name, attribute) of an imported module holding ``obj`` at its top level, or None."""
    for name, module in list(sys.modules.items()):
        if name == "__main__" or module is None:
            continue
        for attr, value in list(getattr(module, "__dict__", {}).items()):
            if value is obj:
                return name, attr
    return None


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, ResidualType):
            return _module_reference(obj)
        return None


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid):
        module, attr = pid
        return getattr(importlib.import_module(module), attr)


def encode(obj) -> bytes:
    """Pickle ``obj`` with residual types by module reference."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def decode(data) -> object:
    """The object :func:`encode` pickled."""
    return _Unpickler(io.BytesIO(data)).load()


def send_object(comm, obj, dest: int) -> None:
    """Send ``obj`` to rank ``dest`` of the mpi4py communicator ``comm``."""
    data = np.frombuffer(encode(obj), dtype=np.uint8)
    comm.send(data.size, dest=dest, tag=1)
    comm.Send(data, dest=dest, tag=2)


def receive_object(comm, source: int = 0):
    """The object rank ``source`` sent with :func:`send_object`."""
    n = comm.recv(source=source, tag=1)
    data = np.empty(n, dtype=np.uint8)
    comm.Recv(data, source=source, tag=2)
    return decode(data.tobytes())
