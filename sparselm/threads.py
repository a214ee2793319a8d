"""Thread policy: numba workers do the parallel kernels; BLAS (inside CHOLMOD) runs single-threaded.

Measured on a 2-core machine (DESIGN.md): OpenBLAS threads spinning after a call fight numba's
workers for the cores; with OPENBLAS_NUM_THREADS=1 and numba's ``workqueue`` layer a 144x144
factorization went from 9-30 ms to 0.6 ms. The variables must be set before the libraries load,
so :mod:`sparselm` sets them (without overriding a user's choice) on import.
"""
from __future__ import annotations

import os

DEFAULTS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "NUMBA_THREADING_LAYER": "workqueue"}


def set_environment_defaults() -> None:
    """Set the thread environment variables that are not already set."""
    for k, v in DEFAULTS.items():
        os.environ.setdefault(k, v)


def configure(threads: int | None) -> int:
    """Use ``threads`` numba workers (None: all available); returns the number in use."""
    import numba

    limit = numba.config.NUMBA_NUM_THREADS
    n = limit if threads is None else max(1, min(int(threads), limit))
    numba.set_num_threads(n)
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
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}
