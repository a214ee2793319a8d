"""Thread policy: numba workers do the parallel kernels; BLAS (inside CHOLMOD) runs single-threaded.

Measured on a 2-core machine: OpenBLAS threads spinning after a call fight numba's
workers for the cores; with OPENBLAS_NUM_THREADS=1 and numba's ``workqueue`` layer a 144x144
factorization went from 9-30 ms to 0.6 ms. The variables only act on libraries loaded after they
are set, so :mod:`sparselm` sets them on import (without overriding a user's choice), and
:func:`configure` also caps every OpenBLAS already loaded (numpy's own copy, typically) at run
time through its ``*_set_num_threads`` entry point.
"""
from __future__ import annotations

import ctypes
import os

DEFAULTS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "NUMBA_THREADING_LAYER": "workqueue"}


def set_environment_defaults() -> None:
    """Set the thread environment variables that are not already set."""
    for k, v in DEFAULTS.items():
        os.environ.setdefault(k, v)


_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "scipy_openblas_set_num_threads64_")


def mapped_libraries() -> list:
    """Paths of the shared libraries mapped into this process (from /proc/self/maps), sorted."""
    paths = set()
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    p = parts[5].strip()
                    if p.startswith("/") and ".so" in os.path.basename(p):
                        paths.add(p)
    except OSError:
        return []
    return sorted(paths)


def loaded_blas_libraries() -> list:
    """The BLAS/LAPACK libraries among :func:`mapped_libraries`."""
    keys = ("blas", "lapack", "mkl", "blis")
    return [p for p in mapped_libraries()
            if os.path.basename(p).startswith("lib") and any(k in os.path.basename(p).lower() for k in keys)]


def limit_blas_threads(n: int) -> int:
    """Set the thread count of every loaded OpenBLAS to ``n``; returns how many libraries took it."""
    done = 0
    for path in loaded_blas_libraries():
        if "openblas" not in path.lower():
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(ctypes.c_int(n))
                done += 1
                break
    return done


def configure(threads: int | None) -> int:
    """Use ``threads`` numba workers (None: all available) and single-threaded BLAS; returns
    the number of numba workers in use."""
    import numba

    limit = numba.config.NUMBA_NUM_THREADS
    n = limit if threads is None else max(1, min(int(threads), limit))
    numba.set_num_threads(n)
    if os.environ.get("OPENBLAS_NUM_THREADS", "1") == "1":
        limit_blas_threads(1)
    return n


def describe() -> dict:
    """Thread settings for reports: numba threads and layer, BLAS thread variables."""
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = numba.config.THREADING_LAYER
    return {"numba_threads": numba.get_num_threads(), "numba_threading_layer": layer,
            "cpu_count": os.cpu_count(),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "blas_libraries": loaded_blas_libraries()}
