"""Benchmark: covariance of every camera block, against the solve itself.

    python benchmarks/bench_covariance.py            # problem-49, problem-16 and synthetic 10^6 observations
    python benchmarks/bench_covariance.py --quick    # the two real problems only

For each problem, in a fresh worker process (see :mod:`common`): a warm-up (tiny solve and tiny
covariance, so the kernels are compiled or loaded from numba's cache), the solve (default options,
whole-solve time, per-phase times, peak resident memory), then ``sparselm.covariance`` of all camera
blocks, gauge-free (the Moore-Penrose inverse; nothing is held in a BAL problem): whole time, its
phases and its own peak memory. Also measured on the same factor of the reduced camera matrix: the
selected inversion (Takahashi) against solving for the camera columns of S^-1 (all of them on the
real problems, a tenth on the synthetic one, scaled up), the alternative the issue asks to compare.
Results: ``results/covariance.json`` and ``results/covariance.md``, with the CPU model.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import common

THREADS = 2
GIB = 1024.0
PROBLEMS = [
    {"name": "problem-49-7776-pre", "kind": "bal", "file": "ladybug/problem-49-7776-pre.txt.bz2"},
    {"name": "problem-16-22106-pre", "kind": "bal", "file": "dubrovnik/problem-16-22106-pre.txt.bz2"},
    {"name": "synthetic-1e6", "kind": "synthetic", "n_cameras": 1000, "n_points": 250_000},
]


def _load(p: dict):
    from sparselm.bal import read_bal, synthetic_problem

    if p["kind"] == "bal":
        return read_bal(str(common.data_dir() / p["file"]))
    return synthetic_problem(p["n_cameras"], p["n_points"], observations_per_point=4.0, seed=0).initial


def _selected_vs_solves(problem, fraction: float) -> dict:
    """Takahashi against solves with the camera columns, on one factor of S (gauge fixed)."""
    import numpy as np

    from sparselm.core.layout import build_layout
    from sparselm.covariance.gauge import fixing_coordinates, null_space, pin_coordinates
    from sparselm.covariance.information import Information
    from sparselm.covariance.selected_inverse import SelectedInverse
    from sparselm.linalg.cholmod import CholmodFactor
    from sparselm.util.timing import PhaseTimer

    info = Information(problem, build_layout(problem), PhaseTimer(), 1e-10)
    basis = null_space(info.matrix, 1e-10)
    lower, _ = pin_coordinates(info.matrix, fixing_coordinates(basis, np.ones(basis.shape[0], dtype=bool)))
    factor = CholmodFactor(lower)
    assert factor.factorize(lower)
    t0 = time.perf_counter()
    SelectedInverse(*factor.lower_factor())
    takahashi_s = time.perf_counter() - t0
    n = lower.shape[0]
    count = max(1, int(n * fraction))
    t0 = time.perf_counter()
    for start in range(0, count, 256):
        stop = min(count, start + 256)
        rhs = np.zeros((n, stop - start))
        rhs[np.arange(start, stop), np.arange(stop - start)] = 1.0
        factor.solve(rhs)
    solves_s = (time.perf_counter() - t0) * n / count
    return {"reduced_columns": n, "factor_nnz": factor.factor_nnz(), "takahashi_s": takahashi_s,
            "column_solves_s": solves_s, "column_solves_measured_fraction": count / n}


def worker(spec: dict) -> dict:
    import sparselm
    from sparselm.bal import build_problem
    from sparselm.covariance import covariance

    p = spec["problem"]
    t0 = time.perf_counter()
    bal = _load(p)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tiny = common.tiny_ba_problem()
    sparselm.solve(tiny, threads=THREADS, max_iterations=3)
    covariance(tiny, None, blocks=["cameras", "points"])
    warmup_s = time.perf_counter() - t0
    problem = build_problem(bal)
    with common.PeakMemory() as solve_mem:
        t0 = time.perf_counter()
        summary = sparselm.solve(problem, threads=THREADS)
        solve_s = time.perf_counter() - t0
    with common.PeakMemory() as cov_mem:
        t0 = time.perf_counter()
        cov = covariance(problem, summary, blocks="cameras")
        cov_s = time.perf_counter() - t0
    mats = cov.matrices["cameras"]
    import numpy as np

    diag = np.einsum("nii->ni", mats)
    result = {"name": p["name"], "sizes": {"cameras": bal.n_cameras, "points": bal.n_points,
                                           "observations": bal.n_observations},
              "load_s": load_s, "warmup_s": warmup_s, "solve": common.summarize_solve(summary), "solve_s": solve_s,
              "solve_memory": solve_mem.as_dict(), "linear_solver": summary.options_used["linear_solver"],
              "covariance_s": cov_s, "covariance_phases": cov.phases, "covariance_memory": cov_mem.as_dict(),
              "gauge": cov.gauge, "undefined_cameras": len(cov.undefined["cameras"]),
              "all_finite_psd_diagonal": bool(np.isfinite(mats).all() and (diag > 0).all()),
              "environment": common.environment()}
    result["selected_vs_solves"] = _selected_vs_solves(problem, 1.0 if p["kind"] == "bal" else 0.1)
    return result


def report(results: list) -> str:
    env = next((r["environment"] for r in results if "environment" in r), {})
    cpu = env.get("cpu_model") or common.cpu_model()
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["spec"]["problem"]["name"], "error: " + r["error"]] + [""] * 8)
            continue
        rows.append([r["name"], f"{r['sizes']['cameras']} / {r['sizes']['observations']:,}", r["linear_solver"],
                     common.fmt(r["solve_s"], ".2f"), common.fmt(r["covariance_s"], ".2f"),
                     common.fmt(r["covariance_s"] / r["solve_s"], ".2f"),
                     common.fmt(r["solve_memory"]["solve_peak_rss_mb"] / GIB, ".2f"),
                     common.fmt(r["covariance_memory"]["solve_peak_rss_mb"] / GIB, ".2f"),
                     common.fmt(r["selected_vs_solves"]["takahashi_s"], ".3f"),
                     common.fmt(r["selected_vs_solves"]["column_solves_s"], ".3f")])
    table = common.md_table(["problem", "cameras / observations", "solver", "solve s", "covariance s",
                             "cov / solve", "solve peak GiB", "covariance peak GiB", "Takahashi s",
                             "column solves s"], rows)
    phases = []
    for r in results:
        if "error" not in r:
            phases.append(f"- {r['name']}: " + ", ".join(f"{k} {v:.3f} s" for k, v in r["covariance_phases"].items()
                                                          if k.startswith("covariance")))
    return (f"# Covariance of all camera blocks vs the solve\n\nCPU: {cpu}, {THREADS} threads "
            f"(a shared 2-core machine: load averages are in covariance.json). Gauge-free BAL problems: the "
            "Moore-Penrose covariance (7-dimensional similarity gauge found numerically). Peak memory is the "
            "resident high-water mark during the solve, and separately during the covariance.\n\n"
            f"{table}\n\nCovariance phases:\n" + "\n".join(phases) + "\n\n"
            "Takahashi: the selected inversion of the reduced camera matrix's factor; column solves: solving "
            "for every camera column of S^-1 with the same factor (timed on a tenth of the columns for the "
            "synthetic problem and scaled up).\n")


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the two real problems only")
    args = parser.parse_args(argv)
    specs = [p for p in PROBLEMS if not (args.quick and p["kind"] == "synthetic")]
    results = []
    for p in specs:
        print(f"covariance benchmark: {p['name']} ...", flush=True)
        res = common.run_worker(Path(__file__), {"task": "covariance", "problem": p}, timeout=3000.0)
        results.append(res)
        print("  ", res.get("error") or f"solve {res['solve_s']:.2f} s, covariance {res['covariance_s']:.2f} s",
              flush=True)
    common.write_json("covariance", {"results": results, "cpu": common.cpu_model()})
    common.write_text("covariance.md", report(results))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(common.worker_main({"covariance": worker}, sys.argv[1:]))
    sys.exit(main(sys.argv[1:]))
