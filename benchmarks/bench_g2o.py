"""Pose graphs (g2o files) against GTSAM 4.3 (pip ``gtsam``), side by side in one run.

For each of the four shared files (``$SPARSELM_G2O_DATA``, default ``../shared/g2o``) the driver
decompresses the file once into a temporary plain ``.g2o`` (GTSAM's readG2o reads plain text) and
runs, each in a fresh process (:func:`common.run_worker`), ``--repeats`` times:

* GTSAM: ``readG2o``, a tight prior (sigma 1e-6 on every tangent coordinate) on the first pose,
  ``LevenbergMarquardtOptimizer`` with default parameters but relative/absolute error tolerance
  1e-10/1e-12; the error reported is that of the between factors only (the graph from readG2o
  without the prior), 1/2 sum e^T Lambda e. Its per-iteration errors and times come from the
  optimizer's iteration hook.
* sparselm: ``read_g2o`` + ``build_problem`` + ``solve`` (function/gradient/parameter tolerance
  1e-10/1e-12/1e-12, initial trust-region radius 1e8 and ``factorization='auto'`` (simplicial or
  supernodal by the factor's flops per entry, :mod:`sparselm.linalg.cholmod`), see SPARSELM_OPTIONS;
  the general sparse path: CHOLMOD on the normal equations), after a warm-up solve of the same file in the same process (so numba's kernels are loaded, not compiled; the
  JIT cost is measured separately with an empty numba cache).

Both whole times include reading the file and setting up. "Time to GTSAM's error" is the first time
(from before reading the file) at which sparselm's cost is <= GTSAM's final error (same run) *
(1 + 1e-6); the target is at most 0.5x GTSAM's whole time. Peak memory is each process's resident
high-water mark during the solve (reading included). Results: ``results/g2o.json`` and ``g2o.md``.

    python benchmarks/bench_g2o.py [--repeats 3] [--files intel,sphere2500]
"""
from __future__ import annotations

import argparse
import bz2
import os
import sys
import tempfile
import time
from pathlib import Path

import common

FILES = ("intel", "parking-garage", "sphere2500", "smallGrid3D")
#: GTSAM's LM starts nearly as Gauss-Newton (lambda 1e-5); sparselm's default radius 1e4 (Ceres') damps the
#: first steps from odometry more. The radius 1e8 is the same near-Gauss-Newton start; 'auto' chooses
#: simplicial (sparse 2-D graphs) or supernodal (sphere2500's dense factor).
SPARSELM_OPTIONS = dict(max_iterations=100, function_tolerance=1e-10, gradient_tolerance=1e-12,
                        parameter_tolerance=1e-12, initial_trust_region_radius=1e8, factorization="auto",
                        verbose=False)
RELATIVE_MARGIN = 1e-6


def g2o_dir() -> Path:
    env = os.environ.get("SPARSELM_G2O_DATA")
    return Path(env) if env else (common.REPO.parent / "shared" / "g2o").resolve()


# ---------------------------------------------------------------------------------------------
# Workers (each in a fresh process)

def gtsam_worker(spec: dict) -> dict:
    """readG2o + prior + LM in GTSAM; times, iterations, error of the between factors, curve."""
    import gtsam
    import numpy as np

    path, is3d = spec["path"], spec["dimension"] == 3
    curve = []
    with common.PeakMemory() as mem:
        t0 = time.perf_counter()
        graph, initial = gtsam.readG2o(path, is3d)
        t_read = time.perf_counter() - t0
        with_prior = gtsam.NonlinearFactorGraph(graph)
        if is3d:
            noise = gtsam.noiseModel.Diagonal.Sigmas(np.full(6, 1e-6))
            with_prior.add(gtsam.PriorFactorPose3(0, initial.atPose3(0), noise))
        else:
            noise = gtsam.noiseModel.Diagonal.Sigmas(np.full(3, 1e-6))
            with_prior.add(gtsam.PriorFactorPose2(0, initial.atPose2(0), noise))
        params = gtsam.LevenbergMarquardtParams()
        params.setRelativeErrorTol(1e-10)
        params.setAbsoluteErrorTol(1e-12)
        params.iterationHook = lambda it, before, after: curve.append([time.perf_counter() - t0, after])
        optimizer = gtsam.LevenbergMarquardtOptimizer(with_prior, initial, params)
        t_setup = time.perf_counter() - t0
        result = optimizer.optimize()
        total = time.perf_counter() - t0
    return {"total_time_s": total, "read_s": t_read, "setup_s": t_setup - t_read, "optimize_s": total - t_setup,
            "iterations": optimizer.iterations(), "initial_error": graph.error(initial),
            "final_error": graph.error(result), "final_error_with_prior": with_prior.error(result),
            "curve": curve, **mem.as_dict()}


def sparselm_worker(spec: dict) -> dict:
    """Warm-up solve, then the measured read + build + solve; phases and the cost curve."""
    import numpy as np

    import sparselm
    from sparselm.g2o import build_problem, graph_error, read_g2o, solution_to_graph

    path = spec["path"]
    warm = time.perf_counter()
    sparselm.solve(build_problem(read_g2o(path)), **dict(SPARSELM_OPTIONS, max_iterations=1))
    warm = time.perf_counter() - warm
    with common.PeakMemory() as mem:
        t0 = time.perf_counter()
        graph = read_g2o(path)
        t_read = time.perf_counter() - t0
        problem = build_problem(graph)
        t_build = time.perf_counter() - t0 - t_read
        summary = sparselm.solve(problem, **SPARSELM_OPTIONS)
        total = time.perf_counter() - t0
    out = common.summarize_solve(summary)
    before_solve = t_read + t_build
    poses = problem.parameter_groups["poses"].values
    out.update({"whole_time_s": total, "read_s": t_read, "build_s": t_build, "warmup_s": warm,
                "curve_whole": [[before_solve + t, c] for t, c in out["curve"]],
                "final_error_check": graph_error(solution_to_graph(problem, graph)),
                "max_quaternion_norm_error": float(np.abs(np.linalg.norm(poses[:, 3:], axis=1) - 1).max())
                if graph.kind.dimension == 3 else None, **mem.as_dict()})
    return out


def tiny_pose_graphs():
    """A Problem with a tiny 3-D and a tiny 2-D pose graph (a ring of 8 poses each), for the JIT test."""
    import numpy as np
    from scipy.spatial.transform import Rotation

    import sparselm
    from sparselm.residuals.pose_graph import SE2_BETWEEN, SE3_BETWEEN

    rng = np.random.default_rng(0)
    n = 8
    p = sparselm.Problem()
    poses3 = np.hstack([rng.normal(size=(n, 3)), Rotation.random(n, random_state=1).as_quat()])
    poses2 = np.column_stack([rng.normal(size=(n, 2)), rng.uniform(-3, 3, n)])
    ring = np.stack([np.arange(n), (np.arange(n) + 1) % n], 1)
    p.add_parameter_group("p3", poses3, manifold="se3", constant=[0])
    p.add_parameter_group("p2", poses2, manifold="se2", constant=[0])
    z3 = np.tile([1.0, 0, 0, 0, 0, 0, 1], (n, 1))
    p.add_residual_group("b3", SE3_BETWEEN, [("p3", ring[:, 0]), ("p3", ring[:, 1])], z3, information=np.eye(6))
    p.add_residual_group("b2", SE2_BETWEEN, [("p2", ring[:, 0]), ("p2", ring[:, 1])], np.tile([1.0, 0, 0.5], (n, 1)),
                         information=np.eye(3))
    return p


def jit_worker(spec: dict) -> dict:
    return common.jit_worker(spec, make_problem=tiny_pose_graphs)


# ---------------------------------------------------------------------------------------------
# Driver

def _plain_copy(name: str, tmp: Path) -> Path:
    src = g2o_dir() / f"{name}.g2o.bz2"
    if not src.is_file():
        src = g2o_dir() / f"{name}.g2o"
    if not src.is_file():
        raise SystemExit(f"bench_g2o: {name}.g2o(.bz2) not found in {g2o_dir()} (set SPARSELM_G2O_DATA)")
    raw = src.read_bytes()
    out = tmp / f"{name}.g2o"
    out.write_bytes(bz2.decompress(raw) if raw[:3] == b"BZh" else raw)
    return out


def run(files, repeats: int, quiet_wait_s: float) -> dict:
    from sparselm.g2o import read_g2o

    script = Path(__file__).resolve()
    results = {"environment": common.environment(), "files": {}, "repeats": repeats,
               "sparselm_options": SPARSELM_OPTIONS}
    results["jit"] = common.measure_jit(script, "sparse_normal_cholesky")
    with tempfile.TemporaryDirectory(prefix="sparselm-g2o-") as tmp:
        for name in files:
            plain = _plain_copy(name, Path(tmp))
            graph = read_g2o(plain)
            spec = {"path": str(plain), "dimension": graph.kind.dimension}
            runs = {"gtsam": [], "sparselm": []}
            for _ in range(repeats):  # interleaved, so that both see the same machine load
                runs["gtsam"].append(common.run_worker(script, dict(spec, task="gtsam"), quiet_wait_s=quiet_wait_s))
                runs["sparselm"].append(common.run_worker(script, dict(spec, task="sparselm"),
                                                          quiet_wait_s=quiet_wait_s))
            g = common.median_run(runs["gtsam"])
            s = common.median_run(runs["sparselm"], key="whole_time_s")
            entry = {"vertices": graph.n_vertices, "edges": graph.n_edges, "dimension": graph.kind.dimension,
                     "gtsam_runs": runs["gtsam"], "sparselm_runs": runs["sparselm"]}
            if "error" not in g and "error" not in s:
                target = g["final_error"] * (1 + RELATIVE_MARGIN)
                ttt = common.time_to_cost(s["curve_whole"], target)
                entry.update({"gtsam": g, "sparselm": s, "target_error": target, "sparselm_time_to_target_s": ttt,
                              "ratio_to_gtsam": None if ttt is None else ttt / g["total_time_s"]})
            results["files"][name] = entry
            print(f"{name}: {_line(entry)}", flush=True)
    return results


def _line(e: dict) -> str:
    if "gtsam" not in e:
        return "a run failed: " + "; ".join(r.get("error", "") for r in e["gtsam_runs"] + e["sparselm_runs"]
                                            if "error" in r)
    g, s = e["gtsam"], e["sparselm"]
    return (f"GTSAM {g['final_error']:.7g} in {g['total_time_s']:.3f} s ({g['iterations']} it); sparselm "
            f"{s['final_cost']:.7g} in {s['whole_time_s']:.3f} s ({s['iterations']} it), to GTSAM's error "
            f"{common.fmt(e['sparselm_time_to_target_s'], '.3f')} s (ratio {common.fmt(e['ratio_to_gtsam'], '.2f')})")


def _load(run: dict) -> str:
    """The 1-minute load average before a measured run."""
    load = run.get("loadavg_before") or [None]
    return common.fmt(load[0], ".1f")


PHASES = ("jacobian", "gradient", "assembly", "factorization", "solve", "residual")


def report(results: dict) -> str:
    env = results["environment"]
    rows, phase_rows = [], []
    for name, e in results["files"].items():
        if "gtsam" not in e:
            rows.append([name, "failed"] + [""] * 11)
            continue
        g, s = e["gtsam"], e["sparselm"]
        rows.append([name, f"{e['vertices']}/{e['edges']}", common.fmt(g["final_error"], ".7g"),
                     common.fmt(s["final_cost"], ".7g"), g["iterations"], s["iterations"],
                     common.fmt_ms(g["total_time_s"]), common.fmt_ms(s["whole_time_s"]),
                     common.fmt_ms(e["sparselm_time_to_target_s"]), common.fmt(e["ratio_to_gtsam"], ".2f"),
                     common.fmt(g["solve_peak_rss_mb"], ".0f"), common.fmt(s["solve_peak_rss_mb"], ".0f"),
                     f"{_load(g)} / {_load(s)}"])
        ph = s["phases"]
        phase_rows.append([name, common.fmt_ms(s["read_s"]), common.fmt_ms(s["build_s"]),
                           common.fmt_ms(s["setup_time_s"])]
                          + [common.fmt_ms(ph.get(p, {}).get("seconds")) for p in PHASES]
                          + [common.fmt_ms(g["read_s"]), common.fmt_ms(g["setup_s"]), common.fmt_ms(g["optimize_s"])])
    jit = results.get("jit", {})
    missed = []
    for name, e in results["files"].items():
        if "gtsam" in e and (e["ratio_to_gtsam"] is None or e["ratio_to_gtsam"] > 0.5):
            s = e["sparselm"]
            whole = s["whole_time_s"]
            share = {p: s["phases"].get(p, {}).get("seconds", 0.0) / whole for p in PHASES}
            missed.append(f"- {name}: ratio {common.fmt(e['ratio_to_gtsam'], '.2f')}; of sparselm's whole "
                          f"{whole * 1e3:.0f} ms, factorization {share['factorization']:.0%}, reading "
                          f"{s['read_s'] / whole:.0%}, layout + symbolic analysis {s['setup_time_s'] / whole:.0%}, "
                          f"Jacobian + assembly {share['jacobian'] + share['assembly']:.0%}, "
                          f"{s['iterations']} iterations vs GTSAM's {e['gtsam']['iterations']}.")
    lines = [
        "# Pose graphs: sparselm vs GTSAM 4.3", "",
        f"Machine: {common.env_line(env)}.", "",
        f"CPU model: **{env.get('cpu_model')}**. Median of {results['repeats']} runs per side, each in a fresh "
        "process, GTSAM and sparselm interleaved. Errors are GTSAM's graph error of the between factors, "
        "1/2 sum e^T Lambda e with e = Log(Z^-1 T_i^-1 T_j). Whole time = reading the (plain) file + set-up + "
        "solve. *to GTSAM's error*: first time sparselm's cost is <= GTSAM's final error x (1 + 1e-6); "
        "target: at most 0.5x GTSAM's whole time (*ratio*). Peak = resident high-water mark during the "
        "measured run (MB).", "",
        common.md_table(["file", "vertices/edges", "GTSAM error", "sparselm error", "GTSAM it", "sparselm it",
                         "GTSAM ms", "sparselm ms", "sparselm to GTSAM's error ms", "ratio", "GTSAM peak MB",
                         "sparselm peak MB", "load GTSAM / sparselm"], rows),
        "", "Where sparselm's time goes (ms, whole measured run; the LM phases summed over all iterations) and "
        "GTSAM's read / set-up / optimize split:", "",
        common.md_table(["file", "read", "build", "setup (layout + symbolic)"] + list(PHASES)
                        + ["GTSAM read", "GTSAM setup", "GTSAM optimize"], phase_rows),
        "", f"JIT (not in the times above: the workers warm up first): compiling sparselm's kernels for a tiny "
        f"pose graph with an empty numba cache takes {common.fmt(jit.get('jit_s'), '.1f')} s, loading them from "
        f"the cache {common.fmt(jit.get('cache_load_s'), '.2f')} s.", "",
        common.LOAD_NOTE,
    ]
    if missed:
        lines += ["", "## Where the 0.5x target is missed, and what would close it", ""] + missed + [
            "", "What would close it: (1) the numeric factorization (most of the 3-D time) runs on one BLAS thread "
            "by the project's thread policy; a multi-threaded BLAS inside CHOLMOD's supernodal factorization, or a "
            "block-aware (6x6) supernodal factorization as GTSAM's multifrontal elimination, would shorten it; "
            "(2) reading: a compiled tokenizer instead of Python's str.split per line (the numbers are already "
            "parsed in C; the reader takes about as long as GTSAM's C++ one); (3) on graphs of a few hundred poses the fixed costs (layout, CHOLMOD's symbolic "
            "analysis, one numba parallel launch per kernel per iteration) dominate: serial kernels below a "
            "size threshold would cut the launches."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--files", default=",".join(FILES))
    ap.add_argument("--quiet-wait", type=float, default=5.0, help="seconds to wait for a quiet machine per run")
    args = ap.parse_args(argv)
    results = run([f for f in args.files.split(",") if f], args.repeats, args.quiet_wait)
    common.write_json("g2o", results)
    common.write_text("g2o.md", report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(common.worker_main({"gtsam": gtsam_worker, "sparselm": sparselm_worker, "jit": jit_worker},
                                    sys.argv[1:]))
    sys.exit(main())
