"""Set-up time of ``sparselm.solve`` per phase on synthetic problems of 10^5, 10^6 and 10^7 observations (issue 18).

Set-up is everything ``solve`` does before the first evaluation: the layout (column numbering, instance
order, block-use lists), the ``auto`` choice of linear solver, the memory estimate and check, the
evaluator's arrays, and the linear solver's structure and symbolic analysis (Summary.setup_phases).
Target (issue 18): under 2 s per 10^7 observations.

Problems: :func:`sparselm.bal.synthetic.synthetic_problem`, 4 observations per point, 1 camera per
250 points (100 / 1,000 / 10,000 cameras); each size in a fresh process, with a warm numba cache
(a tiny solve first). Within that process the set-up is run ``REPEATS`` times (``max_iterations=0``:
set-up plus iteration 0): the first run pays the first touch of freshly mapped memory, as a user's
one solve does; the median of all and the first are reported. 10^7 is skipped unless the machine has
more than 12 GiB available (MemAvailable, or a memory cgroup's room). Also run with ``linear_solver='sparse_normal_cholesky'``
at 10^5 and 10^6 (the general path: J^T J pattern and CHOLMOD analysis). The CPU model and the load
average are recorded.

    python benchmarks/bench_setup.py [--sizes 1e5,1e6,1e7]   # writes benchmarks/results/setup.{json,md}
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (sets the thread policy before numpy loads)
from common import fmt, md_table  # noqa: E402

SCRIPT = Path(__file__).resolve()
REPEATS = 3
POINTS_PER_CAMERA = 250
MIN_AVAILABLE_GIB_FOR_1E7 = 12.0
PHASES = ("layout", "solver_choice", "memory_estimate", "evaluator", "linear_solver")


def worker(spec: dict) -> dict:
    import numpy as np

    import sparselm
    from sparselm.bal.problem import build_problem
    from sparselm.bal.synthetic import synthetic_problem

    n_obs = int(float(spec["observations"]))
    n_points = n_obs // 4
    n_cameras = max(2, n_points // POINTS_PER_CAMERA)
    common.warm_up(common.tiny_ba_problem, spec["linear_solver"], 2)
    t0 = time.perf_counter()
    bal = synthetic_problem(n_cameras, n_points).initial
    generate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    problem = build_problem(bal)
    build_s = time.perf_counter() - t0
    runs = []
    for _ in range(REPEATS):
        s = sparselm.solve(problem, linear_solver=spec["linear_solver"], max_iterations=0, threads=2)
        runs.append({"setup_s": s.setup_time_s, "phases": dict(s.setup_phases), "symbolic_s":
                     s.phases.get("symbolic", {}).get("seconds", 0.0), "solver": s.options_used["linear_solver"],
                     "first_linearization_s": s.first_linearization_s, "load": common.loadavg()})
    med = {k: float(np.median([r["phases"][k] for r in runs])) for k in PHASES}
    return {"observations": int(bal.n_observations), "cameras": n_cameras, "points": n_points,
            "generate_s": generate_s, "build_problem_s": build_s, "runs": runs, "median_phases": med,
            "median_setup_s": float(np.median([r["setup_s"] for r in runs])),
            "solver": runs[0]["solver"], "linear_solver_requested": spec["linear_solver"]}


def report(data: dict) -> str:
    env = data["environment"]
    rows = []
    for r in data["results"]:
        if "error" in r:
            rows.append([r["spec"]["observations"], r["spec"]["linear_solver"], "error: " + r["error"]] + [""] * 9)
            continue
        first = r["runs"][0]
        per_1e7 = r["median_setup_s"] * 1e7 / r["observations"]
        rows.append([f"{r['observations']:,}", f"{r['linear_solver_requested']} -> {r['solver']}",
                     fmt(r["median_setup_s"], ".3f"), fmt(first["setup_s"], ".3f"), fmt(per_1e7, ".2f")]
                    + [fmt_ms(r["median_phases"][k]) for k in PHASES]
                    + [" ".join(fmt(x["load"][0], ".1f") for x in r["runs"])])
    return "\n".join([
        "# Set-up time of `sparselm.solve` per phase (synthetic BAL problems)", "",
        f"CPU: **{env.get('cpu_model')}**. {common.env_line(env)}", "",
        f"Synthetic problems, 4 observations per point, {POINTS_PER_CAMERA} points per camera, 2 threads, warm "
        f"numba cache. Median of {REPEATS} set-ups in one process (the first also shown: it pays the first "
        "touch of new memory). Target (issue 18): under 2 s per 10^7 observations. Phase times in ms.", "",
        md_table(["observations", "solver", "set-up s (median)", "set-up s (first)", "s per 10^7 obs"]
                 + list(PHASES) + ["load (1 min) per run"], rows), "",
        "Phases: *layout* column numbering, instance order (stable counting sort by the highest block), "
        "block-use lists; *solver_choice* the `auto` rule (for Schur: the block-graph estimate of S's "
        "factor); *memory_estimate* the estimate and the check against available memory; *evaluator* its "
        "arrays; *linear_solver* its structure (Schur: cells, pairs, S's pattern; sparse normal: J^T J's "
        "pattern) and CHOLMOD's analysis where CHOLMOD is used.", ""])


def fmt_ms(seconds) -> str:
    return common.fmt_ms(seconds)


def main(argv) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e5,1e6,1e7")
    args = ap.parse_args(argv)
    sizes = [float(x) for x in args.sizes.split(",")]
    from sparselm.util.system_memory import available_memory

    found = available_memory()
    available = found[0] / 2 ** 30 if found else 0.0
    specs = []
    for n in sizes:
        if n >= 1e7 and available <= MIN_AVAILABLE_GIB_FOR_1E7:
            print(f"skipping {n:.0e}: {available:.1f} GiB available <= {MIN_AVAILABLE_GIB_FOR_1E7}", flush=True)
            continue
        specs.append({"task": "setup", "observations": n, "linear_solver": "auto"})
    specs += [{"task": "setup", "observations": n, "linear_solver": "sparse_normal_cholesky"} for n in sizes if n <= 1e6]
    results = []
    for spec in specs:
        r = common.run_worker(SCRIPT, spec, timeout=3600, quiet_wait_s=5)
        results.append(r)
        print(spec, r.get("median_setup_s"), r.get("median_phases"), r.get("error", ""), r.get("stderr_tail", "")[-500:]
              if "error" in r else "", flush=True)
    data = {"environment": common.environment(), "available_gib": available, "results": results}
    common.write_json("setup", data)
    common.write_text("setup.md", report(data))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(common.worker_main({"setup": worker}, sys.argv[1:]))
    sys.exit(main(sys.argv[1:]))
