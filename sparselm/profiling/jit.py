"""The just-in-time compilation cost of sparselm's numba kernels: whether numba's on-disk cache is
warm for this CPU, whether a problem's residual kernels are compiled in this process, and the true
compile time measured in a fresh process with an empty cache.
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
import textwrap
import time
from typing import Any, Dict

from sparselm.core.problem import Problem
from sparselm.linalg import registry


# ---------------------------------------------------------------------------------------------
# numba's on-disk cache

def _cached_dispatchers():
    """(qualified name, dispatcher) of every module-level numba kernel of sparselm with cache=True."""
    import numba
    from numba.core.dispatcher import Dispatcher

    import sparselm

    del numba
    found = []
    skip = ("sparselm.cli", "sparselm.cli.profile", "sparselm.profiling.plots")
    for mod in pkgutil.walk_packages(sparselm.__path__, "sparselm."):
        if mod.name.startswith(skip):
            continue
        try:
            module = importlib.import_module(mod.name)
        except Exception:  # noqa: BLE001 - a module another engineer is editing may not import
            continue
        for attr, obj in vars(module).items():
            if isinstance(obj, Dispatcher) and getattr(obj, "__module__", None) == mod.name:
                cache = getattr(obj, "_cache", None)
                if cache is not None and type(cache).__name__ != "NullCache":
                    found.append((f"{mod.name}.{attr}", obj))
    return found


def numba_cache_status() -> Dict[str, object]:
    """Whether the on-disk numba cache of sparselm's kernels is warm for this machine.

    For each module-level kernel compiled with ``cache=True`` it looks for the index file (.nbi)
    numba keeps next to the source (``__pycache__``) or under ``NUMBA_CACHE_DIR``, and checks that
    an entry in it was compiled for this CPU (numba keys entries by CPU name and features) and
    for the current source (an edited source file invalidates its index). ``warm`` means every
    kernel has such an entry; a cold kernel is compiled on first use (seconds each). Kernels built
    at run time for a block size (closures) are not module-level and are not counted. Also returns
    the .nbi/.nbc file counts and bytes found in the cache folders.
    """
    try:
        from numba.core.registry import cpu_target

        magic = cpu_target.target_context.codegen().magic_tuple()
    except Exception:  # noqa: BLE001
        magic = None
    kernels = {"warm": [], "stale": [], "cold": [], "other_cpu": []}
    folders = set()
    try:
        dispatchers = _cached_dispatchers()
    except Exception as exc:  # noqa: BLE001
        return {"warm": False, "error": f"{type(exc).__name__}: {exc}", "kernels": 0}
    for name, disp in dispatchers:
        cache = disp._cache
        try:
            folders.add(str(cache._cache_path))
            cache_file = cache._cache_file
            if not os.path.exists(cache_file._index_path):
                kernels["cold"].append(name)
                continue
            index = cache_file._load_index()  # {} when the source changed since it was written
        except Exception:  # noqa: BLE001 - numba internals differ between versions
            kernels["cold"].append(name)
            continue
        if not index:
            kernels["stale"].append(name)
        elif magic is not None and not any(key[1] == magic for key in index):
            kernels["other_cpu"].append(name)
        else:
            kernels["warm"].append(name)
    n_index = n_data = n_bytes = 0
    for folder in folders:
        try:
            for entry in os.scandir(folder):
                if entry.name.endswith(".nbi"):
                    n_index += 1
                    n_bytes += entry.stat().st_size
                elif entry.name.endswith(".nbc"):
                    n_data += 1
                    n_bytes += entry.stat().st_size
        except OSError:
            pass
    total = len(dispatchers)
    return {
        "warm": total > 0 and len(kernels["warm"]) == total,
        "kernels": total,
        "kernels_warm": len(kernels["warm"]),
        "cold": sorted(kernels["cold"]),
        "stale": sorted(kernels["stale"]),
        "other_cpu": sorted(kernels["other_cpu"]),
        "cache_dirs": sorted(folders),
        "numba_cache_dir_env": os.environ.get("NUMBA_CACHE_DIR"),
        "index_files": n_index,
        "data_files": n_data,
        "bytes": n_bytes,
    }


def kernels_compiled(problem: Problem) -> bool:
    """True when this process has already compiled the problem's residual kernels."""
    for rg in problem.residual_groups:
        for k in (rg.residual_type.residual_kernel, rg.residual_type.jacobian_kernel):
            if k is not None and getattr(k, "signatures", None):
                return True
    return False


_COLD_JIT_SCRIPT = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import sparselm
    from sparselm.bal.synthetic import synthetic_problem
    from sparselm.bal import build_problem
    t_import = time.perf_counter() - t0
    times = []
    for _ in range(2):
        problem = build_problem(synthetic_problem(4, 40, seed=1).initial)
        t = time.perf_counter()
        sparselm.solve(problem, linear_solver=sys.argv[1], max_iterations=2)
        times.append(time.perf_counter() - t)
    print(json.dumps({"import_seconds": t_import, "first": times[0], "second": times[1]}))
""")


def measure_cold_jit(linear_solver: str, timeout: float = 600.0) -> Dict[str, Any]:
    """Compile time of the BA kernels from an empty numba cache, in a fresh Python process.

    Runs a 2-iteration solve of a tiny synthetic BA problem twice with NUMBA_CACHE_DIR pointing at
    an empty folder; the first minus the second is what numba spent compiling.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sparselm-cold-jit-") as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=tmp)
        solver = linear_solver if linear_solver in registry.names() else "auto"
        t0 = time.perf_counter()
        try:
            out = subprocess.run([sys.executable, "-c", _COLD_JIT_SCRIPT, solver], capture_output=True, text=True,
                                 env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"ok": False, "message": f"timed out after {timeout:.0f} s"}
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["?"]
            return {"ok": False, "message": f"subprocess failed: {tail[0]}"}
        d = json.loads(out.stdout.strip().splitlines()[-1])
        return {"ok": True, "linear_solver": solver, "compile_seconds": max(0.0, d["first"] - d["second"]),
                "first_solve_seconds": d["first"], "warm_solve_seconds": d["second"],
                "import_seconds": d["import_seconds"], "process_seconds": wall}
