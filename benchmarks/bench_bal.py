"""Bundle-adjustment benchmark (issue 7): sparselm against Ceres 2.2 and scipy on BAL problems.

Problems: the real BAL files found in $SPARSELM_DATA (default ../shared/bal): problem-49-7776-pre,
problem-21-11315-pre, problem-16-22106-pre; and seeded synthetic problems
(:func:`sparselm.bal.synthetic_problem`, 4 observations per point) of about 10^5, 10^6 and 3*10^6
observations (100, 1000 and 3000 cameras).

Solvers: sparselm ``sparse_schur`` (main), ``dense_schur`` (reduced system <= 2000 columns),
``iterative_schur`` (when the installed sparselm has it), ``sparse_normal_cholesky`` (real problems
and 10^5 only); Ceres 2.2 SPARSE_SCHUR through pycolmap (:mod:`ceres_peer`, 2 threads); and
``scipy.optimize.least_squares`` (trf, tr_solver='lsmr', x_scale='jac', the analytic Jacobian of
sparselm's BAL kernel as a CSR matrix with a fixed pattern; real problems only, a wall-time guard).

All runs: max 50 iterations, function tolerance 1e-16 (as Ceres' bundle_adjuster example; they
stop on the parameter tolerance 1e-8 or the iteration limit), 2 threads, no loss. Each
(cost, elapsed) curve is recorded; the target of a problem is the best final cost over all solvers
run on it (Ceres included, except where it minimises another function, see below) times 1.001,
and each solver's time to reach it is read off its curve. Also: the default-tolerance solve
(function tolerance 1e-6) of problem-16-22106-pre, total solve time, for sparselm and Ceres.

Every measurement runs in its own process (see :mod:`common` for the warm-up, JIT, memory and
time definitions).

    python benchmarks/bench_bal.py            # everything (20-40 minutes on 2 cores)
    python benchmarks/bench_bal.py --quick    # problem-49 + problem-16 (default tol) + 10^5 synthetic
    python benchmarks/bench_bal.py --report   # rewrite bal.md and scaling.png from bal.json

Writes benchmarks/results/bal.json, bal.md and scaling.png (with ``--out NAME``: NAME.json, NAME.md,
scaling_NAME.png).
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (puts the repository on sys.path)
from common import fmt, fmt_ms, md_table  # noqa: E402

SCRIPT = Path(__file__).resolve()
THREADS = 2
MAX_ITERATIONS = 50
FUNCTION_TOLERANCE = 1e-16
TARGET_REL = 1e-3  # within 0.1% of the best final cost
SCIPY_TIME_LIMIT_S = 600.0
SCIPY_MAX_NFEV = 4000  # the 600 s guard is the binding limit
DENSE_SCHUR_MAX_COLUMNS = 2000

REAL = [
    ("problem-49-7776-pre", "ladybug/problem-49-7776-pre.txt.bz2"),
    ("problem-21-11315-pre", "trafalgar/problem-21-11315-pre.txt.bz2"),
    ("problem-16-22106-pre", "dubrovnik/problem-16-22106-pre.txt.bz2"),
]
SYNTHETIC = [
    # name, cameras, points (4 observations per point)
    ("synthetic-1e5", 100, 25_000),
    ("synthetic-1e6", 1000, 250_000),
    ("synthetic-3e6", 3000, 750_000),
]
TARGETS_MS = {"problem-49-7776-pre": 20.0, "problem-16-22106-pre": 35.0}
CERES21 = {"problem-49-7776-pre": (52.0, 2.9), "problem-16-22106-pre": (103.0, 1.35)}  # ms/iter, s/solve


# =============================================================================================
# Worker side (runs in a fresh process)

def load_problem(p: dict):
    """The BALProblem of a problem spec ({kind: bal, path} or {kind: synthetic, ...})."""
    from sparselm.bal import read_bal, synthetic_problem

    if p["kind"] == "bal":
        return read_bal(p["path"])
    return synthetic_problem(p["n_cameras"], p["n_points"], observations_per_point=p.get("observations_per_point", 4.0),
                             seed=p.get("seed", 0)).initial


def _build(bal):
    from sparselm.bal import build_problem

    return build_problem(bal)


def worker_sparselm(spec: dict) -> dict:
    import sparselm

    t0 = time.perf_counter()
    bal = load_problem(spec["problem"])
    load_s = time.perf_counter() - t0
    solver = spec["linear_solver"]
    options = dict(spec.get("options", {}))
    warmup_s = common.warm_up(common.tiny_ba_problem, solver, THREADS)
    runs = []
    for _ in range(spec.get("repeats", 1)):
        t1 = time.perf_counter()
        problem = _build(bal)
        build_s = time.perf_counter() - t1
        with common.PeakMemory() as mem:
            summary = sparselm.solve(problem, linear_solver=solver, threads=THREADS, **options)
        run = common.summarize_solve(summary)
        run.update(mem.as_dict(), build_problem_s=build_s)
        runs.append(run)
        del problem, summary
    return {"solver": solver, "kind": "sparselm", "load_s": load_s, "warmup_s": warmup_s, "runs": runs,
            "sizes": {"cameras": bal.n_cameras, "points": bal.n_points, "observations": bal.n_observations},
            "environment": common.environment()}


def worker_ceres(spec: dict) -> dict:
    import ceres_peer

    bal = load_problem(spec["problem"])
    arrays = (bal.cameras, bal.points, bal.camera_index, bal.point_index, bal.observations)
    runs = []
    for _ in range(spec.get("repeats", 1)):
        with common.PeakMemory() as mem:
            res = ceres_peer.solve_with_ceres(*arrays, max_iterations=spec.get("max_iterations", MAX_ITERATIONS),
                                              threads=THREADS,
                                              function_tolerance=spec.get("function_tolerance", FUNCTION_TOLERANCE))
        its = res["iterations"]
        n = res["num_iterations"]
        run = {k: v for k, v in res.items() if k not in ("full_report", "iterations")}
        run.update(mem.as_dict())
        run["full_report_tail"] = res["full_report"][-2500:]
        run["iteration_log"] = its
        run["curve"] = [[r["time_s"], r["cost"]] for r in its]
        run["iterations"] = n
        run["time_per_iter_s"] = (its[-1]["time_s"] - its[0]["time_s"]) / n if its and n else None
        runs.append(run)
    return {"solver": "ceres", "kind": "ceres", "runs": runs,
            "sizes": {"cameras": bal.n_cameras, "points": bal.n_points, "observations": bal.n_observations}}


class _TimeUp(Exception):
    pass


class _Reached(Exception):
    pass


def scipy_bal_functions(bal, deadline_holder: dict, record: list):
    """fun(x), jac(x) for scipy.optimize.least_squares from sparselm's BAL kernels.

    x = [cameras (9 n_c), points (3 n_p)]; the Jacobian is CSR with a fixed pattern (each residual
    row: the 9 camera columns, then the 3 point columns), its values the kernel's (n, 2, 12) output.
    Every residual evaluation appends (elapsed, cost) to ``record`` and raises _TimeUp past the
    deadline (the least_squares call is then abandoned; its best point so far is on the record).
    """
    import numpy as np
    import scipy.sparse as sp

    from sparselm.bal.camera import BAL_REPROJECTION

    nc, npt, n = bal.n_cameras, bal.n_points, bal.n_observations
    index = np.ascontiguousarray(np.column_stack([bal.camera_index, bal.point_index]), dtype=np.int64)
    data = np.ascontiguousarray(bal.observations, dtype=np.float64)
    cols = np.empty((n, 12), dtype=np.int32)
    cols[:, :9] = bal.camera_index[:, None] * 9 + np.arange(9)
    cols[:, 9:] = 9 * nc + bal.point_index[:, None] * 3 + np.arange(3)
    indices = np.ascontiguousarray(np.repeat(cols[:, None, :], 2, axis=1).reshape(-1))
    indptr = np.arange(0, 24 * n + 1, 12, dtype=np.int64)
    shape = (2 * n, 9 * nc + 3 * npt)
    res = np.zeros((n, 2))
    jac = np.zeros((n, 2, 12))
    views = (jac[:, :, :9], jac[:, :, 9:])
    x0 = np.concatenate([bal.cameras.ravel(), bal.points.ravel()])
    counts = {"nfev": 0, "njev": 0, "jac_s": 0.0, "fun_s": 0.0}

    def params(x):
        x = np.ascontiguousarray(x, dtype=np.float64)
        return (x[:9 * nc].reshape(nc, 9), x[9 * nc:].reshape(npt, 3))

    def fun(x):
        t = time.perf_counter()
        if t > deadline_holder["deadline"]:
            raise _TimeUp()
        BAL_REPROJECTION.residual_kernel(params(x), index, data, res)
        out = res.ravel().copy()
        cost = 0.5 * float(out @ out)
        now = time.perf_counter()
        counts["nfev"] += 1
        counts["fun_s"] += now - t
        record.append((now - deadline_holder["start"], cost))
        if cost <= deadline_holder.get("stop_at", -math.inf):
            raise _Reached()
        return out

    def jacobian(x):
        t = time.perf_counter()
        if t > deadline_holder["deadline"]:
            raise _TimeUp()
        BAL_REPROJECTION.jacobian_kernel(params(x), index, data, res, views)
        m = sp.csr_matrix((jac.reshape(-1).copy(), indices, indptr), shape=shape)
        counts["njev"] += 1
        counts["jac_s"] += time.perf_counter() - t
        return m

    return fun, jacobian, x0, counts


def worker_scipy(spec: dict) -> dict:
    import warnings

    import scipy
    from scipy.optimize import least_squares

    bal = load_problem(spec["problem"])
    limit = spec.get("time_limit_s", SCIPY_TIME_LIMIT_S)
    # warm-up: compile/load the two kernels on a tiny problem (not timed)
    from sparselm.bal import synthetic_problem

    tiny = synthetic_problem(3, 20, observations_per_point=2.0, seed=2).initial
    holder = {"start": time.perf_counter(), "deadline": math.inf}
    f_t, j_t, x_t, _ = scipy_bal_functions(tiny, holder, [])
    t0 = time.perf_counter()
    f_t(x_t)
    j_t(x_t)
    warmup_s = time.perf_counter() - t0

    record = []
    stop_at = spec.get("stop_at")
    holder = {"start": 0.0, "deadline": math.inf, "stop_at": stop_at if stop_at is not None else -math.inf}
    fun, jac, x0, counts = scipy_bal_functions(bal, holder, record)
    status, message, result_cost, nfev, njev = None, "", None, None, None
    with common.PeakMemory() as mem:
        holder["start"] = time.perf_counter()
        holder["deadline"] = holder["start"] + limit
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = least_squares(fun, x0, jac=jac, method="trf", tr_solver="lsmr", x_scale="jac",
                                  ftol=spec.get("ftol", None), xtol=spec.get("xtol", 1e-8),
                                  gtol=spec.get("gtol", 1e-10), max_nfev=spec.get("max_nfev", SCIPY_MAX_NFEV))
            status, message, result_cost, nfev, njev = int(r.status), r.message, float(r.cost), int(r.nfev), int(r.njev)
        except _TimeUp:
            status, message = None, f"stopped by the time guard after {limit:.0f} s"
        except _Reached:
            status, message = -10, f"stopped on reaching the target cost {stop_at:.6e} (0.1% above the best cost of the solvers run before it)"
        elapsed = time.perf_counter() - holder["start"]
    # the curve: best cost so far at each residual evaluation (trf accepts every decreasing step)
    curve = common.best_so_far(record)
    best = curve[-1][1] if curve else math.inf
    njev_done = counts["njev"]
    run = {"initial_cost": record[0][1] if record else None, "final_cost": best, "result_cost": result_cost,
           "status": status, "message": message, "total_time_s": elapsed, "nfev": counts["nfev"],
           "njev": njev_done, "scipy_nfev": nfev, "scipy_njev": njev, "jac_s": counts["jac_s"],
           "fun_s": counts["fun_s"], "time_limit_s": limit, "timed_out": status is None, "stop_at": stop_at,
           "time_per_iter_s": elapsed / njev_done if njev_done else None, "iterations": njev_done,
           "curve": curve, "options": {"method": "trf", "tr_solver": "lsmr", "x_scale": "jac",
                                       "ftol": spec.get("ftol", None), "xtol": spec.get("xtol", 1e-8),
                                       "gtol": spec.get("gtol", 1e-10),
                                       "max_nfev": spec.get("max_nfev", SCIPY_MAX_NFEV)}}
    run.update(mem.as_dict())
    return {"solver": "scipy", "kind": "scipy", "scipy_version": scipy.__version__, "warmup_s": warmup_s,
            "runs": [run], "sizes": {"cameras": bal.n_cameras, "points": bal.n_points,
                                     "observations": bal.n_observations}}


HANDLERS = {"sparselm": worker_sparselm, "ceres": worker_ceres, "scipy": worker_scipy, "jit": common.jit_worker}


# =============================================================================================
# Driver side

def problem_specs(quick: bool, names=None):
    data = common.data_dir()
    specs = []
    for name, rel in REAL:
        path = data / rel
        if quick and name != "problem-49-7776-pre":
            continue
        if path.exists():
            specs.append({"name": name, "kind": "bal", "path": str(path), "real": True})
        else:
            print(f"  (skipping {name}: {path} not found)", flush=True)
    for name, nc, npt in SYNTHETIC:
        if quick and name != "synthetic-1e5":
            continue
        specs.append({"name": name, "kind": "synthetic", "n_cameras": nc, "n_points": npt,
                      "observations_per_point": 4.0, "seed": 0, "real": False})
    if names:
        specs = [s for s in specs if s["name"] in names]
    return specs


def available_solvers():
    from sparselm.linalg import registry

    return set(registry.names())


def plan(specs, quick: bool, args):
    """The list of measurements: (problem spec, task spec, timeout)."""
    have = available_solvers()
    have_ceres = importlib.util.find_spec("pycolmap") is not None
    if not have_ceres and not args.no_ceres:
        print("  (pycolmap is not installed: no Ceres runs; `pip install -e '.[bench]'` adds it)", flush=True)
    jobs = []
    for p in specs:
        name = p["name"]
        ncam = p.get("n_cameras") or _count_cameras(p)
        big = name in ("synthetic-1e6", "synthetic-3e6")
        reps = 1 if (quick or big) else 3
        opts = {"max_iterations": MAX_ITERATIONS, "function_tolerance": FUNCTION_TOLERANCE}
        solvers = ["sparse_schur"]
        if 9 * ncam <= DENSE_SCHUR_MAX_COLUMNS:
            solvers.append("dense_schur")
        if "iterative_schur" in have:
            solvers.append("iterative_schur")
        if (p["real"] or name == "synthetic-1e5") and not quick:
            solvers.append("sparse_normal_cholesky")
        for s in solvers:
            r = reps if s in ("sparse_schur", "iterative_schur") else (1 if (quick or not p["real"]) else 2)
            jobs.append((p, {"task": "sparselm", "linear_solver": s, "options": opts, "repeats": r}, 2400))
        if not args.no_ceres and have_ceres:
            jobs.append((p, {"task": "ceres", "repeats": 1 if (quick or not p["real"]) else 3}, 2400))
        if p["real"] and not args.no_scipy and (not quick or name == "problem-49-7776-pre"):
            limit = args.scipy_limit if not quick else min(args.scipy_limit, 120.0)
            jobs.append((p, {"task": "scipy", "time_limit_s": limit}, limit + 600))
    # the default-tolerance solve of problem-16 (converges in ~7 iterations)
    p16 = [p for p in problem_specs(False) if p["name"] == "problem-16-22106-pre"]
    if p16:
        p = dict(p16[0], name="problem-16-22106-pre (default tolerances)")
        jobs.append((p, {"task": "sparselm", "linear_solver": "sparse_schur", "options": {}, "repeats": 5}, 900))
        if not args.no_ceres and have_ceres:
            jobs.append((p, {"task": "ceres", "repeats": 3, "function_tolerance": 1e-6}, 900))
    return jobs


def _count_cameras(p):
    with open(p["path"], "rb") as f:
        import bz2

        head = bz2.BZ2File(f).read(64).split()
    return int(head[0])


def run(args) -> dict:
    quick = args.quick
    specs = problem_specs(quick, args.problems)
    jobs = plan(specs, quick, args)
    out = {"mode": "quick" if quick else "full", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "threads": THREADS, "max_iterations": MAX_ITERATIONS, "function_tolerance": FUNCTION_TOLERANCE,
           "target_rel": TARGET_REL, "environment": None, "jit": {}, "results": []}
    print(f"bench_bal: {len(jobs)} measurements ({out['mode']} mode)", flush=True)
    # JIT, per linear solver, in fresh processes with an empty then a filled numba cache
    jit_solvers = ["sparse_schur"] if quick else sorted({j[1]["linear_solver"] for j in jobs if j[1]["task"] == "sparselm"})
    for s in jit_solvers:
        t0 = time.perf_counter()
        out["jit"][s] = j = common.measure_jit(SCRIPT, s, threads=THREADS)
        print(f"  jit {s}: compile {fmt(j.get('jit_s'), '.2f')} s, cache load {fmt(j.get('cache_load_s'), '.2f')} s "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    for k, (p, task, timeout) in enumerate(jobs, 1):
        spec = dict(task, problem={k2: v for k2, v in p.items() if k2 != "name"})
        if task["task"] == "scipy" and not args.scipy_no_stop:
            best = _best_so_far(out["results"], p["name"])
            if best is not None:
                spec["stop_at"] = best * (1 + TARGET_REL)
        label = task.get("linear_solver", task["task"])
        t0 = time.perf_counter()
        res = common.run_worker(SCRIPT, spec, timeout=timeout)
        res["problem"] = p["name"]
        res["label"] = label
        res.setdefault("solver", label)
        res["problem_spec"] = p
        out["results"].append(res)
        if out["environment"] is None and "environment" in res:
            out["environment"] = res["environment"]
        brief = _brief(res)
        print(f"  [{k}/{len(jobs)}] {p['name']:<44} {label:<24} {brief} ({time.perf_counter() - t0:.0f} s wall)",
              flush=True)
        common.write_json(args.out, out)  # partial results survive an interruption
    out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    common.write_json(args.out, out)
    return out


def _best_so_far(results, name):
    """Best final cost of the comparable runs on problem ``name`` so far (None if none)."""
    finals = []
    for res in results:
        if res["problem"] != name or "error" in res:
            continue
        for r in res["runs"]:
            if res.get("kind") == "ceres" and r.get("behind_camera"):
                continue
            if r.get("final_cost") is not None:
                finals.append(r["final_cost"])
    return min(finals) if finals else None


def _brief(res) -> str:
    if "error" in res:
        return f"ERROR: {res['error']}"
    r = _chosen(res)
    return (f"cost {fmt(r.get('final_cost'), '.6e')}, {r.get('iterations')} it, "
            f"{fmt_ms(r.get('time_per_iter_s'))} ms/it, total {fmt(r.get('total_time_s'), '.2f')} s, "
            f"peak {fmt(r.get('solve_peak_rss_mb'), '.0f')} MB, load {r.get('loadavg_before')}")


def _chosen(res) -> dict:
    """The median run (by total time) of a result."""
    return common.median_run(res["runs"])


# =============================================================================================
# Report

def analyse(data: dict) -> dict:
    """Per problem: best cost, target, and each solver's time to target."""
    problems = {}
    for res in data["results"]:
        problems.setdefault(res["problem"], []).append(res)
    table = {}
    for name, results in problems.items():
        finals = []
        for res in results:
            if "error" in res:
                continue
            r = _chosen(res)
            if res["kind"] == "ceres" and r.get("behind_camera"):
                continue  # COLMAP zeroes behind-camera residuals: another cost function
            finals.append(min(run["final_cost"] for run in res["runs"] if run.get("final_cost") is not None))
        best = min(finals) if finals else None
        target = best * (1 + TARGET_REL) if best is not None else None
        rows = []
        for res in results:
            row = {"res": res, "label": res.get("label"), "kind": res.get("kind", "?")}
            if "error" not in res:
                r = _chosen(res)
                row["run"] = r
                comparable = not (res["kind"] == "ceres" and r.get("behind_camera"))
                row["comparable"] = comparable
                row["ttt"] = common.time_to_cost(r["curve"], target) if (target and comparable) else None
                if res["kind"] == "scipy" and row["ttt"] is None:
                    row["ttt_lower_bound"] = r["total_time_s"]
            rows.append(row)
        ceres = next((x for x in rows if x["kind"] == "ceres" and "run" in x), None)
        scipy_row = next((x for x in rows if x["kind"] == "scipy" and "run" in x), None)
        for x in rows:
            if "run" not in x:
                continue
            if ceres is not None and x["kind"] == "sparselm":
                x["vs_ceres_iter"] = _ratio(ceres["run"].get("time_per_iter_s"), x["run"].get("time_per_iter_s"))
                x["vs_ceres_ttt"] = _ratio(ceres.get("ttt"), x.get("ttt"))
            if scipy_row is not None and x["kind"] != "scipy":
                if scipy_row.get("ttt") is not None:
                    x["vs_scipy_ttt"] = _ratio(scipy_row["ttt"], x.get("ttt"))
                elif x.get("ttt") and scipy_row.get("ttt_lower_bound"):
                    x["vs_scipy_ttt_lower"] = scipy_row["ttt_lower_bound"] / x["ttt"]
        table[name] = {"best": best, "target": target, "rows": rows}
    return table


def _ratio(a, b):
    return a / b if (a is not None and b is not None and b > 0) else None


def _speedup(x, key) -> str:
    v = x.get(key)
    if v is not None:
        return f"{v:.1f}x"
    if key == "vs_scipy_ttt" and x.get("vs_scipy_ttt_lower") is not None:
        return f">{x['vs_scipy_ttt_lower']:.0f}x"
    return "–"


PHASE_ORDER = ["residual", "jacobian", "gradient", "assembly", "schur_complement", "elimination", "preconditioner",
               "cg", "factorization", "solve", "back_substitution"]


def _phase_columns(rows):
    seen = []
    for x in rows:
        for k in x.get("run", {}).get("phase_ms_per_iter", {}):
            if k not in seen:
                seen.append(k)
    return [p for p in PHASE_ORDER if p in seen] + [p for p in seen if p not in PHASE_ORDER]


def _label(x) -> str:
    k = x["kind"]
    if k == "ceres":
        return "Ceres 2.2 SPARSE_SCHUR (pycolmap)"
    if k == "scipy":
        return "scipy least_squares trf/lsmr"
    return f"sparselm {x['label']}"


def report(data: dict, png: str = "scaling.png") -> str:
    an = analyse(data)
    env = data.get("environment") or {}
    jit = data.get("jit", {})
    L = ["# BAL bundle-adjustment benchmark", ""]
    L.append(f"Mode: {data.get('mode')}; run {data.get('started')} – {data.get('finished', '(unfinished)')}. "
             f"Machine: {common.env_line(env)}.")
    L += ["", common.LOAD_NOTE, ""]
    L.append(f"All solvers: LM, at most {MAX_ITERATIONS} iterations, function tolerance {FUNCTION_TOLERANCE:g} "
             "(as Ceres' bundle_adjuster: they stop on the parameter tolerance 1e-8 or the iteration limit), "
             f"{THREADS} threads, no robust loss. *time/iter*: (time at the last iteration - time at iteration 0) "
             "/ iterations (no setup, no first linearisation); for scipy: wall time / Jacobian evaluations. "
             "*to 0.1%*: wall time from the start of the solve call (setup included; Ceres: from the start of "
             "Solve, preprocessing included; problem construction excluded for all) until the cost is within "
             "0.1% of the best final cost of any solver on that problem. *speed-up*: the other solver's time "
             "divided by this one's (to 0.1% / per iteration). *time/iter (min)*: the median run's, and in brackets the "
             "fastest repeat's. *load / busy*: 1-min load average before the (median) solve / CPUs busy with "
             "other work just before the measurement started. *peak RSS*: resident high-water mark during the "
             "solve (problem data included; interpreter and libraries ~0.2-0.3 GB). *JIT*: numba compile time "
             "with an empty cache (see the JIT table). Median of the repeats (by total time).")
    L.append("")
    # targets
    L += ["## Speed targets (issue 7)", ""]
    trow = []
    for name, limit in TARGETS_MS.items():
        x = _find(an, name, "sparse_schur")
        c = _find(an, name, None, kind="ceres")
        if x is None:
            continue
        t = x["run"]["time_per_iter_s"] * 1e3
        c21 = CERES21[name]
        trow.append([name, f"<= {limit:.0f} ms/iter", f"{t:.1f} ms/iter", "met" if t <= limit else "NOT met",
                     f"{c21[0]:.0f} ms/iter", f"{c['run']['time_per_iter_s'] * 1e3:.1f} ms/iter" if c else "–"])
    x = _find(an, "problem-49-7776-pre", "sparse_schur")
    if x is not None:
        s = _speedup(x, "vs_scipy_ttt")
        ok = (x.get("vs_scipy_ttt") or x.get("vs_scipy_ttt_lower") or 0) >= 100
        trow.append(["problem-49-7776-pre", ">= 100x faster than scipy to the same cost", s,
                     "met" if ok else "NOT met (or scipy not run)", "", ""])
    d16 = an.get("problem-16-22106-pre (default tolerances)")
    if d16:
        xs = next((y for y in d16["rows"] if y["kind"] == "sparselm" and "run" in y), None)
        cs = next((y for y in d16["rows"] if y["kind"] == "ceres" and "run" in y), None)
        if xs:
            trow.append(["problem-16-22106-pre, default tolerances", "solve time (Ceres 2.1: 1.35 s)",
                         f"{xs['run']['total_time_s']:.3f} s ({xs['run']['iterations']} it, cost "
                         f"{xs['run']['final_cost']:.6e})", "", "1.35 s",
                         f"{cs['run']['total_time_s']:.3f} s ({cs['run']['iterations']} it, cost "
                         f"{cs['run']['final_cost']:.6e})" if cs else "–"])
    L.append(md_table(["problem", "target", "sparselm sparse_schur", "", "Ceres 2.1 (issue)", "Ceres 2.2 here"], trow,
                      "llllrr"))
    L.append("")
    # per problem
    L += ["## Results per problem", ""]
    for name, info in an.items():
        rows = info["rows"]
        sizes = next((x["res"].get("sizes") for x in rows if "res" in x and x["res"].get("sizes")), {})
        L.append(f"### {name}")
        L.append("")
        L.append(f"{sizes.get('cameras')} cameras, {sizes.get('points')} points, {sizes.get('observations')} "
                 f"observations. Best final cost {fmt(info['best'], '.8e')}; target (+0.1%) "
                 f"{fmt(info['target'], '.6e')}.")
        L.append("")
        body = []
        for x in rows:
            if "run" not in x:
                body.append([_label(x), "ERROR: " + x["res"].get("error", "?")] + [""] * 12)
                continue
            r = x["run"]
            its = r.get("iterations")
            jit_s = jit.get(x["label"], {}).get("jit_s") if x["kind"] == "sparselm" else None
            setup = r.get("setup_time_s")
            ttt = x.get("ttt")
            ttt_s = fmt(ttt, ".3f")
            if ttt is None and x["kind"] == "scipy":
                ttt_s = f"not reached in {r['total_time_s']:.0f} s"
            if x["kind"] == "ceres" and not x.get("comparable", True):
                ttt_s = "n/a (other function)"
            load = r.get("loadavg_before") or [None]
            busy = (x["res"].get("machine_before") or {}).get("busy_cpus_before")
            tpi = fmt_ms(r.get("time_per_iter_s"))
            ok_runs = [q for q in x["res"]["runs"] if q.get("time_per_iter_s")]
            if len(ok_runs) > 1:
                tpi += f" ({1e3 * min(q['time_per_iter_s'] for q in ok_runs):.1f})"
            body.append([_label(x), its, fmt(r.get("final_cost"), ".6e"), tpi,
                         fmt(r.get("total_time_s"), ".3f"), fmt(setup, ".3f"), fmt(jit_s, ".1f"),
                         fmt(r.get("solve_peak_rss_mb"), ".0f"), ttt_s, _speedup(x, "vs_ceres_ttt"),
                         _speedup(x, "vs_ceres_iter"), _speedup(x, "vs_scipy_ttt"),
                         f"{fmt(load[0], '.1f')} / {fmt(busy, '.1f')}"])
        L.append(md_table(["solver", "iters", "final cost", "time/iter ms (min)", "total s", "setup s", "JIT s",
                           "peak RSS MB", "to 0.1% s", "vs Ceres (to 0.1%)", "vs Ceres (per iter)",
                           "vs scipy (to 0.1%)", "load / busy"], body))
        L.append("")
        cols = _phase_columns(rows)
        if cols:
            prow = []
            for x in rows:
                if "run" in x and x["kind"] == "sparselm":
                    ph = x["run"]["phase_ms_per_iter"]
                    total = x["run"]["time_per_iter_s"] * 1e3
                    prow.append([_label(x)] + [fmt(ph.get(c), ".2f") for c in cols] +
                                [fmt(sum(ph.values()), ".1f"), fmt(total, ".1f")])
            L.append("Phase breakdown, ms per LM iteration (phase seconds / iterations; the first linearisation's "
                     "jacobian/assembly included):")
            L.append("")
            L.append(md_table(["solver"] + cols + ["sum", "time/iter"], prow))
            L.append("")
        notes = []
        for x in rows:
            if x["kind"] == "ceres" and "run" in x and x["run"].get("behind_camera"):
                notes.append(f"Ceres (pycolmap) zeroes the residual of the {x['run']['behind_camera']} observations "
                             f"whose point is behind the camera, so it minimises another function here (its initial "
                             f"cost {x['run']['initial_cost']:.6e} vs BAL's {x['run']['bal_initial_cost']:.6e}): "
                             "left out of the best cost, no time-to-cost comparison; per-iteration times compare.")
            if x["kind"] == "scipy" and "run" in x:
                r = x["run"]
                notes.append(f"scipy: {r['njev']} Jacobian / {r['nfev']} residual evaluations; "
                             f"{r['message']}; time in sparselm's kernels {r['jac_s'] + r['fun_s']:.1f} s of "
                             f"{r['total_time_s']:.1f} s (the rest is lsmr and trf).")
            if x["kind"] == "sparselm" and "run" in x and x["run"]["termination"] not in ("convergence", "no_convergence"):
                notes.append(f"sparselm {x['label']}: {x['run']['termination']}: {x['run']['message']}")
        for n in notes:
            L.append(f"- {n}")
        if notes:
            L.append("")
    # scaling
    L += ["## Scaling (sparselm, time per LM iteration vs observations)", "", f"![scaling]({png})", ""]
    srows = _scaling_rows(an)
    if srows:
        cols = sorted({c for r in srows for c in r["phases"]}, key=lambda c: PHASE_ORDER.index(c) if c in PHASE_ORDER else 99)
        body = [[r["problem"], r["solver"], r["obs"], fmt(r["ms"], ".1f"),
                 fmt(r["ms"] / r["obs"] * 1e6, ".0f"), fmt(r["ceres_ms"], ".1f"), fmt(r["peak"], ".0f")] +
                [fmt(r["phases"].get(c), ".1f") for c in cols] for r in srows]
        L.append(md_table(["problem", "solver", "observations", "ms/iter", "ns/obs/iter", "Ceres ms/iter",
                           "peak RSS MB"] + cols, body))
        L.append("")
    # JIT
    if jit:
        L += ["## JIT (numba) cost per linear solver", "",
              "A tiny BA problem (4 cameras, 60 points) solved in a fresh process: with an EMPTY numba cache dir "
              "(compiles everything), then again with that cache filled. compile = first solve (empty cache) - "
              "warm solve; cache load = first solve (filled cache) - warm solve. Every benchmark worker does "
              "such a warm-up solve before its measured solves.", ""]
        body = []
        for s, j in jit.items():
            c, w = j.get("cold", {}), j.get("warm_cache", {})
            body.append([s, fmt(c.get("import_s"), ".2f"), fmt(c.get("first_tiny_solve_s"), ".2f"),
                         fmt(w.get("import_s"), ".2f"), fmt(w.get("first_tiny_solve_s"), ".2f"),
                         fmt(min(c.get("second_tiny_solve_s", math.inf), w.get("second_tiny_solve_s", math.inf)), ".3f"),
                         fmt(j.get("jit_s"), ".2f"), fmt(j.get("cache_load_s"), ".2f")])
        L.append(md_table(["linear solver", "import s (empty cache)", "first solve s (empty cache)",
                           "import s (filled cache)", "first solve s (filled cache)", "warm solve s", "compile s",
                           "cache load s"], body))
        L.append("")
    return "\n".join(L) + "\n"


def _find(an, problem, label, kind="sparselm"):
    info = an.get(problem)
    if not info:
        return None
    for x in info["rows"]:
        if "run" in x and x["kind"] == kind and (label is None or x["label"] == label):
            return x
    return None


def _scaling_rows(an):
    rows = []
    for name, info in an.items():
        if "default" in name:
            continue
        ceres = next((x for x in info["rows"] if x["kind"] == "ceres" and "run" in x), None)
        for x in info["rows"]:
            if x["kind"] == "sparselm" and "run" in x and x["label"] in ("sparse_schur", "iterative_schur"):
                rows.append({"problem": name, "solver": x["label"], "obs": x["res"]["sizes"]["observations"],
                             "ms": x["run"]["time_per_iter_s"] * 1e3, "phases": x["run"]["phase_ms_per_iter"],
                             "peak": x["run"].get("solve_peak_rss_mb"),
                             "ceres_ms": ceres["run"]["time_per_iter_s"] * 1e3 if ceres and ceres["run"].get(
                                 "time_per_iter_s") else None})
    rows.sort(key=lambda r: (r["solver"], r["obs"]))
    return rows


def plot_scaling(data: dict, path: Path) -> bool:
    """Log-log time per LM iteration vs observations: synthetic problems as lines (total and each
    phase of sparse_schur), the real BAL problems as unconnected hollow markers, Ceres in grey."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  (matplotlib not installed: no scaling.png)")
        return False
    rows = _scaling_rows(analyse(data))
    if not rows:
        return False
    for r in rows:
        r["real"] = r["problem"].startswith("problem-")
    fig, ax = plt.subplots(figsize=(11.5, 6.5))
    styles = {"sparse_schur": ("C0", "o"), "iterative_schur": ("C1", "s")}

    def series(rs, key, color, marker, label, lw=2.0, ls="-"):
        syn = [r for r in rs if not r["real"] and r.get(key) is not None]
        real = [r for r in rs if r["real"] and r.get(key) is not None]
        if syn:
            ax.plot([r["obs"] for r in syn], [r[key] for r in syn], marker=marker, color=color, lw=lw, ls=ls,
                    label=label)
        if real:
            ax.plot([r["obs"] for r in real], [r[key] for r in real], marker=marker, color=color, ls="none",
                    mfc="none", ms=7, label=None if syn else label)

    for solver in ("sparse_schur", "iterative_schur"):
        rs = [r for r in rows if r["solver"] == solver]
        if not rs:
            continue
        color, marker = styles[solver]
        series(rs, "ms", color, marker, f"sparselm {solver}: time per iteration", lw=2.4)
        if solver == "sparse_schur":
            phases = [c for c in PHASE_ORDER if any(c in r["phases"] for r in rs)]
            for k, ph in enumerate(phases):
                for r in rs:
                    r["_ph"] = r["phases"].get(ph)
                series(rs, "_ph", f"C{k + 2}", ".", f"  phase {ph}", lw=1.0, ls="--")
    cer = [dict(r, ms=r["ceres_ms"]) for r in rows if r["solver"] == "sparse_schur" and r["ceres_ms"]]
    series(cer, "ms", "0.35", "^", "Ceres 2.2 SPARSE_SCHUR: time per iteration", lw=1.6, ls=":")
    for r in rows:
        if r["real"] and r["solver"] == "sparse_schur":
            ax.annotate(r["problem"].replace("-pre", ""), (r["obs"], r["ms"]), textcoords="offset points",
                        xytext=(4, 6), fontsize=7, rotation=30)
    syn = sorted((r["obs"], r["ms"]) for r in rows if r["solver"] == "sparse_schur" and not r["real"])
    if len(syn) >= 2:
        x0, y0 = syn[0]
        xs = [x0, syn[-1][0]]
        ax.plot(xs, [y0 * v / x0 for v in xs], color="k", lw=0.6, alpha=0.5, label="linear in observations")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("observations")
    ax.set_ylabel("ms per LM iteration")
    ax.set_title(f"sparselm time per LM iteration, {THREADS} threads\n"
                 "lines: synthetic 1e5 / 1e6 / 3e6; hollow markers: real BAL problems", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_name(out: str) -> str:
    """scaling.png for the main results (``bal``), scaling_<out>.png for any other name."""
    return "scaling.png" if out == "bal" else f"scaling_{out}.png"


def write_report(data: dict, out: str) -> None:
    md = report(data, plot_name(out))
    common.write_text(f"{out}.md", md)
    plot_scaling(data, common.RESULTS / plot_name(out))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return common.worker_main(HANDLERS, argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="problem-49, problem-16 default tol and the 1e5 synthetic")
    ap.add_argument("--problems", nargs="+", help="only these problem names")
    ap.add_argument("--no-ceres", action="store_true")
    ap.add_argument("--no-scipy", action="store_true")
    ap.add_argument("--scipy-limit", type=float, default=SCIPY_TIME_LIMIT_S, help="wall-time guard per scipy run (s)")
    ap.add_argument("--scipy-no-stop", action="store_true",
                    help="let scipy run to its own termination (or the guard) instead of stopping at the target")
    ap.add_argument("--report", action="store_true", help="only rewrite the md/png from the JSON")
    ap.add_argument("--update-jit", action="store_true", help="re-measure only the JIT table of the JSON")
    ap.add_argument("--out", default="bal", help="results name (benchmarks/results/NAME.json/.md)")
    args = ap.parse_args(argv)
    if args.report or args.update_jit:
        import json

        data = json.loads((common.RESULTS / f"{args.out}.json").read_text())
        if args.update_jit:
            for s in sorted(data.get("jit") or {}):
                data["jit"][s] = j = common.measure_jit(SCRIPT, s, threads=THREADS)
                print(f"  jit {s}: compile {fmt(j.get('jit_s'), '.2f')} s, cache load "
                      f"{fmt(j.get('cache_load_s'), '.2f')} s", flush=True)
            data["jit_remeasured"] = time.strftime("%Y-%m-%d %H:%M:%S")
            common.write_json(args.out, data)
    else:
        data = run(args)
    write_report(data, args.out)
    print(f"wrote {common.RESULTS / (args.out + '.json')}, {args.out}.md, {plot_name(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
