"""What this process actually runs on: BLAS libraries, versions, numba's cache, the CPU.

Used by ``sparselm doctor`` and by :mod:`sparselm.profile`. Every function returns plain data
(str, int, float, bool, None, lists and dicts of them) and never raises for a missing tool or an
unreadable file: what cannot be found is reported as None or "unknown".

The BLAS that matters for speed is the one CHOLMOD calls (its supernodal factorization is BLAS
level 3). It is the system ``libblas.so.3`` CHOLMOD is linked against, which on Debian is chosen
by ``update-alternatives``; numpy and scipy wheels bring their own OpenBLAS, which CHOLMOD never
uses. :func:`blas_info` loads CHOLMOD (through :mod:`sparselm.linalg.cholmod`, the one module
that imports scikit-sparse) and then reads which libraries are really mapped into the process
(``/proc/self/maps``), so it reports what is in use, not what is installed.
"""
from __future__ import annotations

import ctypes
import importlib
import os
import pkgutil
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from typing import Any, Dict, List, Optional

from sparselm import threads

#: Substrings of a library's file name that mark a BLAS/LAPACK implementation.
_BLAS_NAME = re.compile(r"(libblas|libcblas|liblapack|openblas|libmkl|libblis|libatlas|libsatlas|libtatlas|"
                        r"flexiblas|libaccelerate)", re.IGNORECASE)

REFERENCE_BLAS_WARNING = (
    "CHOLMOD uses the reference (netlib) BLAS {path}: its supernodal factorization is about 10x slower "
    "than with OpenBLAS. Install libopenblas0-pthread and select it with "
    "`update-alternatives --config libblas.so.3-{multiarch}` (and liblapack.so.3-{multiarch}).")


# ---------------------------------------------------------------------------------------------
# Small helpers

def _run(args: List[str], timeout: float = 10.0) -> Optional[str]:
    """stdout of a command, or None if it is missing, fails or times out."""
    if shutil.which(args[0]) is None:
        return None
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False,
                             env=dict(os.environ, LC_ALL="C"))
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _multiarch() -> str:
    """The Debian multiarch triplet, e.g. x86_64-linux-gnu."""
    return sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"


def mapped_libraries() -> List[str]:
    """Paths of the shared libraries mapped into this process, sorted (see sparselm.threads)."""
    return threads.mapped_libraries()


def _blas_kind(path: str) -> str:
    """What implementation a BLAS/LAPACK library file is, from its (resolved) path."""
    p = os.path.realpath(path).lower()
    name = os.path.basename(p)
    if "openblas" in p:
        return "openblas"
    if "mkl" in name:
        return "mkl"
    if "blis" in name:
        return "blis"
    if "atlas" in p:
        return "atlas"
    if "flexiblas" in p:
        return "flexiblas"
    if "accelerate" in p:
        return "accelerate"
    # Debian/Ubuntu install the netlib reference BLAS/LAPACK as .../blas/libblas.so.3 and
    # .../lapack/liblapack.so.3; Fedora as plain libblas.so.3 (also reference).
    if re.match(r"lib(c?blas|lapack)\.so", name):
        return "reference"
    return "unknown"


def _in_python_tree(path: str) -> bool:
    """True for libraries shipped inside a Python environment (numpy.libs, scipy.libs, ...)."""
    return "site-packages" in path or "dist-packages" in path or ".libs/" in path


def _openblas_probe(path: str) -> Dict[str, object]:
    """Version string and thread count of an already loaded OpenBLAS (any symbol prefix/suffix)."""
    out: Dict[str, object] = {}
    try:
        lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_GLOBAL)
    except OSError:
        return out
    for prefix in ("openblas", "scipy_openblas"):
        for suffix in ("", "64_"):
            conf = getattr(lib, f"{prefix}_get_config{suffix}", None)
            if conf is not None and "config" not in out:
                conf.restype = ctypes.c_char_p
                try:
                    out["config"] = conf().decode(errors="replace").strip()
                except Exception:  # pragma: no cover - exotic builds
                    pass
            nt = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            if nt is not None and "threads" not in out:
                nt.restype = ctypes.c_int
                try:
                    out["threads"] = int(nt())
                except Exception:  # pragma: no cover
                    pass
    return out


def _mkl_threads(path: str) -> Optional[int]:
    try:
        lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_GLOBAL)
        f = lib.MKL_Get_Max_Threads
    except (OSError, AttributeError):
        return None
    f.restype = ctypes.c_int
    return int(f())


def _describe_library(path: str) -> Dict[str, object]:
    kind = _blas_kind(path)
    d: Dict[str, object] = {"path": path, "resolved": os.path.realpath(path), "kind": kind,
                            "bundled_with_python_package": _in_python_tree(path)}
    if kind == "openblas":
        d.update(_openblas_probe(path))
    elif kind == "mkl":
        t = _mkl_threads(path)
        if t is not None:
            d["threads"] = t
    elif kind == "reference":
        d["threads"] = 1
    return d


def _ldd_resolution(library: str) -> Dict[str, str]:
    """{soname: path} of a library's dependencies as the dynamic loader resolves them (ldd)."""
    out = _run(["ldd", library])
    deps: Dict[str, str] = {}
    if out:
        for line in out.splitlines():
            m = re.match(r"\s*(\S+)\s+=>\s+(/\S+)", line)
            if m:
                deps[m.group(1)] = m.group(2)
    return deps


def _alternative(name: str) -> Optional[Dict[str, object]]:
    """The update-alternatives choice for ``name`` (Debian), or None where there is none."""
    out = _run(["update-alternatives", "--query", name])
    if not out:
        return None
    d: Dict[str, object] = {"name": name, "alternatives": []}
    for line in out.splitlines():
        if line.startswith("Value:"):
            d["value"] = line.split(":", 1)[1].strip()
        elif line.startswith("Status:"):
            d["status"] = line.split(":", 1)[1].strip()
        elif line.startswith("Alternative:"):
            d["alternatives"].append(line.split(":", 1)[1].strip())
    if "value" in d:
        d["kind"] = _blas_kind(str(d["value"]))
    return d


# ---------------------------------------------------------------------------------------------
# BLAS

def blas_info(load_cholmod: bool = True) -> Dict[str, object]:
    """Which BLAS CHOLMOD and numpy use in this process, their thread counts, and warnings.

    Returns a dict with
      ``cholmod``: {library (libcholmod path), blas (the libblas it resolves to), lapack, kind,
                    threads, config} or None when CHOLMOD could not be loaded;
      ``numpy``: numpy's build-time BLAS (``numpy.show_config``) and its loaded library;
      ``loaded``: every BLAS/LAPACK library mapped into the process (path, kind, threads, ...);
      ``alternatives``: Debian's update-alternatives choice for libblas.so.3 and liblapack.so.3;
      ``threadpoolctl``: its report when that package is installed (it is not a dependency);
      ``warnings``: human-readable strings, e.g. for the reference BLAS under CHOLMOD.
    """
    info: Dict[str, object] = {"cholmod": None, "numpy": None, "loaded": [], "alternatives": {},
                               "threadpoolctl": None, "warnings": []}
    warnings: List[str] = []
    info["warnings"] = warnings
    cholmod_error = None
    if load_cholmod:
        try:
            from sparselm.linalg.cholmod import extension_path

            extension_path()
        except Exception as exc:  # noqa: BLE001 - report, never raise
            cholmod_error = f"{type(exc).__name__}: {exc}"
    libs = mapped_libraries()
    blas_libs = [p for p in libs if _BLAS_NAME.search(os.path.basename(p))]
    info["loaded"] = [_describe_library(p) for p in blas_libs]
    by_path = {d["path"]: d for d in info["loaded"]}  # type: ignore[index]

    cholmod_lib = next((p for p in libs if re.search(r"libcholmod\.so", os.path.basename(p))), None)
    if cholmod_lib is not None:
        deps = _ldd_resolution(cholmod_lib)
        system_blas = [p for p in blas_libs if not _in_python_tree(p)]

        def pick(prefixes) -> Optional[str]:
            """The first dependency (in order of ``prefixes``) of libcholmod, as mapped in this process."""
            for prefix in prefixes:
                for so, path in deps.items():
                    if so.startswith(prefix):
                        real = os.path.realpath(path)
                        for p in system_blas:  # the copy the loader actually mapped, if any
                            if os.path.realpath(p) == real:
                                return p
                        return real
            for prefix in prefixes:  # no ldd: a system library mapped under that name
                for p in system_blas:
                    if os.path.basename(p).startswith(prefix):
                        return p
            return None

        # Debian links libblas.so.3 (an alternative); other builds link an implementation directly
        blas = pick(("libblas", "libcblas", "libopenblas", "libmkl_rt", "libblis", "libflexiblas"))
        lapack = pick(("liblapack",))
        d: Dict[str, object] = {"library": cholmod_lib, "blas": blas, "lapack": lapack,
                                "kind": _blas_kind(blas) if blas else "unknown"}
        # The thread count and version live in the implementation library (Debian's OpenBLAS
        # libblas.so.3 is a thin wrapper that loads libopenblasp-r*.so).
        if blas:
            desc = by_path.get(blas) or _describe_library(blas)
            if d["kind"] == "openblas" and "threads" not in desc:
                impl = next((by_path[p] for p in system_blas if "libopenblas" in os.path.basename(p)
                             and "threads" in by_path[p]), None)
                if impl:
                    desc = dict(desc, threads=impl["threads"], config=impl.get("config"))
            for k in ("threads", "config"):
                if desc.get(k) is not None:
                    d[k] = desc[k]
        info["cholmod"] = d
        if d["kind"] == "reference":
            warnings.append(REFERENCE_BLAS_WARNING.format(path=blas, multiarch=_multiarch()))
        elif d["kind"] == "unknown":
            warnings.append(f"could not tell which BLAS CHOLMOD uses (libblas resolved to {blas})")
    elif cholmod_error is not None:
        warnings.append(f"CHOLMOD (scikit-sparse) could not be loaded: {cholmod_error}")

    try:
        import numpy

        cfg = numpy.show_config(mode="dicts")
        dep = cfg.get("Build Dependencies", {}).get("blas", {})
        loaded = [p for p in blas_libs if "numpy" in p]
        numpy_info: Dict[str, object] = {"name": dep.get("name", "unknown"), "version": dep.get("version", "unknown"),
                                         "config": dep.get("openblas configuration", "")}
        if loaded:
            numpy_info["library"] = loaded[0]
            if "threads" in by_path[loaded[0]]:
                numpy_info["threads"] = by_path[loaded[0]]["threads"]
        info["numpy"] = numpy_info
    except Exception as exc:  # noqa: BLE001 - numpy < 1.25 has no mode="dicts"
        info["numpy"] = {"name": "unknown", "version": "unknown", "config": f"show_config failed: {exc}"}

    arch = _multiarch()
    for name in (f"libblas.so.3-{arch}", f"liblapack.so.3-{arch}"):
        alt = _alternative(name)
        if alt is not None:
            info["alternatives"][name] = alt  # type: ignore[index]

    try:
        import threadpoolctl  # optional; not a dependency

        info["threadpoolctl"] = [{k: v for k, v in d.items() if isinstance(v, (str, int, float, bool, type(None)))}
                                 for d in threadpoolctl.threadpool_info()]
    except ImportError:
        pass
    except Exception as exc:  # noqa: BLE001
        info["threadpoolctl"] = [{"error": str(exc)}]

    chol = info["cholmod"]
    if isinstance(chol, dict) and isinstance(chol.get("threads"), int) and chol["threads"] > 1:
        try:
            import numba

            if numba.get_num_threads() > 1:
                warnings.append(f"CHOLMOD's BLAS runs {chol['threads']} threads alongside {numba.get_num_threads()} "
                                "numba workers; they compete for the cores (set OPENBLAS_NUM_THREADS=1 before "
                                "importing sparselm, its default)")
        except ImportError:  # pragma: no cover
            pass
    return info


def blas_summary(info: Optional[Dict[str, object]] = None) -> str:
    """One line naming CHOLMOD's BLAS, e.g. ``openblas (OpenBLAS 0.3.21 ...) 1 thread, /usr/lib/...``."""
    info = blas_info() if info is None else info
    chol = info.get("cholmod")
    if not isinstance(chol, dict):
        return "unknown (CHOLMOD not loaded)"
    parts = [str(chol.get("kind", "unknown"))]
    if chol.get("config"):
        parts.append(f"({chol['config']})")
    if chol.get("threads") is not None:
        parts.append(f"{chol['threads']} thread{'s' if chol['threads'] != 1 else ''}")
    parts.append(str(chol.get("blas")))
    return " ".join(parts)


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
        lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_GLOBAL)
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
        dpkg = _run(["dpkg-query", "-W", "-f", "${Version}", "libsuitesparse-dev"])
        out["suitesparse"] = dpkg.strip() if dpkg else None
    return out


# ---------------------------------------------------------------------------------------------
# numba's on-disk cache

def _cached_dispatchers():
    """(qualified name, dispatcher) of every module-level numba kernel of sparselm with cache=True."""
    import numba
    from numba.core.dispatcher import Dispatcher

    import sparselm

    del numba
    found = []
    skip = ("sparselm.cli", "sparselm.profile_cli", "sparselm.profile_plots")
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

