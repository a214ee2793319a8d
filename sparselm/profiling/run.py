"""Where a solve spends its time and memory, and why: ``profile(problem) -> Profile``.

A profile solves the problem once (``iterations`` LM iterations at most) and reports, next to the
solver's own :class:`~sparselm.lm.summary.Summary`:

* problem sizes and sparsity: nnz of J, of lower(H) (the normal matrix J^T J) and, when a group is
  eliminated, of lower(S) (the reduced camera matrix of the Schur complement);
* the Cholesky factor of the matrix the solver factors (S for the Schur solvers, H otherwise), as
  CHOLMOD's analysis gives it for the solver's ordering: nnz(L), fill-in nnz(L)/nnz(lower), flops,
  supernodal or simplicial, ordering + symbolic analysis time, numeric factorization time; and the
  same for each ordering in ``orderings`` (a comparison; the best is the one with the least fill);
* for bundle-adjustment-like problems, the co-visibility graph of the kept blocks (cameras): two
  cameras are adjacent when they see a common point;
* time per phase per iteration from the Summary, with model flop counts where the work is known
  from the structure alone, and the JIT cost measured separately;
* peak memory and the size of the big arrays; the BLAS library CHOLMOD uses, thread counts.

Honesty notes, repeated in the report:

* The orderings and factor statistics are computed on a matrix with the exact sparsity pattern of
  lower(S) (or lower(H)) and diagonally dominant values (so it is positive definite). CHOLMOD's
  ordering, symbolic analysis, nnz(L) and flop count depend on the pattern only, and so does the
  work of a numeric factorization, so these numbers are those of the solver's own matrix.
* "jit" is the extra time of a first one-iteration solve over an identical second one, in this
  process: numba compiling the kernels when its on-disk cache is cold, or loading them from the
  cache when it is warm (``jit.disk_cache_warm_before`` says which). ``cold_jit=True`` also times
  a tiny bundle-adjustment solve in a fresh Python with an empty numba cache: the true compile time.
* Model flops count multiply-adds as 2 flops and follow the math (e.g. one kf x kf update of S per
  pair of cameras that share a point), not the exact instruction stream of the kernels.
"""
from __future__ import annotations

import math
import os
import resource
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

import sparselm
from sparselm.bal.io import BALProblem
from sparselm.bal.problem import build_problem
from sparselm.bal.registry import resolve
from sparselm.formats import detect_format
from sparselm.bal.synthetic import default_problem
from sparselm.core.layout import build_layout
from sparselm.core.problem import Problem
from sparselm.linalg import registry
from sparselm.linalg.base import StructureCounts
from sparselm.linalg.cholmod import available_orderings
from sparselm.lm.options import SolverOptions
from sparselm.profiling import doctor as diagnostics
from sparselm.profiling.blas import blas_info, blas_summary
from sparselm.profiling.jit import kernels_compiled, measure_cold_jit, numba_cache_status
from sparselm.profiling.result import Profile
from sparselm.profiling.structure import analyse_factor, scalar_lower, structure_counts
from sparselm.util.threads import one_solve_at_a_time

DEFAULT_ITERATIONS = 10
DEFAULT_ORDERINGS = ("amd", "metis", "nesdis", "natural")
#: phases in the order they occur in an iteration; others found in a Summary follow them.
PHASE_ORDER = ("residual", "jacobian", "gradient", "assembly", "schur_complement", "elimination", "preconditioner",
               "factorization", "solve", "cg", "back_substitution")
#: the natural ordering is not compared on matrices with more columns (its fill is unbounded: up to a
#: dense factor, n^3/3 flops); it is still used when asked for as the solver's ordering.
NATURAL_MAX_COLUMNS = 2500


# ---------------------------------------------------------------------------------------------
# Loading

def load_problem(problem_or_path=None) -> Tuple[Problem, str]:
    """(Problem, description) from a Problem, a BALProblem, a file of any registered format (BAL,
    g2o, see :mod:`sparselm.formats`) or a BAL registry name, or None (the built-in synthetic problem
    ``sparselm.bal.synthetic.default_problem()``)."""
    if isinstance(problem_or_path, Problem):
        return problem_or_path, "Problem"
    if problem_or_path is None:
        bal = default_problem()
        return build_ba_problem(bal), bal.source
    if isinstance(problem_or_path, BALProblem):
        return build_ba_problem(problem_or_path), problem_or_path.source or "BALProblem"
    if isinstance(problem_or_path, (str, os.PathLike)):
        path = resolve(problem_or_path)
        fmt = detect_format(path)
        return fmt.build(fmt.read(path)), str(path)
    raise TypeError(f"profile: expected a Problem, a BALProblem, a path or a BAL problem name, "
                    f"got {type(problem_or_path).__name__}")


def build_ba_problem(bal) -> Problem:
    """The bundle-adjustment Problem of a BALProblem (``sparselm.bal.problem.build_problem``)."""
    return build_problem(bal)


# ---------------------------------------------------------------------------------------------
# Memory and timing helpers

def _status_bytes(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (VmHWM, else getrusage)."""
    hwm = _status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * (1 if sys.platform == "darwin" else 1024)


def rss_bytes() -> int:
    """Current resident set size of this process (VmRSS, else the peak)."""
    v = _status_bytes("VmRSS")
    return v if v is not None else peak_rss_bytes()


def _reset_values(problem: Problem, values: Dict[str, np.ndarray]) -> None:
    for name, g in problem.parameter_groups.items():
        g.values[...] = values[name]


# ---------------------------------------------------------------------------------------------
# profile()

@one_solve_at_a_time
def profile(problem_or_path=None, linear_solver: str = "auto", iterations: int = DEFAULT_ITERATIONS,
            orderings: Sequence[str] = DEFAULT_ORDERINGS, *, jit: bool = True, cold_jit: bool = False,
            factorization_repeats: int = 3, **options) -> Profile:
    """Solve ``problem_or_path`` for at most ``iterations`` LM iterations and profile it.

    problem_or_path  a Problem (solved in place), a BALProblem, a BAL file path or registry name
                     (``sparselm.bal.registry.resolve``), or None for the built-in synthetic problem.
    linear_solver    as in :class:`~sparselm.SolverOptions` ('auto' resolves as solve() does).
    orderings        CHOLMOD orderings to compare on the factored matrix (unavailable ones skipped).
    jit              measure the first-call (JIT) overhead with two extra one-iteration solves.
    cold_jit         also time compiling the kernels from an empty numba cache, in a subprocess.
    options          other SolverOptions (ordering, factorization, threads, tolerances, ...).
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    options = dict(options)
    options.setdefault("verbose", False)
    SolverOptions.from_kwargs(linear_solver=linear_solver, max_iterations=iterations, **options)  # validate early
    problem, source = load_problem(problem_or_path)
    warnings: List[str] = []
    rss_start = rss_bytes()

    cache_before = numba_cache_status()
    compiled_before = kernels_compiled(problem)

    layout = build_layout(problem)
    struct = structure_counts(problem, layout)
    sparsity, extra = struct["sparsity"], struct["extra"]
    initial = {name: g.values.copy() for name, g in problem.parameter_groups.items()}

    # JIT: a one-iteration solve twice; the difference is compile/cache-load cost.
    jit_info: Dict[str, Any] = {"measured": False}
    if jit:
        runs = []
        for _ in range(2):
            _reset_values(problem, initial)
            t0 = time.perf_counter()
            s = sparselm.solve(problem, linear_solver=linear_solver, max_iterations=1, **options)
            runs.append((time.perf_counter() - t0, s))
        (t_first, s_first), (t_second, s_second) = runs
        phase_excess = {}
        for name, ph in s_first.phases.items():
            warm = s_second.phases.get(name, {"seconds": 0.0})["seconds"]
            phase_excess[name] = max(0.0, ph["seconds"] - warm)
        n_cached, n_kernels = int(cache_before.get("kernels_warm", 0)), int(cache_before.get("kernels", 0))
        if compiled_before:
            what = ("little left to compile: the problem's residual kernels were already compiled in this "
                    "process (what remains is other kernels' first calls)")
        elif n_kernels and n_cached == n_kernels:
            what = "numba loading the kernels from its disk cache (every module-level kernel was cached)"
        elif n_cached:
            what = (f"numba loading {n_cached} cached kernels from disk and compiling the rest "
                    f"({n_kernels - n_cached} module-level kernels were not cached)")
        else:
            what = "numba compiling the kernels (its disk cache was cold)"
        jit_info = {
            "measured": True,
            "what": "extra time of a first 1-iteration solve over a second identical one in this process: " + what,
            "first_call_overhead_seconds": max(0.0, t_first - t_second),
            "first_solve_seconds": t_first, "warm_solve_seconds": t_second,
            "kernels_compiled_before": bool(compiled_before),
            "disk_cache_warm_before": bool(cache_before.get("warm", False)),
            "disk_cache_kernels_warm_before": int(cache_before.get("kernels_warm", 0)),
            "disk_cache_kernels": int(cache_before.get("kernels", 0)),
            "phase_overhead_seconds": phase_excess,
        }

    # The profiled solve.
    _reset_values(problem, initial)
    rss_before = rss_bytes()
    t0 = time.perf_counter()
    summary = sparselm.solve(problem, linear_solver=linear_solver, max_iterations=iterations, **options)
    wall = time.perf_counter() - t0
    rss_after = rss_bytes()
    solver_name = str(summary.options_used.get("linear_solver", linear_solver))
    info = dict(summary.linear_solver or {})
    blas = blas_info()  # after the solve: it sets BLAS threads at run time (threads.configure)
    warnings += blas.get("warnings", [])
    if not summary.ok:
        warnings.append(f"the solve ended with {summary.termination}: {summary.message}")
    if cold_jit:  # after the solve: it needs the solver 'auto' resolved to, and must not overlap it
        cold = measure_cold_jit(solver_name)
        jit_info["cold"] = cold
        if not cold.get("ok"):
            warnings.append(f"cold JIT measurement failed: {cold.get('message')}")

    # The factored matrix and its CHOLMOD analysis (solver's ordering), then the ordering comparison.
    spec = registry.get(solver_name)
    schur = spec.uses_schur and extra["n_f"] is not None
    if schur:
        n_f = extra["n_f"]
        matrix_name = "S"
        blk = extra["s_blk"]
        lower = scalar_lower(blk, layout.block_col[:n_f], layout.block_size[:n_f])
        nnz_lower = sparsity["reduced_nnz_lower"]
    else:
        matrix_name = "H"
        blk = extra["h_blk"]
        lower = scalar_lower(blk, layout.block_col, layout.block_size)
        nnz_lower = sparsity["normal_nnz_lower"]
    if lower.nnz != nnz_lower:  # both counted from the block pattern: a bug if they differ
        warnings.append(f"internal: nnz(lower {matrix_name}) {lower.nnz} != {nnz_lower}")
    solver_nnz_key = "nnz_lower_S" if schur else "nnz_lower"
    if solver_nnz_key in info and int(info[solver_nnz_key]) != lower.nnz:
        warnings.append(f"the solver reports nnz(lower {matrix_name}) = {info[solver_nnz_key]}, the profile counts "
                        f"{lower.nnz}")
    defaults = SolverOptions()
    ordering = str(options.get("ordering", defaults.ordering))
    mode = str(options.get("factorization", defaults.factorization))
    available = available_orderings()
    analyse_factor(lower, ordering, mode, 1)  # warm-up: the first factorization in a process pays for page faults
    main = analyse_factor(lower, ordering, mode, factorization_repeats)
    factorization = {"matrix": matrix_name, "columns": int(lower.shape[0]), "nnz_lower": int(lower.nnz),
                     "ordering": ordering, "mode": mode, "solver": solver_name,
                     "solver_uses_cholmod": spec.uses_cholmod, **{k: v for k, v in main.items()
                                                                                if k != "ordering"}}
    if "factor_nnz" in info:
        factorization["solver_factor_nnz"] = int(info["factor_nnz"])
        if int(info["factor_nnz"]) != main.get("nnz_L"):
            warnings.append(f"nnz(L) of the solver's factor ({info['factor_nnz']}) differs from the profile's "
                            f"analysis ({main.get('nnz_L')})")
    if "analysis_seconds" in info:
        factorization["solver_analysis_seconds"] = float(info["analysis_seconds"])
    comparison = []
    for o in orderings:
        if o not in available:
            comparison.append({"ordering": o, "ok": False, "available": False,
                               "note": "not available in this CHOLMOD build"})
            continue
        if o == "natural" and o != ordering and lower.shape[0] > NATURAL_MAX_COLUMNS:
            comparison.append({"ordering": o, "ok": False, "available": True,
                               "note": f"skipped: more than {NATURAL_MAX_COLUMNS} columns, and without a "
                                       f"fill-reducing ordering the factor can be dense"})
            continue
        d = main if o == ordering else analyse_factor(lower, o, mode, factorization_repeats)
        comparison.append(dict(d, ordering=o, available=True, note="" if d.get("ok") else "factorization failed"))
    good = [d for d in comparison if d.get("ok")]
    # least fill; on a tie the ordering in use, then the faster factorization
    best = min(good, key=lambda d: (d["nnz_L"], d["ordering"] != ordering, d["factorization_seconds"]))["ordering"] \
        if good else ordering
    fastest = min(good, key=lambda d: d["factorization_seconds"])["ordering"] if good else ordering
    if good and best != ordering:
        ratio = main["nnz_L"] / next(d for d in good if d["ordering"] == best)["nnz_L"] if main.get("ok") else 1.0
        if ratio > 1.05:
            warnings.append(f"ordering {best!r} gives {ratio:.2f}x less fill than {ordering!r} on lower({matrix_name})")

    # Phases per iteration and model flops.
    n_iter = max(1, summary.n_iterations)
    phases: Dict[str, Dict[str, Any]] = {}
    names = [p for p in PHASE_ORDER if p in summary.phases] + \
            [p for p in summary.phases if p not in PHASE_ORDER and p != "symbolic"]
    loop_time = max(0.0, summary.total_time_s - summary.setup_time_s)
    for name in names:
        ph = summary.phases[name]
        phases[name] = {"seconds": float(ph["seconds"]), "calls": int(ph["calls"]),
                        "seconds_per_iteration": float(ph["seconds"]) / n_iter,
                        "seconds_per_call": float(ph["seconds"]) / max(1, int(ph["calls"])),
                        "share": float(ph["seconds"]) / loop_time if loop_time > 0 else 0.0}
    other = max(0.0, loop_time - sum(p["seconds"] for p in phases.values()))
    ok = bool(main.get("ok"))
    counts = StructureCounts(columns=int(lower.shape[0]), factor_flops=float(main["flops"]) if ok else None,
                             factor_nnz=int(main["nnz_L"]) if ok else None, gradient=extra["flops_gradient"],
                             assembly=extra["flops_assembly"], **({k: int(extra[k]) for k in ("kf", "ke", "n_cells",
                                                                                               "n_pairs", "n_e")}
                                                                  if schur else {}))
    flops = {"gradient": extra["flops_gradient"], **spec.model_flops(counts)}
    flop_estimates = {}
    for name, per_call in flops.items():
        if name in phases:
            total = per_call * phases[name]["calls"]
            sec = phases[name]["seconds"]
            flop_estimates[name] = {"flops_per_call": float(per_call), "flops": float(total),
                                    "gflop_per_s": float(total / sec / 1e9) if sec > 0 else 0.0}
    time_dominant = max(phases, key=lambda p: phases[p]["seconds"]) if phases else "none"
    flop_dominant = max(flop_estimates, key=lambda p: flop_estimates[p]["flops"]) if flop_estimates else "none"

    records = summary.iterations
    if not jit and not compiled_before:
        warnings.append("jit=False and the kernels were not compiled in this process yet: the phase times "
                        "include numba's first-call (compile or cache-load) cost")
    solve_info = {
        "linear_solver": solver_name, "termination": summary.termination, "message": summary.message,
        "iterations": int(summary.n_iterations), "max_iterations": int(iterations),
        "successful_steps": int(summary.successful_steps), "unsuccessful_steps": int(summary.unsuccessful_steps),
        "linear_solver_iterations": int(sum(r.linear_solver_iterations for r in records)),
        "initial_cost": float(summary.initial_cost) if math.isfinite(summary.initial_cost) else 0.0,
        "final_cost": float(summary.final_cost) if math.isfinite(summary.final_cost) else 0.0,
        "final_gradient_max_norm": float(records[-1].gradient_max_norm) if records else 0.0,
        "total_seconds": float(summary.total_time_s), "setup_seconds": float(summary.setup_time_s),
        "symbolic_seconds": float(summary.phases.get("symbolic", {}).get("seconds", 0.0)),
        "loop_seconds": float(loop_time), "other_seconds": float(other),
        "seconds_per_iteration": float(loop_time / n_iter), "wall_seconds": float(wall),
    }

    # Memory.
    memory = {
        "peak_rss_bytes": int(peak_rss_bytes()), "rss_at_start_bytes": int(rss_start),
        "rss_before_solve_bytes": int(rss_before), "rss_after_solve_bytes": int(rss_after),
        "jacobian_values_bytes": int(extra["jacobian_bytes"]), "residual_values_bytes": int(extra["residual_bytes"]),
        "matrix": matrix_name, "matrix_values_bytes": int(nnz_lower * 8),
        "factor_values_bytes": int(main.get("nnz_L", 0) * 8),
    }
    if spec.dense_factor:
        memory["dense_matrix_bytes"] = int(lower.shape[0]) ** 2 * 8

    # Per-observation errors (residual types with an observation_error, e.g. BA reprojection pixels).
    reprojection = None
    observed = observation_group(problem)
    if observed is not None:
        before = observation_errors(problem, observed, initial)
        after = observation_errors(problem, observed, None)
        reprojection = {"residual_group": observed.name, "observations": int(before.size),
                        "before": _error_stats(before), "after": _error_stats(after)}

    threads_info = {k: ("" if v is None else v) for k, v in diagnostics.thread_info().items()}  # "": unset
    chol = blas.get("cholmod") or {}
    threads_info["cholmod_blas_threads"] = int(chol.get("threads", 0) or 0)
    threads_info["solver_threads"] = int(summary.options_used.get("threads") or threads_info["numba_threads"])
    blas_out = {"cholmod_blas": str(chol.get("blas") or "unknown"),
                "cholmod_blas_kind": str(chol.get("kind", "unknown")),
                "cholmod_blas_config": str(chol.get("config") or ""),
                "numpy_blas": str((blas.get("numpy") or {}).get("name", "unknown")),
                "numpy_blas_version": str((blas.get("numpy") or {}).get("version", "unknown")),
                "reference_blas": chol.get("kind") == "reference", "summary": blas_summary(blas)}
    environment = {"versions": {k: (v if v is not None else "not installed")
                                for k, v in diagnostics.versions().items()},
                   "cpu": diagnostics.cpu_info(),
                   "numba_cache": {k: v for k, v in cache_before.items()
                                   if k in ("warm", "kernels", "kernels_warm", "cache_dirs")}}
    problem_info = _problem_sizes(problem, layout)
    return Profile(
        source=str(source), problem=problem_info, sparsity=sparsity, factorization=factorization,
        orderings=comparison, best_ordering=best, fastest_ordering=fastest,
        covisibility=extra.get("covisibility"), solve=solve_info, phases=phases, flop_estimates=flop_estimates,
        time_dominant_phase=time_dominant, flop_dominant_phase=flop_dominant, jit=jit_info, memory=memory,
        reprojection=reprojection, blas=blas_out, threads=threads_info, environment=environment,
        warnings=warnings, summary=summary, problem_object=problem, initial_values=initial,
        factored_matrix=lower, block_pattern=blk.tocsr())


def _problem_sizes(problem: Problem, layout) -> Dict[str, Any]:
    sizes = problem.sizes()
    return {
        "parameter_groups": {name: {"blocks": int(g["blocks"]), "block_size": int(g["block_size"]),
                                    "constant_blocks": int(g["constant_blocks"]), "eliminate": bool(g["eliminate"])}
                             for name, g in sizes["parameter_groups"].items()},
        "residual_groups": {name: {"blocks": int(r["blocks"]), "residual_size": int(r["residual_size"]),
                                   "type": str(r["type"]), "loss": str(r["loss"])}
                            for name, r in sizes["residual_groups"].items()},
        "parameter_blocks": int(sum(g.n_blocks for g in problem.parameter_groups.values())),
        "residual_blocks": int(sum(r.n_instances for r in problem.residual_groups)),
        "parameters": int(sizes["parameters"]), "free_parameters": int(layout.n_columns),
        "residuals": int(sizes["residuals"]),
    }


# ---------------------------------------------------------------------------------------------
# Bundle adjustment extras

def observation_group(problem: Problem):
    """The first residual group whose type measures a per-observation error (``observation_error``,
    e.g. the BAL reprojection in pixels), or None."""
    return next((rg for rg in problem.residual_groups if rg.residual_type.observation_error is not None), None)


def observation_errors(problem: Problem, rg, values: Optional[Dict[str, np.ndarray]]) -> np.ndarray:
    """The per-observation errors of residual group ``rg`` at ``values`` (None: the problem's current)."""
    slot_values = tuple(problem.parameter_groups[g].values if values is None else values[g] for g in rg.groups)
    return rg.residual_type.observation_error(slot_values, rg.index, rg.data)


def reprojection_errors(profile_: Profile, which: str = "after") -> Optional[np.ndarray]:
    """Per-observation errors (pixels for BA) of a profiled problem ``before`` or ``after`` the solve
    (None when no residual type measures one)."""
    problem = profile_.problem_object
    rg = observation_group(problem) if problem is not None else None
    if rg is None:
        return None
    return observation_errors(problem, rg, profile_.initial_values if which == "before" else None)


def _error_stats(e: np.ndarray) -> Dict[str, float]:
    e = e[np.isfinite(e)]
    if e.size == 0:
        return {"mean": 0.0, "median": 0.0, "rms": 0.0, "p90": 0.0, "max": 0.0}
    return {"mean": float(e.mean()), "median": float(np.median(e)), "rms": float(np.sqrt(np.mean(e * e))),
            "p90": float(np.percentile(e, 90)), "max": float(e.max())}
