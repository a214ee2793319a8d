"""Shared helpers of the sparselm benchmarks: subprocess runs, warm-up, per-phase times, reports.

Measurement policy
------------------
* Every measurement runs in a fresh Python process (:func:`run_worker`): the peak resident memory
  reported is that run's own, nothing compiled or cached by an earlier run leaks into it, and one
  run that crashes or is killed (time limit) does not take the others with it.
* numba kernels are compiled on first use (``cache=True``: later processes load them from disk).
  A worker first solves a *tiny* problem with the same linear solver (:func:`warm_up`; its wall time
  is recorded as ``warmup_s``, "JIT + first solve"), so the measured solve is warm. The JIT cost
  proper is measured separately (:func:`jit_worker`): the first tiny solve in a fresh process with an
  EMPTY numba cache (``NUMBA_CACHE_DIR`` = a new temporary folder) against the same with that
  folder already filled (cache hit) and against a second, warm solve in the same process.
* Peak memory: ``VmHWM`` (the kernel's resident high-water mark) is reset just before the measured
  solve (``echo 5 > /proc/self/clear_refs``) and read after it, so ``solve_peak_rss_mb`` is the peak
  during the solve (problem arrays included, since they are resident); ``process_peak_rss_mb`` is
  ``getrusage(RUSAGE_SELF).ru_maxrss`` at the end (the whole process: loading, generating, warm-up).
* Per-iteration figures: ``time_per_iter_s`` = (total time at the last iteration - total time at
  iteration 0) / LM iterations, i.e. without setup and without the first linearisation; phase
  times per iteration = ``Summary.phases[p].seconds`` / LM iterations (``symbolic`` is setup and
  left out; the initial linearisation's jacobian/assembly call is included).
* Time to a cost: the first cumulative time (from the start of the solve call, setup included)
  of an iteration whose cost is <= the target (:func:`time_to_cost`).
* The load average (``os.getloadavg``) is recorded before and after every measurement; on a
  shared 2-core machine, timings taken under load are pessimistic.
"""
from __future__ import annotations

import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

# One thread policy for every process of a benchmark (sparselm, scipy and Ceres workers alike), set
# before numpy or any BLAS loads: single-threaded BLAS, numba's TBB layer (workqueue where TBB's runtime
# does not load; sparselm's own defaults, see sparselm.util.threads). The variables are inherited by the
# worker processes; a value already in the environment is kept.
_t_import = time.perf_counter()
from sparselm.util.threads import DEFAULTS as _THREAD_DEFAULTS  # noqa: E402  (sparselm sets the env before numpy)

#: wall time of this process's first ``import sparselm`` (the package, numpy, scipy, numba)
SPARSELM_IMPORT_S = time.perf_counter() - _t_import

for _k, _v in _THREAD_DEFAULTS.items():
    os.environ.setdefault(_k, _v)


# ---------------------------------------------------------------------------------------------
# Data

def data_dir() -> Path:
    """Where the real BAL files are: $SPARSELM_DATA, else ../shared/bal beside the repository."""
    env = os.environ.get("SPARSELM_DATA")
    return Path(env) if env else (REPO.parent / "shared" / "bal").resolve()


# ---------------------------------------------------------------------------------------------
# Memory and load

def _status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> Optional[float]:
    """Current resident set size (VmRSS) in MiB."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def reset_peak_rss() -> bool:
    """Reset the resident high-water mark (VmHWM) of this process; False if the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> Optional[float]:
    """VmHWM (peak resident set since start or the last :func:`reset_peak_rss`) in MiB."""
    kb = _status_kb("VmHWM")
    return None if kb is None else kb / 1024.0


def process_peak_rss_mb() -> float:
    """getrusage(RUSAGE_SELF).ru_maxrss in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def loadavg() -> List[float]:
    """The 1, 5 and 15 minute load averages."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def _cpu_times():
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(v) for v in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    return sum(vals[:8]), idle


def busy_cpus(interval: float = 1.0) -> Optional[float]:
    """How many CPUs were busy (all processes) during the next ``interval`` seconds (/proc/stat)."""
    try:
        t0, i0 = _cpu_times()
        time.sleep(interval)
        t1, i1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    total = t1 - t0
    if total <= 0:
        return None
    return round((os.cpu_count() or 1) * (1.0 - (i1 - i0) / total), 2)


def wait_for_quiet(max_wait_s: float = 60.0, threshold: float = 0.35, interval: float = 1.0) -> dict:
    """Before a measurement: wait (at most ``max_wait_s``) until fewer than ``threshold`` CPUs are
    busy with other work. Returns {waited_s, busy_cpus (the last sample), quiet}."""
    t0 = time.perf_counter()
    busy = busy_cpus(interval)
    while busy is not None and busy > threshold and time.perf_counter() - t0 < max_wait_s:
        busy = busy_cpus(interval)
    return {"waited_s": round(time.perf_counter() - t0, 1), "busy_cpus_before": busy,
            "quiet": busy is not None and busy <= threshold}


class PeakMemory:
    """Context manager: resets VmHWM on entry; ``.baseline_mb``, ``.peak_mb`` afterwards."""

    def __enter__(self):
        self.reset = reset_peak_rss()
        self.baseline_mb = rss_mb()
        self.load_before = loadavg()
        return self

    def __exit__(self, *exc):
        self.peak_mb = peak_rss_mb() if self.reset else process_peak_rss_mb()
        self.load_after = loadavg()
        return False

    def as_dict(self) -> dict:
        return {"solve_peak_rss_mb": self.peak_mb, "rss_before_solve_mb": self.baseline_mb,
                "peak_is_per_solve": self.reset, "loadavg_before": self.load_before,
                "loadavg_after": self.load_after}


# ---------------------------------------------------------------------------------------------
# Environment

def _blas_from_maps() -> List[str]:
    """BLAS/LAPACK libraries mapped into this process."""
    from sparselm.util.threads import loaded_blas_libraries

    return loaded_blas_libraries()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(load_cholmod: bool = True) -> dict:
    """CPU, thread settings, versions and the BLAS actually mapped (CHOLMOD loaded first)."""
    import numba
    import numpy
    import scipy

    import sparselm

    env = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_total_gib": _meminfo_gib("MemTotal"),
        "memory_available_gib": _meminfo_gib("MemAvailable"),
        "loadavg": loadavg(),
        "python": platform.python_version(),
        "numpy": numpy.__version__, "scipy": scipy.__version__, "numba": numba.__version__,
        "sparselm": getattr(sparselm, "__version__", "?"),
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer_configured": str(numba.config.THREADING_LAYER),
        "thread_env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                      "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER",
                                                      "NUMBA_CACHE_DIR")},
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty_files": _git_dirty_count(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if load_cholmod:
        try:
            from sparselm.linalg.cholmod import extension_path

            extension_path()
        except Exception as exc:  # noqa: BLE001 - report, never raise
            env["cholmod_error"] = repr(exc)
    env["blas_mapped"] = _blas_from_maps()
    try:
        from sparselm.profiling import doctor as diagnostics

        env["blas"] = diagnostics.blas_summary(diagnostics.blas_info(load_cholmod=load_cholmod))
    except Exception as exc:  # noqa: BLE001
        env["blas"] = f"unknown ({exc!r})"
    return env


def _meminfo_gib(field: str) -> Optional[float]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git(*args) -> Optional[str]:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _git_dirty_count() -> Optional[int]:
    out = _git("status", "--porcelain")
    return None if out is None else len([l for l in out.splitlines() if l.strip()])


# ---------------------------------------------------------------------------------------------
# Subprocess runs

QUIET_WAIT_S = float(os.environ.get("SPARSELM_BENCH_QUIET_WAIT", "20"))


def run_worker(script: Path, spec: dict, *, timeout: float = 1800.0, env: Optional[Dict[str, str]] = None,
               echo: bool = True, quiet_wait_s: Optional[float] = None) -> dict:
    """Run ``python script --worker SPEC OUT`` in a fresh process; return the dict it wrote.

    On a crash, a time-out or a missing result, returns {"error": ..., "returncode": ...,
    "stderr_tail": ...} instead of raising. ``wall_s`` (the whole subprocess) is added.
    """
    wait = quiet_wait_s if quiet_wait_s is not None else QUIET_WAIT_S
    quiet = wait_for_quiet(wait) if wait > 0 else {"waited_s": 0.0, "busy_cpus_before": None, "quiet": None}
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONHASHSEED", "0")
    if env:
        full_env.update(env)
    with tempfile.TemporaryDirectory(prefix="sparselm-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, str(script), "--worker", str(spec_path), str(out_path)],
                                  env=full_env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        except subprocess.TimeoutExpired as exc:
            tail = (exc.stderr or b"")
            tail = tail.decode("utf-8", "replace") if isinstance(tail, bytes) else tail
            return {"error": f"timed out after {timeout:.0f} s", "returncode": None, "stderr_tail": tail[-3000:],
                    "wall_s": time.perf_counter() - t0, "spec": spec, "machine_before": quiet}
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not out_path.exists():
            return {"error": f"worker failed (exit {proc.returncode})", "returncode": proc.returncode,
                    "stderr_tail": proc.stderr[-3000:], "stdout_tail": proc.stdout[-1500:], "wall_s": wall,
                    "spec": spec, "machine_before": quiet}
        result = json.loads(out_path.read_text())
    result["wall_s"] = wall
    result["machine_before"] = quiet
    if echo and proc.stderr.strip():
        # warnings from the worker: keep them visible but short
        lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
        result.setdefault("stderr_tail", "\n".join(lines[-20:]))
    return result


def worker_main(handlers: Dict[str, Callable[[dict], dict]], argv: Sequence[str]) -> int:
    """Entry point of a worker process: ``--worker SPEC OUT``; dispatches on spec["task"]."""
    spec_path, out_path = argv[1], argv[2]
    spec = json.loads(Path(spec_path).read_text())
    t0 = time.perf_counter()
    result = handlers[spec["task"]](spec)
    result.setdefault("spec", spec)
    result["process"] = {"peak_rss_mb": process_peak_rss_mb(), "worker_s": time.perf_counter() - t0,
                         "loadavg_end": loadavg(), "pid": os.getpid()}
    Path(out_path).write_text(json.dumps(result, default=_json_default))
    return 0


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(o)


# ---------------------------------------------------------------------------------------------
# Warm-up and JIT

def tiny_ba_problem():
    """A tiny bundle-adjustment Problem (4 cameras, 60 points) for warm-up solves."""
    from sparselm.bal import build_problem, synthetic_problem

    return build_problem(synthetic_problem(4, 60, observations_per_point=3.0, seed=1).initial)


def tiny_ba_problems():
    """Tiny bundle-adjustment Problems for warm-up solves, one per branch of the ``auto`` choice that
    BAL problems take: 4 cameras (36 reduced columns: dense_schur at once) and 30 cameras (270: the
    factor estimate decides, which loads CHOLMOD and its numba kernels)."""
    from sparselm.bal import build_problem, synthetic_problem

    return [tiny_ba_problem(), build_problem(synthetic_problem(30, 90, observations_per_point=4.0, seed=2).initial)]


def warm_up(make_problem: Callable, linear_solver: str, threads: int, **options) -> float:
    """Solve a tiny problem once (compiling or loading the numba kernels; ``make_problem`` may also return a
    list of problems, each solved once); returns the wall time."""
    import sparselm

    t0 = time.perf_counter()
    made = make_problem()
    for problem in made if isinstance(made, list) else [made]:
        sparselm.solve(problem, linear_solver=linear_solver, threads=threads, max_iterations=3, **options)
    return time.perf_counter() - t0


def jit_worker(spec: dict, make_problem: Optional[Callable] = None) -> dict:
    """In a fresh process: time ``import sparselm``, then two tiny solves with spec["linear_solver"].

    The caller sets NUMBA_CACHE_DIR (empty: compile everything; filled: load from the cache)."""
    import_s = SPARSELM_IMPORT_S  # imported with this module, before numpy (thread policy)
    make = make_problem or tiny_ba_problem
    first = warm_up(make, spec["linear_solver"], spec.get("threads", 2))
    second = warm_up(make, spec["linear_solver"], spec.get("threads", 2))
    return {"import_s": import_s, "first_tiny_solve_s": first, "second_tiny_solve_s": second,
            "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"), "loadavg": loadavg()}


def measure_jit(script: Path, linear_solver: str, *, threads: int = 2, extra: Optional[dict] = None,
                timeout: float = 900.0) -> dict:
    """JIT cost of ``linear_solver``: a fresh process with an empty numba cache, then one with it filled.

    Returns {cold: worker result, warm_cache: worker result, jit_s: cold first - warm second
    solve (compile time), cache_load_s: warm-cache first - warm second solve}."""
    cache = tempfile.mkdtemp(prefix="sparselm-numba-cache-")
    try:
        spec = dict(extra or {}, task="jit", linear_solver=linear_solver, threads=threads)
        cold = run_worker(script, spec, timeout=timeout, env={"NUMBA_CACHE_DIR": cache})
        warm = run_worker(script, spec, timeout=timeout, env={"NUMBA_CACHE_DIR": cache})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    out = {"linear_solver": linear_solver, "cold": cold, "warm_cache": warm}
    if "error" not in cold and "error" not in warm:
        solve = min(cold["second_tiny_solve_s"], warm["second_tiny_solve_s"])
        out["jit_s"] = cold["first_tiny_solve_s"] - solve
        out["cache_load_s"] = warm["first_tiny_solve_s"] - solve
        out["import_cold_s"] = cold["import_s"]
        out["import_warm_s"] = warm["import_s"]
    return out


# ---------------------------------------------------------------------------------------------
# Summaries of solves

SETUP_PHASES = ("symbolic",)


def phases_per_iteration(phases: Dict[str, dict], n_iterations: int) -> Dict[str, float]:
    """{phase: milliseconds per LM iteration} from Summary.phases (setup phases left out)."""
    n = max(1, n_iterations)
    return {k: 1e3 * v["seconds"] / n for k, v in phases.items() if k not in SETUP_PHASES}


def summarize_solve(summary) -> dict:
    """The figures the benchmarks keep from a sparselm Summary."""
    its = summary.iterations
    n = summary.n_iterations
    t0 = its[0].total_time_s if its else math.nan
    t_last = its[-1].total_time_s if its else math.nan
    return {
        "termination": summary.termination,
        "message": summary.message,
        "initial_cost": summary.initial_cost,
        "final_cost": summary.final_cost,
        "iterations": n,
        "successful_steps": summary.successful_steps,
        "unsuccessful_steps": summary.unsuccessful_steps,
        "total_time_s": summary.total_time_s,
        "setup_time_s": summary.setup_time_s,
        "first_linearization_s": t0 - summary.setup_time_s if its else math.nan,
        "time_per_iter_s": (t_last - t0) / n if n else math.nan,
        "phases": summary.phases,
        "phase_ms_per_iter": phases_per_iteration(summary.phases, n),
        "setup_phases_s": {k: v["seconds"] for k, v in summary.phases.items() if k in SETUP_PHASES},
        "curve": [[r.total_time_s, r.cost] for r in its],
        # iteration, cost, tr_ratio, tr_radius, linear-solver iterations, iteration time, successful
        "iteration_log": [[r.iteration, r.cost, r.tr_ratio, r.tr_radius, r.linear_solver_iterations,
                           r.iteration_time_s, r.step_is_successful] for r in its],
        "linear_solver_iterations": sum(r.linear_solver_iterations for r in its),
        "linear_solver": summary.linear_solver,
        "options_used": {k: v for k, v in summary.options_used.items() if not callable(v)},
        "environment": summary.environment,
    }


def best_so_far(record) -> list:
    """[[t, cost], ...] keeping only the points where the cost improves on all earlier ones."""
    curve, best = [], math.inf
    for t, c in record:
        if c < best:
            best = c
            curve.append([t, c])
    return curve


def time_to_cost(curve: Iterable[Sequence[float]], target: float) -> Optional[float]:
    """First time t of a (t, cost) curve with cost <= target; None if never reached."""
    for t, c in curve:
        if c is not None and math.isfinite(c) and c <= target:
            return float(t)
    return None


def median_run(runs: List[dict], key: str = "total_time_s") -> dict:
    """The run whose ``key`` is the median (lower median for an even count)."""
    ok = sorted((r for r in runs if "error" not in r), key=lambda r: r[key])
    return ok[(len(ok) - 1) // 2] if ok else runs[0]


# ---------------------------------------------------------------------------------------------
# Output

def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(data), indent=1, default=_json_default))
    tmp.replace(path)
    return path


def write_text(name: str, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text)
    return path


def _clean(o):
    """NaN/Inf -> None, recursively (strict JSON)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def md_table(headers: Sequence[str], rows: Iterable[Sequence], align: Optional[str] = None) -> str:
    """A GitHub markdown table; ``align`` one char per column ('l' or 'r', default: l then r)."""
    headers = list(headers)
    align = align or ("l" + "r" * (len(headers) - 1))
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(sep) + "|"]
    for r in rows:
        lines.append("| " + " | ".join("" if v is None else str(v) for v in r) + " |")
    return "\n".join(lines)


def fmt(v, spec: str = ".3g", none: str = "–") -> str:
    """Format a number (None/NaN -> ``none``)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return none
    return format(v, spec)


def fmt_ms(seconds, digits: int = 1) -> str:
    return fmt(None if seconds is None else 1e3 * seconds, f".{digits}f")


def env_line(env: dict) -> str:
    """One line describing the machine for a report header."""
    te = env.get("thread_env", {})
    return (f"{env.get('cpu_model')} ({env.get('usable_cpus')} usable CPUs, {env.get('memory_total_gib')} GiB), "
            f"Python {env.get('python')}, numpy {env.get('numpy')}, scipy {env.get('scipy')}, numba "
            f"{env.get('numba')}; numba threads {env.get('numba_threads')} "
            f"(layer {te.get('NUMBA_THREADING_LAYER')}), OPENBLAS_NUM_THREADS={te.get('OPENBLAS_NUM_THREADS')}; "
            f"CHOLMOD BLAS: {env.get('blas')}; git {env.get('git_commit')} "
            f"(+{env.get('git_dirty_files')} uncommitted files)")


LOAD_NOTE = ("The machine has 2 cores and is shared: other engineers' tests may run during a measurement. "
             "Before each measurement the driver waits (at most 20 s) until less than 0.35 CPU is busy "
             "(/proc/stat); the busy CPUs then and the load average (1 min) before each solve are recorded "
             "in the JSON (*load* and *busy* columns). Timings taken under load are pessimistic, never "
             "optimistic: a load of 1 on 2 cores can double a 2-thread solve's time.")
