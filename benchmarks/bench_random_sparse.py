"""Random sparse problem benchmark (issue 2): sparselm's sparse normal Cholesky against scipy.

The problem: a 2-D sensor network. ``n`` points at unit density: random cells of a unit grid, each
point moved by U(-0.35, 0.35) per coordinate (so no two points are closer than 0.3: a distance far
below its noise would make the cost non-smooth at the minimum, |p - q| -> 0, which stalls any
Gauss-Newton method); each point measures its distance to its 8 nearest neighbours (the edges of the kNN graph,
each undirected edge once), with noise sigma_d = 0.01; 1% of the points (at least 3) are anchors
with a prior on their position (sigma_a = 0.01). Residuals: :data:`sparselm.residuals.library.DISTANCE_2D`
per edge and :func:`sparselm.residuals.library.prior`(2) per anchor, weighted by 1/sigma; the start is the
truth plus N(0, 0.1^2) per coordinate (a tenth of the point spacing). The normal matrix has the
sparsity of a planar mesh, so the sparse Cholesky factor fills in (nested-dissection-like
orderings keep it O(n log n)). Sizes: about 10^4, 10^5 and 10^6 residuals (n chosen for that).

Solvers (each in a fresh process, after a warm-up solve; see :mod:`common`):

* sparselm ``sparse_normal_cholesky`` (CHOLMOD on J^T J), and ``dense`` (LAPACK on a dense J^T J)
  at 10^4 residuals only;
* ``scipy.optimize.least_squares(method='trf', tr_solver='lsmr', x_scale='jac')`` with the same
  analytic Jacobian (the same numba kernels, as a CSR matrix with a fixed pattern), a wall-time
  guard of 600 s.

Both run to their own convergence (sparselm function and parameter tolerance 1e-10, at most 50
iterations; scipy ftol = xtol = 1e-10, gtol = 1e-10); the (cost, time) curves give the time to reach the best
final cost of either within 1e-3 and 1e-6 (relative).

    python benchmarks/bench_random_sparse.py            # 1e4, 1e5, 1e6 residuals
    python benchmarks/bench_random_sparse.py --quick    # 1e4 and 1e5
    python benchmarks/bench_random_sparse.py --report   # rewrite the md from the JSON

Writes benchmarks/results/random_sparse.json and .md.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import fmt, fmt_ms, md_table  # noqa: E402

SCRIPT = Path(__file__).resolve()
THREADS = 2
K_NEIGHBOURS = 8
ANCHOR_FRACTION = 0.01
SIGMA_D = 0.01
SIGMA_A = 0.01
START_NOISE = 0.1
JITTER = 0.35  # points: a unit grid, each moved by U(-JITTER, JITTER) per coordinate
EDGES_PER_POINT = 4.3  # measured for K_NEIGHBOURS = 8 on the jittered grid (the actual m is reported)
SIZES = [10_000, 100_000, 1_000_000]
DENSE_MAX_RESIDUALS = 10_000
SCIPY_TIME_LIMIT_S = 600.0
MAX_ITERATIONS = 50
FUNCTION_TOLERANCE = 1e-10
PARAMETER_TOLERANCE = 1e-10  # = scipy's xtol here (same definition: |dx| <= tol (|x| + tol))
TARGETS_REL = (1e-3, 1e-6)


# =============================================================================================
# The problem

def make_network(m_target: int, seed: int = 0):
    """(truth (n, 2), start (n, 2), edges (E, 2) with i < j, measured distances (E,), anchors (A,))."""
    import numpy as np
    from scipy.spatial import cKDTree

    n = max(10, int(round(m_target / (EDGES_PER_POINT + 2 * ANCHOR_FRACTION))))
    rng = np.random.default_rng(seed)
    # a jittered grid: random positions, but no two points closer than 1 - 2 * JITTER (a distance
    # much smaller than its noise would make the cost non-smooth at the minimum, |p - q| -> 0)
    side = int(math.ceil(math.sqrt(n)))
    cells = rng.choice(side * side, n, replace=False)
    truth = np.column_stack([cells % side, cells // side]).astype(np.float64)
    truth += rng.uniform(-JITTER, JITTER, truth.shape)
    _, nbr = cKDTree(truth).query(truth, k=K_NEIGHBOURS + 1)
    i = np.repeat(np.arange(n), K_NEIGHBOURS)
    j = nbr[:, 1:].reshape(-1)
    a, b = np.minimum(i, j), np.maximum(i, j)
    key = np.unique(a.astype(np.int64) * n + b)
    edges = np.column_stack([key // n, key % n]).astype(np.int64)
    d_true = np.linalg.norm(truth[edges[:, 0]] - truth[edges[:, 1]], axis=1)
    measured = d_true + rng.normal(0.0, SIGMA_D, d_true.shape)
    anchors = np.sort(rng.choice(n, max(3, int(ANCHOR_FRACTION * n)), replace=False)).astype(np.int64)
    start = truth + rng.normal(0.0, START_NOISE, truth.shape)
    return truth, start, edges, measured, anchors


def build_problem(net):
    """The sparselm Problem of a network (models.DISTANCE_2D + models.prior(2), sigma weighted)."""
    import numpy as np

    import sparselm
    from sparselm.residuals.library import DISTANCE_2D, prior

    truth, start, edges, measured, anchors = net
    p = sparselm.Problem()
    p.add_parameter_group("points", start)
    p.add_residual_group("distances", DISTANCE_2D, [("points", edges[:, 0]), ("points", edges[:, 1])],
                         measured[:, None], sigma=SIGMA_D)
    p.add_residual_group("anchors", prior(2), [("points", anchors)], np.ascontiguousarray(truth[anchors]),
                         sigma=SIGMA_A)
    return p


def n_residuals(net) -> int:
    return net[2].shape[0] + 2 * net[4].shape[0]


def tiny_problem():
    return build_problem(make_network(300, seed=3))


def scipy_functions(net, holder: dict, record: list):
    """fun, jac, x0 for scipy: the same kernels, whitened, J as CSR with a fixed pattern."""
    import numpy as np
    import scipy.sparse as sp

    from sparselm.residuals.library import DISTANCE_2D, prior

    truth, start, edges, measured, anchors = net
    n, ne, na = start.shape[0], edges.shape[0], anchors.shape[0]
    prior2 = prior(2)
    d_data = np.ascontiguousarray(measured[:, None])
    a_index = np.ascontiguousarray(anchors[:, None])
    a_data = np.ascontiguousarray(truth[anchors])
    res_d = np.zeros((ne, 1))
    res_a = np.zeros((na, 2))
    jd = np.zeros((ne, 1, 4))
    ja = np.zeros((na, 2, 2))
    jd_views = (jd[:, :, :2], jd[:, :, 2:])
    # pattern: an edge row has columns 2i, 2i+1, 2j, 2j+1 (i < j: sorted); an anchor row one column
    cols_d = np.column_stack([2 * edges[:, 0], 2 * edges[:, 0] + 1, 2 * edges[:, 1], 2 * edges[:, 1] + 1])
    cols_a = np.column_stack([2 * anchors, 2 * anchors + 1])  # row 2k: col 2a (value ja[k,0,0]); row 2k+1: 2a+1
    indices = np.concatenate([cols_d.reshape(-1), cols_a.reshape(-1)]).astype(np.int32)
    indptr = np.concatenate([np.arange(0, 4 * ne + 1, 4), 4 * ne + np.arange(1, 2 * na + 1)]).astype(np.int64)
    shape = (ne + 2 * na, 2 * n)
    counts = {"nfev": 0, "njev": 0, "fun_s": 0.0, "jac_s": 0.0}
    edges_c = np.ascontiguousarray(edges)

    def pts(x):
        return np.ascontiguousarray(x, dtype=np.float64).reshape(n, 2)

    def fun(x):
        t = time.perf_counter()
        if t > holder["deadline"]:
            raise _TimeUp()
        p = pts(x)
        DISTANCE_2D.residual_kernel((p, p), edges_c, d_data, res_d)
        prior2.residual_kernel((p,), a_index, a_data, res_a)
        out = np.concatenate([res_d.reshape(-1) / SIGMA_D, res_a.reshape(-1) / SIGMA_A])
        cost = 0.5 * float(out @ out)
        now = time.perf_counter()
        counts["nfev"] += 1
        counts["fun_s"] += now - t
        record.append((now - holder["start"], cost))
        return out

    def jac(x):
        t = time.perf_counter()
        if t > holder["deadline"]:
            raise _TimeUp()
        p = pts(x)
        DISTANCE_2D.jacobian_kernel((p, p), edges_c, d_data, res_d, jd_views)
        prior2.jacobian_kernel((p,), a_index, a_data, res_a, (ja,))
        values = np.concatenate([jd.reshape(-1) / SIGMA_D, np.column_stack([ja[:, 0, 0], ja[:, 1, 1]]).reshape(-1)
                                 / SIGMA_A])
        m = sp.csr_matrix((values, indices, indptr), shape=shape)
        counts["njev"] += 1
        counts["jac_s"] += time.perf_counter() - t
        return m

    return fun, jac, start.reshape(-1).copy(), counts


class _TimeUp(Exception):
    pass


# =============================================================================================
# Workers

def worker_sparselm(spec: dict) -> dict:
    import sparselm

    t0 = time.perf_counter()
    net = make_network(spec["m"], seed=spec.get("seed", 0))
    gen_s = time.perf_counter() - t0
    solver = spec["linear_solver"]
    warmup_s = common.warm_up(tiny_problem, solver, THREADS)
    runs = []
    for _ in range(spec.get("repeats", 1)):
        problem = build_problem(net)
        with common.PeakMemory() as mem:
            summary = sparselm.solve(problem, linear_solver=solver, threads=THREADS, max_iterations=MAX_ITERATIONS,
                                     function_tolerance=FUNCTION_TOLERANCE, parameter_tolerance=PARAMETER_TOLERANCE)
        run = common.summarize_solve(summary)
        run.update(mem.as_dict())
        runs.append(run)
        del problem, summary
    return {"solver": solver, "kind": "sparselm", "generate_s": gen_s, "warmup_s": warmup_s, "runs": runs,
            "sizes": {"points": int(net[0].shape[0]), "edges": int(net[2].shape[0]), "anchors": int(net[4].shape[0]),
                      "residuals": n_residuals(net), "parameters": int(2 * net[0].shape[0])},
            "environment": common.environment()}


def worker_scipy(spec: dict) -> dict:
    import warnings

    import scipy
    from scipy.optimize import least_squares

    net = make_network(spec["m"], seed=spec.get("seed", 0))
    tiny = make_network(300, seed=3)
    f, j, x, _ = scipy_functions(tiny, {"start": time.perf_counter(), "deadline": math.inf}, [])
    t0 = time.perf_counter()
    f(x)
    j(x)
    warmup_s = time.perf_counter() - t0
    record = []
    limit = spec.get("time_limit_s", SCIPY_TIME_LIMIT_S)
    holder = {"start": 0.0, "deadline": math.inf}
    fun, jac, x0, counts = scipy_functions(net, holder, record)
    status, message = None, ""
    with common.PeakMemory() as mem:
        holder["start"] = time.perf_counter()
        holder["deadline"] = holder["start"] + limit
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = least_squares(fun, x0, jac=jac, method="trf", tr_solver="lsmr", x_scale="jac", ftol=1e-10,
                                  xtol=1e-10, gtol=1e-10, max_nfev=spec.get("max_nfev", 200))
            status, message = int(r.status), r.message
        except _TimeUp:
            message = f"stopped by the time guard after {limit:.0f} s"
        elapsed = time.perf_counter() - holder["start"]
    # the curve: best cost so far at each residual evaluation (trf accepts every decreasing step)
    curve = common.best_so_far(record)
    best = curve[-1][1] if curve else math.inf
    run = {"initial_cost": record[0][1] if record else None, "final_cost": best, "status": status, "message": message,
           "total_time_s": elapsed, "nfev": counts["nfev"], "njev": counts["njev"], "iterations": counts["njev"],
           "fun_s": counts["fun_s"], "jac_s": counts["jac_s"], "timed_out": status is None,
           "time_per_iter_s": elapsed / counts["njev"] if counts["njev"] else None, "curve": curve}
    run.update(mem.as_dict())
    return {"solver": "scipy", "kind": "scipy", "scipy_version": scipy.__version__, "warmup_s": warmup_s,
            "runs": [run], "sizes": {"points": int(net[0].shape[0]), "edges": int(net[2].shape[0]),
                                     "anchors": int(net[4].shape[0]), "residuals": n_residuals(net),
                                     "parameters": int(2 * net[0].shape[0])}}


def worker_jit(spec: dict) -> dict:
    return common.jit_worker(spec, tiny_problem)


HANDLERS = {"sparselm": worker_sparselm, "scipy": worker_scipy, "jit": worker_jit}


# =============================================================================================
# Driver and report

def run(args) -> dict:
    sizes = args.sizes or ([10_000, 100_000] if args.quick else SIZES)
    jobs = []
    for m in sizes:
        jobs.append((m, {"task": "sparselm", "linear_solver": "sparse_normal_cholesky", "repeats": 1 if m >= 10**6 else 3}))
        if m <= DENSE_MAX_RESIDUALS and not args.no_dense:
            jobs.append((m, {"task": "sparselm", "linear_solver": "dense", "repeats": 1}))
        if not args.no_scipy:
            jobs.append((m, {"task": "scipy", "time_limit_s": args.scipy_limit}))
    out = {"mode": "quick" if args.quick else "full", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "problem": {"k_neighbours": K_NEIGHBOURS, "anchor_fraction": ANCHOR_FRACTION, "sigma_d": SIGMA_D,
                       "sigma_a": SIGMA_A, "start_noise": START_NOISE},
           "jit": {}, "results": [], "environment": None}
    print(f"bench_random_sparse: {len(jobs)} measurements", flush=True)
    with_dense = any(m <= DENSE_MAX_RESIDUALS for m in sizes) and not args.no_dense
    for s in ("sparse_normal_cholesky",) + (("dense",) if with_dense else ()):
        out["jit"][s] = j = common.measure_jit(SCRIPT, s, threads=THREADS)
        print(f"  jit {s}: compile {fmt(j.get('jit_s'), '.2f')} s, cache load {fmt(j.get('cache_load_s'), '.2f')} s",
              flush=True)
    for k, (m, task) in enumerate(jobs, 1):
        t0 = time.perf_counter()
        res = common.run_worker(SCRIPT, dict(task, m=m), timeout=task.get("time_limit_s", 0) + 1800)
        res["m_target"] = m
        res["label"] = task.get("linear_solver", task["task"])
        res.setdefault("kind", task["task"])
        out["results"].append(res)
        if out["environment"] is None and "environment" in res:
            out["environment"] = res["environment"]
        if "error" in res:
            brief = "ERROR " + res["error"]
        else:
            r = common.median_run(res["runs"])
            brief = (f"m={res['sizes']['residuals']} cost {r['final_cost']:.8e} {r['iterations']} it "
                     f"{fmt_ms(r['time_per_iter_s'])} ms/it total {r['total_time_s']:.2f} s "
                     f"peak {fmt(r.get('solve_peak_rss_mb'), '.0f')} MB load {r.get('loadavg_before')}")
        print(f"  [{k}/{len(jobs)}] {m:>8} {res['label']:<24} {brief} ({time.perf_counter() - t0:.0f} s)", flush=True)
        common.write_json(args.out, out)
    out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    common.write_json(args.out, out)
    return out


def analyse(data):
    by_m = {}
    for res in data["results"]:
        by_m.setdefault(res["m_target"], []).append(res)
    table = {}
    for m, results in sorted(by_m.items()):
        ok = [r for r in results if "error" not in r]
        best = min((min(run["final_cost"] for run in r["runs"]) for r in ok), default=None)
        rows = []
        for res in results:
            x = {"res": res, "label": res["label"], "kind": res.get("kind")}
            if "error" not in res:
                x["run"] = run = common.median_run(res["runs"])
                x["ttt"] = {rel: common.time_to_cost(run["curve"], best * (1 + rel)) for rel in TARGETS_REL}
            rows.append(x)
        sc = next((x for x in rows if x["kind"] == "scipy" and "run" in x), None)
        for x in rows:
            if "run" in x and sc is not None and x["kind"] != "scipy":
                x["vs_scipy"] = {}
                for rel in TARGETS_REL:
                    a, b = sc["ttt"][rel], x["ttt"][rel]
                    if a is not None and b:
                        x["vs_scipy"][rel] = f"{a / b:.1f}x"
                    elif a is None and b:
                        x["vs_scipy"][rel] = f">{sc['run']['total_time_s'] / b:.0f}x"
                    else:
                        x["vs_scipy"][rel] = "–"
        sizes = next((r["sizes"] for r in ok if "sizes" in r), {})
        table[m] = {"best": best, "rows": rows, "sizes": sizes}
    return table


def _label(x):
    return "scipy least_squares trf/lsmr" if x["kind"] == "scipy" else f"sparselm {x['label']}"


PHASES = ["residual", "jacobian", "gradient", "assembly", "factorization", "solve"]


def report(data) -> str:
    an = analyse(data)
    env = data.get("environment") or {}
    P = data["problem"]
    L = ["# Random sparse problem: sparselm vs scipy.optimize.least_squares", ""]
    L.append(f"Mode: {data.get('mode')}; run {data.get('started')} – {data.get('finished', '(unfinished)')}. "
             f"Machine: {common.env_line(env)}.")
    L += ["", common.LOAD_NOTE, ""]
    L.append(f"Problem: 2-D sensor network, points at unit density (random cells of a unit grid, jittered by "
             f"U(-{JITTER}, {JITTER}): no two points closer than {1 - 2 * JITTER:.1f}), distance residuals to the {P['k_neighbours']} "
             f"nearest neighbours (sigma {P['sigma_d']}), {P['anchor_fraction']:.0%} anchors with a position prior "
             f"(sigma {P['sigma_a']}), start = truth + N(0, {P['start_noise']}^2); residual types from "
             "`sparselm.residuals.library` (DISTANCE_2D, prior(2)); scipy gets the same kernels and the same whitening, its "
             "analytic Jacobian as CSR with a fixed pattern. sparselm: at most 50 iterations, function and "
             "parameter tolerance 1e-10; scipy: trf, tr_solver='lsmr', x_scale='jac', ftol = xtol = gtol = 1e-10, 600 s guard. "
             "*to 1e-3 / 1e-6*: wall time from the start of the call until the cost is within that relative "
             "distance of the best final cost of any solver on the problem. *time/iter*: sparselm (time at the "
             "last iteration - time at iteration 0) / iterations; scipy: wall / Jacobian evaluations. *load / busy*: "
             "1-min load average before the solve / CPUs busy with other work just before the measurement.")
    L.append("")
    for m, info in an.items():
        s = info["sizes"]
        L.append(f"## ~{m:.0e} residuals: {s.get('residuals')} residuals, {s.get('points')} points "
                 f"({s.get('parameters')} parameters), {s.get('edges')} edges, {s.get('anchors')} anchors")
        L.append("")
        L.append(f"Best final cost {fmt(info['best'], '.10e')}.")
        L.append("")
        body = []
        for x in info["rows"]:
            if "run" not in x:
                body.append([_label(x), "ERROR " + x["res"].get("error", "")] + [""] * 10)
                continue
            r = x["run"]
            jit_s = data.get("jit", {}).get(x["label"], {}).get("jit_s")
            body.append([_label(x), r["iterations"], fmt(r["final_cost"], ".10e"), fmt_ms(r.get("time_per_iter_s")),
                         fmt(r["total_time_s"], ".3f"), fmt(r.get("setup_time_s"), ".3f"), fmt(jit_s, ".1f"),
                         fmt(r.get("solve_peak_rss_mb"), ".0f"),
                         fmt(x["ttt"][1e-3], ".3f"), fmt(x["ttt"][1e-6], ".3f"),
                         x.get("vs_scipy", {}).get(1e-3, "–"), x.get("vs_scipy", {}).get(1e-6, "–"),
                         f"{fmt((r.get('loadavg_before') or [None])[0], '.1f')} / "
                         f"{fmt((x['res'].get('machine_before') or {}).get('busy_cpus_before'), '.1f')}"])
        L.append(md_table(["solver", "iters", "final cost", "time/iter ms", "total s", "setup s", "JIT s",
                           "peak RSS MB", "to 1e-3 s", "to 1e-6 s", "vs scipy (1e-3)", "vs scipy (1e-6)",
                           "load / busy"], body))
        L.append("")
        prow = []
        for x in info["rows"]:
            if "run" in x and x["kind"] == "sparselm":
                ph = x["run"]["phase_ms_per_iter"]
                prow.append([_label(x)] + [fmt(ph.get(c), ".2f") for c in PHASES] +
                            [fmt(sum(ph.values()), ".1f"), fmt(x["run"]["time_per_iter_s"] * 1e3, ".1f"),
                             fmt(x["run"]["setup_phases_s"].get("symbolic"), ".3f")])
        if prow:
            L.append("Phase breakdown, ms per LM iteration (symbolic analysis is setup, in seconds):")
            L.append("")
            L.append(md_table(["solver"] + PHASES + ["sum", "time/iter", "symbolic s"], prow))
            L.append("")
        for x in info["rows"]:
            if x["kind"] == "scipy" and "run" in x:
                r = x["run"]
                L.append(f"- scipy: {r['njev']} Jacobian / {r['nfev']} residual evaluations, status {r['status']}: "
                         f"{r['message']}; {r['fun_s'] + r['jac_s']:.2f} s of {r['total_time_s']:.2f} s in the "
                         "kernels (the rest is lsmr and trf).")
                L.append("")
            if x["kind"] == "sparselm" and "run" in x:
                r = x["run"]
                li = r.get("linear_solver", {})
                extra = ", ".join(f"{k} {v}" for k, v in li.items() if k in ("factor_nnz", "nnz_lower", "ordering"))
                L.append(f"- sparselm {x['label']}: {r['termination']}: {r['message']} {extra}")
                L.append("")
    if data.get("jit"):
        L += ["## JIT", "", "First tiny solve (300 residuals) in a fresh process with an empty numba cache vs a filled "
              "one, minus a warm solve.", ""]
        body = [[s, fmt(j.get("import_cold_s"), ".2f"), fmt(j.get("jit_s"), ".2f"), fmt(j.get("cache_load_s"), ".2f")]
                for s, j in data["jit"].items()]
        L.append(md_table(["linear solver", "import s (empty cache)", "compile s", "cache load s"], body))
        L.append("")
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return common.worker_main(HANDLERS, argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1e4 and 1e5 residuals only")
    ap.add_argument("--sizes", type=int, nargs="+", help="residual counts (approximate)")
    ap.add_argument("--no-scipy", action="store_true")
    ap.add_argument("--no-dense", action="store_true", help="leave out the dense solver (slow: seconds per iteration)")
    ap.add_argument("--scipy-limit", type=float, default=SCIPY_TIME_LIMIT_S)
    ap.add_argument("--report", action="store_true", help="only rewrite the md from the JSON")
    ap.add_argument("--update-jit", action="store_true", help="re-measure only the JIT table of the JSON")
    ap.add_argument("--out", default="random_sparse")
    args = ap.parse_args(argv)
    if args.report or args.update_jit:
        import json

        data = json.loads((common.RESULTS / f"{args.out}.json").read_text())
        if args.update_jit:
            for s in list(data.get("jit") or {}):
                data["jit"][s] = common.measure_jit(SCRIPT, s, threads=THREADS)
            data["jit_remeasured"] = time.strftime("%Y-%m-%d %H:%M:%S")
            common.write_json(args.out, data)
    else:
        data = run(args)
    common.write_text(f"{args.out}.md", report(data))
    print(f"wrote {common.RESULTS / (args.out + '.json')} and {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
