"""Thread policy: numba workers do the parallel kernels; BLAS (inside CHOLMOD) runs single-threaded.

Measured on a 2-core machine: OpenBLAS threads spinning after a call fight numba's
workers for the cores; with OPENBLAS_NUM_THREADS=1 (and numba's ``workqueue`` layer) a 144x144
factorization went from 9-30 ms to 0.6 ms. The variables only act on libraries loaded after they
are set, so :mod:`sparselm` sets them on import (without overriding a user's choice), and
:func:`configure` also caps every OpenBLAS already loaded (numpy's own copy, typically) at run
time through its ``*_set_num_threads`` entry point.

The threading layer. numba's parallel regions run on Intel's TBB (``tbb``, a dependency) where its
runtime loads, else on numba's own ``workqueue``. Measured on a 2-core Intel Xeon virtual machine,
a parallel region costs ~0.02 ms to launch on TBB against 0.15-0.2 ms on ``workqueue``, whose
workers sleep on a condition variable between regions; a 36000-observation COLMAP bundle adjustment
runs about ten regions per iteration, and its time to pycolmap's cost went from 47 to 32 ms (median
of 12). TBB hands out the iterations of a ``prange`` dynamically, so no kernel of sparselm reduces a
float across a ``prange``: every parallel sum is cut into fixed chunks (one per thread, by index)
whose partial sums are added in chunk order (:mod:`sparselm.util.numerics`), and the results are
bitwise the same from run to run for a given thread count. TBB's layer is fork-safe (numba shuts
its scheduler down around ``fork``). GNU OpenMP, the third layer, was rejected: it terminates every
child forked after a parallel region ("fork() called from a process already using GNU OpenMP").
numba finds TBB's library by its name, ``libtbb.so.12``, which pip's ``tbb`` wheel puts in the
environment's ``lib`` folder, outside the loader's search path: :func:`load_tbb` loads it from there
(or from the system) before numba looks.

Concurrency. ``workqueue`` aborts the whole process ("Concurrent access has been detected") when
two Python threads launch parallel regions at the same time, and two solves sharing TBB's workers
would each get an unpredictable share of them. So sparselm's public entry points that run parallel
kernels (:func:`one_solve_at_a_time`) hold one process-wide lock: solves started from several
threads wait for each other, each one still using all the numba workers. The lock is replaced by a
fresh one in a forked child, so a fork taken while another thread is solving cannot leave the child
waiting forever.

Processes. CHOLMOD's supernodal factorization runs GNU OpenMP loops with a thread count fixed in the
library (its ``num_threads`` clause ignores OMP_NUM_THREADS); GNU OpenMP keeps that thread pool and
a child forked afterwards hangs in its first factorization (seen as a ProcessPoolExecutor worker
stuck in ``cholmod_super_numeric``). ``OMP_THREAD_LIMIT=1``, set with the other defaults before
CHOLMOD is loaded, caps every OpenMP team at one thread, so no pool exists to break: forked workers
factorize normally, and the factors are bitwise the same (problem-16: the same final cost, and no
slower: the reduced camera system's factorization takes milliseconds). It acts only if no library
loaded GNU OpenMP before sparselm was imported.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import os
import sys
import threading

DEFAULTS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OMP_THREAD_LIMIT": "1", "MKL_NUM_THREADS": "1",
            "NUMBA_THREADING_LAYER": "workqueue"}

#: the TBB runtime's file name, the one numba's ``tbb`` layer asks the loader for
TBB_LIBRARY = "libtbb.so.12"


def load_tbb() -> bool:
    """Load TBB's runtime (``libtbb.so.12``) into the process so that numba's ``tbb`` layer finds it:
    from pip's ``tbb`` wheel (in the environment's ``lib`` folder), else wherever the loader finds it
    (a system package such as Debian's ``libtbb12``). Returns whether it is loaded."""
    candidates = []
    try:
        dist = importlib.metadata.distribution("tbb")
        candidates += [str(dist.locate_file(f)) for f in dist.files or () if f.name == TBB_LIBRARY]
    except importlib.metadata.PackageNotFoundError:
        pass
    for path in candidates + [TBB_LIBRARY]:
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            return True
        except OSError:
            continue
    return False


def set_environment_defaults() -> None:
    """Set the thread environment variables that are not already set; numba's threading layer is
    ``tbb`` where its runtime loads (:func:`load_tbb`), else ``workqueue``. TBB's runtime is loaded
    even when the layer is already chosen: a child process inherits ``NUMBA_THREADING_LAYER=tbb``
    from its parent's environment, not the library."""
    defaults = dict(DEFAULTS)
    if load_tbb():
        defaults["NUMBA_THREADING_LAYER"] = "tbb"
    for k, v in defaults.items():
        os.environ.setdefault(k, v)


_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "scipy_openblas_set_num_threads64_")


def mapped_libraries() -> list:
    """Paths of the shared libraries mapped into this process (from /proc/self/maps), sorted."""
    try:
        with open("/proc/self/maps") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    # a mapping's path is its sixth field; thousands of mappings share a few hundred paths, so
    # deduplicate before looking at the names (this runs at every solve's set-up)
    mapped = {parts[5].strip() for parts in (line.split(None, 5) for line in lines) if len(parts) == 6}
    return sorted(p for p in mapped if p.startswith("/") and ".so" in os.path.basename(p))


_BLAS_SCAN = {"modules": -1, "libraries": [], "setters": None}


def loaded_blas_libraries() -> list:
    """The BLAS/LAPACK libraries among :func:`mapped_libraries`.

    Reading ``/proc/self/maps`` costs about a millisecond once numpy, scipy and numba are loaded,
    and every solve asks twice (:func:`configure`, :func:`describe`): the answer is kept until the
    number of imported modules changes, since a library enters the process with the extension
    module that links it.
    """
    if _BLAS_SCAN["modules"] != len(sys.modules):
        keys = ("blas", "lapack", "mkl", "blis")
        _BLAS_SCAN["libraries"] = [p for p in mapped_libraries() if os.path.basename(p).startswith("lib")
                                   and any(k in os.path.basename(p).lower() for k in keys)]
        _BLAS_SCAN["modules"] = len(sys.modules)
        _BLAS_SCAN["setters"] = None  # found again for the new list
    return list(_BLAS_SCAN["libraries"])


def _openblas_setters() -> list:
    """The ``*_set_num_threads`` entry point of every loaded OpenBLAS, looked up once per scan of
    :func:`loaded_blas_libraries` (opening a library with ctypes costs ~0.06 ms, at every solve)."""
    libraries = loaded_blas_libraries()
    if _BLAS_SCAN["setters"] is None:
        setters = []
        for path in libraries:
            if "openblas" not in path.lower():
                continue
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for name in _SETTERS:
                setter = getattr(lib, name, None)
                if setter is not None:
                    setters.append(setter)
                    break
        _BLAS_SCAN["setters"] = setters
    return _BLAS_SCAN["setters"]


def limit_blas_threads(n: int) -> int:
    """Set the thread count of every loaded OpenBLAS to ``n``; returns how many libraries took it."""
    setters = _openblas_setters()
    for setter in setters:
        setter(ctypes.c_int(n))
    return len(setters)


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


_PARALLEL_LOCK = threading.RLock()


def _fresh_lock_in_forked_child() -> None:
    global _PARALLEL_LOCK
    _PARALLEL_LOCK = threading.RLock()


os.register_at_fork(after_in_child=_fresh_lock_in_forked_child)


def one_solve_at_a_time(function):
    """Decorate a public entry point that runs numba parallel regions so that it holds the process-wide
    lock while it runs: calls from several threads run one after another (re-entrant: an entry point may
    call another, a callback may call one)."""

    @functools.wraps(function)
    def holding_the_parallel_lock(*args, **kwargs):
        with _PARALLEL_LOCK:
            return function(*args, **kwargs)

    return holding_the_parallel_lock
