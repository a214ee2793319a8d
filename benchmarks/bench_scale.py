"""Scale: memory per observation, set-up time and time per LM iteration of ``iterative_schur`` on
synthetic problems shaped like BAL's largest (final-13682: 13,682 cameras, 4.46 M points, 28.99 M
observations: 6.5 observations per point, 2,119 per camera), and the CG inner loop's counts.

    python benchmarks/bench_scale.py                     # 1e5, 1e6, 1e7 observations, report + plot
    python benchmarks/bench_scale.py --sizes 1e6         # chosen sizes
    /usr/bin/time -v python benchmarks/bench_scale.py --one 2.9e7 --iterations 3   # one size, this process
    python benchmarks/bench_scale.py --report-only       # rewrite scale.md / scale.png from scale.json

    python benchmarks/bench_scale.py --sizes 1e7 --no-hugepage   # numpy without MADV_HUGEPAGE (see below)

Every size runs in a fresh process (:func:`common.run_worker`; ``--one`` runs in this process so
that ``/usr/bin/time -v`` sees it). Bytes per observation: the resident high-water mark during
``build_problem`` + ``solve`` (VmHWM reset just before) minus the resident size just before, i.e.
everything the solve allocates, the Problem's own copies of the input included, divided by the
observations; ``with input`` also counts the generated BAL arrays (32 bytes per observation),
measured from before the generator ran. Set-up: ``Summary.setup_time_s`` (layout, solver choice,
memory check, evaluator, structure) and the first linearisation. The first linearisation is the first
write to the Jacobian (192 bytes per observation), so it pays the kernel's page faults; numpy advises
huge pages for arrays over 4 MiB, and where the kernel's THP ``defrag`` setting is ``madvise`` a fault
on such an array may compact memory first. ``--no-hugepage`` runs the worker with numpy's documented
``NUMPY_MADVISE_HUGEPAGE=0`` to measure that share (runs kept apart in the results). Results go to
``benchmarks/results/scale.json`` (merged by size), ``scale.md`` and ``scale.png``, CPU named.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import common  # noqa: E402  (benchmarks/common.py: sets the thread policy before numpy loads)

SCRIPT = Path(__file__).resolve()
RESULTS_JSON = common.RESULTS / "scale.json"
OBS_PER_POINT = 28_987_644 / 4_456_117   # final-13682
OBS_PER_CAMERA = 28_987_644 / 13_682
DEFAULT_SIZES = (1e5, 1e6, 1e7)


def shape(n_obs: float) -> dict:
    """Cameras and points of a final-13682-shaped problem with about ``n_obs`` observations."""
    return {"n_cameras": max(int(round(n_obs / OBS_PER_CAMERA)), 8), "n_points": int(round(n_obs / OBS_PER_POINT)),
            "observations_per_point": OBS_PER_POINT}


def worker_scale(spec: dict) -> dict:
    """One size: generate, warm the kernels on a tiny problem, then build + solve with HWM reset."""
    import numpy as np
    import sparselm
    from sparselm.bal import build_problem, synthetic_problem

    options = dict(linear_solver=spec["linear_solver"], max_iterations=spec["iterations"],
                   function_tolerance=0.0, gradient_tolerance=0.0, parameter_tolerance=0.0)
    t0 = time.perf_counter()
    sparselm.solve(build_problem(synthetic_problem(30, 2000, OBS_PER_POINT, seed=1).initial),
                   **dict(options, max_iterations=2, linear_solver="iterative_schur"))
    warmup_s = time.perf_counter() - t0
    gc.collect()
    rss_before_input = common.rss_mb()
    t0 = time.perf_counter()
    bal = synthetic_problem(**shape(spec["n_obs"]), seed=0).initial
    generate_s = time.perf_counter() - t0
    n = int(bal.observations.shape[0])
    gc.collect()
    quiet = common.wait_for_quiet(max_wait_s=30.0)
    with common.PeakMemory() as mem:
        t0, cpu0 = time.perf_counter(), time.process_time()
        problem = build_problem(bal)
        build_s = time.perf_counter() - t0
        summary = sparselm.solve(problem, **options)
        cpu_s = time.process_time() - cpu0
    its = summary.iterations
    lm = its[1:]
    per_iter = (lm[-1].total_time_s - its[0].total_time_s) / len(lm) if lm else None
    mib = 2.0 ** 20
    return {
        "n_obs": n, "n_cameras": int(bal.cameras.shape[0]), "n_points": int(bal.points.shape[0]),
        "linear_solver": summary.options_used["linear_solver"],
        "linear_solver_reason": summary.options_used.get("linear_solver_reason"),
        "bytes_per_observation": (mem.peak_mb - mem.baseline_mb) * mib / n,
        "bytes_per_observation_with_input": (mem.peak_mb - rss_before_input) * mib / n,
        "peak_rss_mb": mem.peak_mb, "rss_before_solve_mb": mem.baseline_mb, "rss_before_input_mb": rss_before_input,
        "generate_s": generate_s, "build_problem_s": build_s, "setup_s": summary.setup_time_s,
        "first_linearization_s": its[0].total_time_s - summary.setup_time_s,
        "setup_and_first_linearization_s": its[0].total_time_s, "time_per_iteration_s": per_iter,
        "cg_iterations": [r.linear_solver_iterations for r in lm], "iteration_s": [r.iteration_time_s for r in lm],
        "costs": [r.cost for r in its], "total_s": summary.total_time_s + build_s, "warmup_s": warmup_s,
        "cpu_s": cpu_s, "setup_phases": summary.setup_phases, "quiet": quiet,
        "numpy_hugepage": os.environ.get("NUMPY_MADVISE_HUGEPAGE", "1") != "0",
        "phases": summary.phases, "cpu": common.cpu_model(), "memory": mem.as_dict(),
        "options": {k: summary.options_used[k] for k in ("preconditioner", "cg_termination", "cg_tolerance",
                                                          "max_cg_iterations", "threads")},
    }


HANDLERS = {"scale": worker_scale}


def merge(results):
    data = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {"runs": {}}
    for r in results:
        if "error" in r:
            print(f"size {r.get('spec', {}).get('n_obs')}: {r['error']}\n{r.get('stderr_tail', '')}", file=sys.stderr)
            continue
        data["runs"][f"{r['n_obs']:.3g}" + ("" if r.get("numpy_hugepage", True) else " no-hugepage")] = r
    data["environment"] = common.environment(load_cholmod=False)
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(data, indent=1, default=str))
    return data


def load_note(run: dict) -> str:
    """The 1-minute load average before and after the measured solve ('?' for runs that predate it)."""
    mem = run.get("memory", {})
    before, after = mem.get("loadavg_before") or ["?"], mem.get("loadavg_after") or ["?"]
    return f"{before[0]} / {after[0]}"


def report(data) -> str:
    runs = sorted(data["runs"].values(), key=lambda r: (r["n_obs"], not r.get("numpy_hugepage", True)))
    env = data.get("environment", {})
    lines = ["# Scale: iterative Schur on final-13682-shaped synthetic problems", "",
             f"CPU: {env.get('cpu_model', runs[0]['cpu'] if runs else '?')}; numba threads {env.get('numba_threads', '?')}", "",
             "Synthetic problems from `sparselm.bal.synthetic` with final-13682's ratios (6.5 observations per "
             "point, 2,119 per camera); the linear solver named in the table (`auto` resolved), tolerances off, fixed LM iteration count. "
             "Bytes/obs: peak resident memory during build_problem + solve minus the resident size before, per "
             "observation (`with input`: from before the BAL arrays were generated). Set-up: layout, solver "
             "choice, memory check, allocations (`setup`), then the first linearisation. Measured on a shared "
             "machine (2 cores, other jobs running): times are pessimistic. Produced by `benchmarks/bench_scale.py`.",
             "", "| observations | cameras | points | solver | bytes/obs | with input | peak RSS | set-up | "
             "first linearisation | s / LM iteration | CG per LM iteration | load average (1 min, before / after) |",
             "|" + "---|" * 12]
    for r in runs:
        lines.append(f"| {r['n_obs']:,} | {r['n_cameras']:,} | {r['n_points']:,} | "
                     f"{'auto -> ' if r.get('spec', {}).get('linear_solver') == 'auto' else ''}{r['linear_solver']}"
                     f"{'' if r.get('numpy_hugepage', True) else ' (numpy huge pages off)'} | "
                     f"{r['bytes_per_observation']:.0f} | {r['bytes_per_observation_with_input']:.0f} | "
                     f"{r['peak_rss_mb'] / 1024:.2f} GiB | {r['setup_s']:.2f} s | {r['first_linearization_s']:.2f} s | "
                     f"{r['time_per_iteration_s']:.2f} | {', '.join(str(c) for c in r['cg_iterations'])} | "
                     f"{load_note(r)} |")
    lines += ["", "Set-up per 10^7 observations: " + ", ".join(
        f"{r['n_obs']:.2g}{'' if r.get('numpy_hugepage', True) else ' (huge pages off)'}: "
        f"{r['setup_and_first_linearization_s'] * 1e7 / r['n_obs']:.2f} s (with the first "
        f"linearisation), {r['setup_s'] * 1e7 / r['n_obs']:.2f} s (set-up alone)" for r in runs), ""]
    return "\n".join(lines)


def plot(data, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted((r for r in data["runs"].values() if r.get("numpy_hugepage", True)), key=lambda r: r["n_obs"])
    n = [r["n_obs"] for r in runs]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(n, [r["bytes_per_observation"] for r in runs], "o-", label="solve (Problem included)")
    ax.plot(n, [r["bytes_per_observation_with_input"] for r in runs], "s--", label="with the input BAL arrays")
    ax.axhline(400, color="grey", lw=0.8, ls=":", label="400 bytes/observation")
    ax.set_xscale("log")
    ax.set_xlabel("observations")
    ax.set_ylabel("peak bytes per observation")
    ax.set_ylim(0, max(500, max(r["bytes_per_observation_with_input"] for r in runs) * 1.1))
    ax.set_title(f"iterative_schur memory, {runs[0]['cpu'] if runs else ''}", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) > 1 and argv[1] == "--worker":
        return common.worker_main(HANDLERS, argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=float, nargs="+", default=list(DEFAULT_SIZES))
    ap.add_argument("--one", type=float, help="run one size in this process (for /usr/bin/time -v)")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--linear-solver", default="iterative_schur", help="iterative_schur (default) or auto")
    ap.add_argument("--no-hugepage", action="store_true",
                    help="workers run with NUMPY_MADVISE_HUGEPAGE=0 (with --one: set it yourself)")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv[1:])
    if args.report_only:
        data = json.loads(RESULTS_JSON.read_text())
    elif args.one:
        spec = {"n_obs": args.one, "iterations": args.iterations, "linear_solver": args.linear_solver}
        data = merge([dict(worker_scale(spec), spec=spec)])
    else:
        data = merge([common.run_worker(SCRIPT, {"task": "scale", "n_obs": n, "iterations": args.iterations,
                                                 "linear_solver": args.linear_solver}, timeout=7200, quiet_wait_s=0,
                                            env={"NUMPY_MADVISE_HUGEPAGE": "0"} if args.no_hugepage else None)
                      for n in args.sizes])
    (common.RESULTS / "scale.md").write_text(report(data))
    plot(data, common.RESULTS / "scale.png")
    print(report(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
