"""What this process actually runs on, for ``sparselm doctor``: versions, the BLAS CHOLMOD uses
(:mod:`sparselm.profiling.blas`), numba's on-disk cache (:mod:`sparselm.profiling.jit`), the CPU and
the threads. Every function returns plain data and never raises for a missing tool or an
unreadable file: what cannot be found is reported as None or "unknown".
"""
from __future__ import annotations

import ctypes
import os
import platform
import re
import sys
from typing import Any, Dict, List, Optional

from sparselm.profiling.blas import blas_info, blas_summary, mapped_libraries, open_loaded, run_command
from sparselm.profiling.jit import numba_cache_status


# ---------------------------------------------------------------------------------------------
# Versions

def _dist_version(name: str) -> Optional[str]:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _c_version(path: str, symbol: str) -> Optional[str]:
    """x.y.z from a SuiteSparse ``int f(int version[3])`` function of an already loaded library."""
    try:
        lib = open_loaded(path)
        f = getattr(lib, symbol)
    except (OSError, AttributeError):
        return None
    v = (ctypes.c_int * 3)()
    f.argtypes = [ctypes.c_int * 3]
    f.restype = ctypes.c_int
    try:
        f(v)
    except Exception:  # pragma: no cover
        return None
    return f"{v[0]}.{v[1]}.{v[2]}"


def _soname_version(libs: List[str], stem: str) -> Optional[str]:
    for p in libs:
        m = re.match(re.escape(stem) + r"\.so\.(\d+(?:\.\d+)*)$", os.path.basename(os.path.realpath(p)))
        if m:
            return m.group(1)
    return None


def versions() -> Dict[str, Optional[str]]:
    """Versions of Python, the libraries sparselm uses, SuiteSparse/CHOLMOD and sparselm (None: absent)."""
    import sparselm

    out: Dict[str, Optional[str]] = {"python": platform.python_version(), "sparselm": sparselm.__version__}
    for key, dist in (("numpy", "numpy"), ("scipy", "scipy"), ("numba", "numba"), ("llvmlite", "llvmlite"),
                      ("scikit-sparse", "scikit-sparse"), ("matplotlib", "matplotlib"),
                      ("threadpoolctl", "threadpoolctl")):
        out[key] = _dist_version(dist)
    try:
        from sparselm.linalg.cholmod import extension_path

        extension_path()
    except Exception:  # noqa: BLE001
        pass
    libs = mapped_libraries()
    cholmod_lib = next((p for p in libs if os.path.basename(p).startswith("libcholmod.so")), None)
    config_lib = next((p for p in libs if os.path.basename(p).startswith("libsuitesparseconfig.so")), None)
    out["cholmod"] = (_c_version(cholmod_lib, "cholmod_version") if cholmod_lib else None) \
        or _soname_version(libs, "libcholmod")
    out["suitesparse"] = (_c_version(config_lib, "SuiteSparse_version") if config_lib else None) \
        or _soname_version(libs, "libsuitesparseconfig")
    if out["suitesparse"] is None:
        dpkg = run_command(["dpkg-query", "-W", "-f", "${Version}", "libsuitesparse-dev"])
        out["suitesparse"] = dpkg.strip() if dpkg else None
    return out



# ---------------------------------------------------------------------------------------------
# CPU and threads

def cpu_info() -> Dict[str, object]:
    """CPU count (all, and usable by this process), model name, and architecture."""
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                    value = line.split(":", 1)[1].strip()
                    if value and not value.isdigit():
                        model = value
                        break
    except OSError:
        pass
    if model is None:
        model = platform.processor() or None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"count": os.cpu_count() or 1, "usable": usable or 1, "model": model or "unknown",
            "machine": platform.machine(), "system": f"{platform.system()} {platform.release()}"}


def thread_info() -> Dict[str, object]:
    """numba's thread count and threading layer, and the BLAS/OpenMP thread variables."""
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet: the configured choice
        layer = str(numba.config.THREADING_LAYER)
    d: Dict[str, object] = {"numba_threads": int(numba.get_num_threads()),
                            "numba_max_threads": int(numba.config.NUMBA_NUM_THREADS),
                            "numba_threading_layer": layer}
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                "NUMBA_THREADING_LAYER"):
        d[var] = os.environ.get(var)
    return d


def doctor_report(info: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """Everything ``sparselm doctor`` prints, as data: versions, BLAS, CPU, threads, numba cache."""
    blas = blas_info() if info is None else info
    return {"versions": versions(), "blas": blas, "cpu": cpu_info(), "threads": thread_info(),
            "numba_cache": numba_cache_status(), "python_executable": sys.executable}


def format_doctor(report: Dict[str, Any]) -> str:
    """The doctor report as readable text (warnings last)."""
    v = report["versions"]
    blas = report["blas"]
    cpu = report["cpu"]
    th = report["threads"]
    cache = report["numba_cache"]
    lines = ["sparselm doctor", "", "Versions"]
    for k, val in v.items():
        lines.append(f"  {k:<16} {val if val is not None else 'not installed'}")
    lines += ["", "BLAS"]
    chol = blas.get("cholmod")
    lines.append(f"  CHOLMOD uses    {blas_summary(blas)}")
    if isinstance(chol, dict) and chol.get("lapack"):
        lines.append(f"  CHOLMOD LAPACK  {chol['lapack']}")
    npy = blas.get("numpy") or {}
    lines.append(f"  numpy uses      {npy.get('name')} {npy.get('version')}"
                 + (f", {npy['threads']} thread{'s' if npy['threads'] != 1 else ''}" if "threads" in npy else "")
                 + (f", {npy['library']}" if npy.get("library") else ""))
    for name, alt in (blas.get("alternatives") or {}).items():
        lines.append(f"  {name:<15} -> {alt.get('value')} ({alt.get('kind')}, {alt.get('status')})")
    lines += ["", "CPU and threads",
              f"  CPU             {cpu['model']} ({cpu['machine']}), {cpu['count']} logical CPUs, "
              f"{cpu['usable']} usable",
              f"  numba           {th['numba_threads']} threads, threading layer {th['numba_threading_layer']}"]
    env = ", ".join(f"{k}={th[k]}" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
                    if th.get(k) is not None)
    lines.append(f"  environment     {env or '(no thread variables set)'}")
    lines += ["", "numba cache"]
    if "error" in cache:
        lines.append(f"  unknown: {cache['error']}")
    else:
        state = "warm" if cache["warm"] else "NOT warm (kernels compile on first use)"
        lines.append(f"  {state}: {cache['kernels_warm']}/{cache['kernels']} kernels cached for this CPU")
        for key, what in (("cold", "not cached"), ("stale", "cache out of date"),
                          ("other_cpu", "cached for another CPU")):
            names = cache[key]
            if names:
                shown = ", ".join(n.replace("sparselm.", "") for n in names[:6])
                lines.append(f"  {what}: {shown}{' ...' if len(names) > 6 else ''} ({len(names)})")
        lines.append(f"  folders: {', '.join(cache['cache_dirs']) or '-'}")
    warnings = blas.get("warnings") or []
    lines.append("")
    if warnings:
        lines.append("Warnings")
        lines += [f"  WARNING: {w}" for w in warnings]
    else:
        lines.append("No warnings.")
    return "\n".join(lines)
