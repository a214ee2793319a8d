"""Which BLAS this process really runs on: the libraries mapped into it, their kind, version and
threads, and Debian's update-alternatives choice.

Used by :mod:`sparselm.profiling.doctor` and :mod:`sparselm.profiling.run`. Every function returns plain data
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
import os
import platform
import re
import shutil
import subprocess
import sysconfig
from typing import Dict, List, Optional

from sparselm.util import threads


#: Substrings of a library's file name that mark a BLAS/LAPACK implementation.
_BLAS_NAME = re.compile(r"(libblas|libcblas|liblapack|openblas|libmkl|libblis|libatlas|libsatlas|libtatlas|"
                        r"flexiblas|libaccelerate)", re.IGNORECASE)

REFERENCE_BLAS_WARNING = (
    "CHOLMOD uses the reference (netlib) BLAS {path}: its supernodal factorization is about 10x slower "
    "than with OpenBLAS. Install libopenblas0-pthread and select it with "
    "`update-alternatives --config libblas.so.3-{multiarch}` (and liblapack.so.3-{multiarch}).")


# ---------------------------------------------------------------------------------------------
# Small helpers

def run_command(args: List[str], timeout: float = 10.0) -> Optional[str]:
    """stdout of a command, or None if it is missing, fails or times out."""
    if shutil.which(args[0]) is None:
        return None
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False,
                             env=dict(os.environ, LC_ALL="C"))
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def multiarch() -> str:
    """The Debian multiarch triplet, e.g. x86_64-linux-gnu."""
    return sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"


def mapped_libraries() -> List[str]:
    """Paths of the shared libraries mapped into this process, sorted (see sparselm.util.threads)."""
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


def open_loaded(path: str) -> ctypes.CDLL:
    """A handle on an already loaded library (RTLD_NOLOAD; OSError if it is not loaded), local scope.

    Never RTLD_GLOBAL: that would promote the library and its dependencies to the global symbol scope,
    so that an extension loaded later binds to them. Promoting CHOLMOD made pymetis's METIS calls land
    in the system METIS that CHOLMOD links (another build: "Incorrect ufactor", then heap corruption)."""
    return ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0))


def _openblas_probe(path: str) -> Dict[str, object]:
    """Version string and thread count of an already loaded OpenBLAS (any symbol prefix/suffix)."""
    out: Dict[str, object] = {}
    try:
        lib = open_loaded(path)
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
        lib = open_loaded(path)
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
    out = run_command(["ldd", library])
    deps: Dict[str, str] = {}
    if out:
        for line in out.splitlines():
            m = re.match(r"\s*(\S+)\s+=>\s+(/\S+)", line)
            if m:
                deps[m.group(1)] = m.group(2)
    return deps


def _alternative(name: str) -> Optional[Dict[str, object]]:
    """The update-alternatives choice for ``name`` (Debian), or None where there is none."""
    out = run_command(["update-alternatives", "--query", name])
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
            warnings.append(REFERENCE_BLAS_WARNING.format(path=blas, multiarch=multiarch()))
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

    arch = multiarch()
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
