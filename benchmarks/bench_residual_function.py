"""Derived (``@sparselm.residual``) BAL reprojection type against the hand-written kernels.

On problem-16-22106-pre and problem-49-7776-pre (the data folder given by SPARSELM_DATA):

* kernel phase: median wall time of the Jacobian kernel (and of the residual kernel) over many
  calls, the types interleaved call by call so that machine load hits them alike; the derived type
  with the rotation precomputed once per camera and, to show what the precomputation buys, with the
  rotation written inline (once per observation);
* whole solve: the same LM solve (fixed iteration count, Schur + CHOLMOD as chosen by "auto") with
  each type, alternating, several times: median total time (set-up included), jacobian phase per
  iteration, peak resident memory during the solve, final cost;
* compile cost of the derived type: a fresh process with an empty generated-code cache (trace,
  generate, numba compile) against one with the cache filled.

Writes benchmarks/results/residual_function.{json,md}.
Usage: python benchmarks/bench_residual_function.py [--repeats 5] [--iterations 10]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import common  # noqa: F401  (sets the thread environment before numpy loads)
from common import RESULTS, cpu_model, data_dir, environment, loadavg, peak_rss_mb, reset_peak_rss, wait_for_quiet

import numpy as np

import sparselm
from sparselm.bal import read_bal
from sparselm.bal.camera import BAL_REPROJECTION_HANDWRITTEN, BAL_REPROJECTION
from sparselm.bal.camera import snavely_reprojection
from sparselm.residuals.geometry import angle_axis_to_matrix

PROBLEMS = {"problem-16-22106-pre": "dubrovnik/problem-16-22106-pre.txt.bz2",
            "problem-49-7776-pre": "ladybug/problem-49-7776-pre.txt.bz2"}


def _inline(camera, point, observed):
    return snavely_reprojection(camera, point, observed, angle_axis_to_matrix(camera[0:3]))


#: the derived type without per-camera precomputation (the rotation once per observation)
INLINE = sparselm.residual(2, (9, 3), 2, name="bal_reprojection_inline")(_inline)

TYPES = {"hand-written": BAL_REPROJECTION_HANDWRITTEN, "derived": BAL_REPROJECTION, "derived, inline rotation": INLINE}


def kernel_times(bal, calls: int) -> dict:
    params = (bal.cameras, bal.points)
    index = np.ascontiguousarray(np.column_stack([bal.camera_index, bal.point_index]))
    data = bal.observations
    n = len(index)
    res = np.zeros((n, 2))
    jac = np.zeros((n, 2, 12))
    views = (jac[:, :, :9], jac[:, :, 9:])
    for rt in TYPES.values():  # compile / load outside the timing
        rt.jacobian_kernel(params, index, data, res, views)
        rt.residual_kernel(params, index, data, res)
    times = {name: {"jacobian": [], "residual": []} for name in TYPES}
    for _ in range(calls):
        for name, rt in TYPES.items():
            t = time.perf_counter()
            rt.jacobian_kernel(params, index, data, res, views)
            times[name]["jacobian"].append(time.perf_counter() - t)
            t = time.perf_counter()
            rt.residual_kernel(params, index, data, res)
            times[name]["residual"].append(time.perf_counter() - t)
    out = {}
    for name, d in times.items():
        out[name] = {k: 1e3 * statistics.median(v) for k, v in d.items()}
        out[name].update({f"{k}_min": 1e3 * min(v) for k, v in d.items()})
    return out


def _problem(bal, rt):
    p = sparselm.Problem()
    p.add_parameter_group("cameras", bal.cameras)
    p.add_parameter_group("points", bal.points, eliminate=True)
    p.add_residual_group("observations", rt, [("cameras", bal.camera_index), ("points", bal.point_index)],
                         bal.observations)
    return p


def solve_times(bal, repeats: int, iterations: int) -> dict:
    options = dict(max_iterations=iterations, function_tolerance=0.0, gradient_tolerance=0.0, parameter_tolerance=0.0)
    for name in ("hand-written", "derived"):  # warm: everything compiled before the timing
        sparselm.solve(_problem(bal, TYPES[name]), max_iterations=1)
    runs = {"hand-written": [], "derived": []}
    for _ in range(repeats):
        for name in runs:
            problem = _problem(bal, TYPES[name])
            reset_peak_rss()
            summary = sparselm.solve(problem, **options)
            runs[name].append({"total_s": summary.total_time_s,
                               "jacobian_ms_per_iter": 1e3 * summary.phases["jacobian"]["seconds"]
                               / max(1, summary.phases["jacobian"]["calls"]),
                               "iterations": summary.n_iterations, "final_cost": summary.final_cost,
                               "peak_rss_mb": peak_rss_mb(), "linear_solver": summary.linear_solver})
    out = {}
    for name, rs in runs.items():
        out[name] = {"total_s": statistics.median(r["total_s"] for r in rs),
                     "total_min_s": min(r["total_s"] for r in rs),
                     "jacobian_min_ms_per_call": min(r["jacobian_ms_per_iter"] for r in rs),
                     "jacobian_ms_per_call": statistics.median(r["jacobian_ms_per_iter"] for r in rs),
                     "iterations": rs[0]["iterations"], "final_cost": rs[0]["final_cost"],
                     "peak_rss_mb": max(r["peak_rss_mb"] or 0.0 for r in rs), "linear_solver": rs[0]["linear_solver"],
                     "runs": rs}
    return out


_COMPILE_CHILD = textwrap.dedent("""
    import time, json
    import numpy as np
    import sparselm
    from sparselm.bal.camera import snavely_reprojection
    from sparselm.residuals.geometry import angle_axis_to_matrix
    t0 = time.perf_counter()
    rt = sparselm.residual(2, (9, 3), 2, name="bal_compile_probe",
                           precompute={"R": ("camera", angle_axis_to_matrix)})(snavely_reprojection)
    t1 = time.perf_counter()
    cams = np.zeros((1, 9)); cams[0, 5] = -5.0; cams[0, 6] = 500.0
    args = ((cams, np.ones((1, 3))), np.zeros((1, 2), dtype=np.int64), np.zeros((1, 2)))
    res = np.zeros((1, 2))
    rt.residual_kernel(*args, res)
    rt.jacobian_kernel(*args, res, (np.zeros((1, 2, 9)), np.zeros((1, 2, 3))))
    t2 = time.perf_counter()
    print(json.dumps({"cache_hit": rt.cache_hit, "define_s": t1 - t0, "first_calls_s": t2 - t1}))
""")


def compile_cost() -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, SPARSELM_CACHE_DIR=cache, PYTHONPATH=str(common.REPO))
        out = []
        for _ in range(2):
            proc = subprocess.run([sys.executable, "-c", _COMPILE_CHILD], env=env, capture_output=True, text=True,
                                  check=True, timeout=900)
            out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {"cold": out[0], "warm": out[1]}


def report(results: dict) -> str:
    lines = ["# Derived residual functions vs hand-written kernels (BAL reprojection)", "",
             f"CPU: {results['cpu']}; numba threads: {results['environment'].get('numba_threads')}; "
             f"load average before/after: {results['load_before']} / {results['load_after']} (a shared 2-core "
             "machine: other work inflates both sides alike, the types being interleaved).", "",
             "Generated by `benchmarks/bench_residual_function.py`. Kernel times are medians over "
             f"{results['calls']} interleaved calls; solves are medians of {results['repeats']} alternating runs of "
             f"{results['iterations']} LM iterations (tolerances 0), set-up included.", ""]
    lines += ["## Kernel phase (ms per call: minimum / median)", "",
              "The hand-written type keeps only its hand-fused Jacobian kernel; its residual kernel is the "
              "generated one. The minimum is the figure least disturbed by other work on the machine.", "",
              "| problem | observations | type | Jacobian kernel | vs hand (min / median) | residual kernel | "
              "vs derived (min / median) |", "|---|---:|---|---:|---:|---:|---:|"]
    for name, r in results["problems"].items():
        hand, derived = r["kernels"]["hand-written"], r["kernels"]["derived"]
        for t, k in r["kernels"].items():
            jac = f"{k['jacobian_min']:.2f} / {k['jacobian']:.2f}"
            jac_ratio = f"{k['jacobian_min'] / hand['jacobian_min']:.2f}x / {k['jacobian'] / hand['jacobian']:.2f}x"
            if t == "hand-written":
                res, res_ratio = "(the generated one)", ""
            else:
                res = f"{k['residual_min']:.2f} / {k['residual']:.2f}"
                res_ratio = (f"{k['residual_min'] / derived['residual_min']:.2f}x / "
                             f"{k['residual'] / derived['residual']:.2f}x")
            lines.append(f"| {name} | {r['observations']} | {t} | {jac} | {jac_ratio} | {res} | {res_ratio} |")
    lines += ["", "## Whole solve", "",
              "Medians (minimum in brackets) over the runs; the jacobian phase is the evaluator's: kernel, "
              "finiteness check, cost.", "",
              "| problem | type | total s | vs hand | jacobian ms/call | vs hand | iterations | final cost | "
              "peak RSS MiB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results["problems"].items():
        hand = r["solve"]["hand-written"]
        for t, s in r["solve"].items():
            lines.append(f"| {name} | {t} | {s['total_s']:.3f} ({s['total_min_s']:.3f}) | "
                         f"{s['total_s'] / hand['total_s']:.2f}x ({s['total_min_s'] / hand['total_min_s']:.2f}x) | "
                         f"{s['jacobian_ms_per_call']:.2f} ({s['jacobian_min_ms_per_call']:.2f}) | "
                         f"{s['jacobian_ms_per_call'] / hand['jacobian_ms_per_call']:.2f}x "
                         f"({s['jacobian_min_ms_per_call'] / hand['jacobian_min_ms_per_call']:.2f}x) | "
                         f"{s['iterations']} | "
                         f"{s['final_cost']:.6e} | {s['peak_rss_mb']:.0f} |")
    c = results["compile"]
    lines += ["", "## Compile cost of the derived type", "",
              "| cache | define (trace + generate) s | first residual + Jacobian call (numba) s |", "|---|---:|---:|",
              f"| cold (empty cache) | {c['cold']['define_s']:.2f} | {c['cold']['first_calls_s']:.2f} |",
              f"| warm (second process) | {c['warm']['define_s']:.3f} | {c['warm']['first_calls_s']:.3f} |", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--calls", type=int, default=61)
    args = ap.parse_args(argv)
    results = {"cpu": cpu_model(), "environment": environment(), "load_before": loadavg(), "repeats": args.repeats,
               "iterations": args.iterations, "calls": args.calls, "problems": {}}
    for name, rel in PROBLEMS.items():
        bal = read_bal(data_dir() / rel)
        quiet = wait_for_quiet(max_wait_s=120.0)
        results["problems"][name] = {"observations": bal.n_observations, "quiet_before": quiet,
                                     "kernels": kernel_times(bal, args.calls),
                                     "solve": solve_times(bal, args.repeats, args.iterations),
                                     "load_after": loadavg()}
        print(name, json.dumps({k: v for k, v in results["problems"][name]["kernels"].items()}), flush=True)
    results["compile"] = compile_cost()
    results["load_after"] = loadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "residual_function.json").write_text(json.dumps(results, indent=1, default=str))
    (RESULTS / "residual_function.md").write_text(report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
