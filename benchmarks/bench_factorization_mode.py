"""Simplicial or supernodal CHOLMOD: the measurements behind ``factorization='auto'`` (issue 18).

Part 1, matrices. The matrices the solvers really hand to CHOLMOD, at the starting point with a
Marquardt damping of 1e-4 diag(J^T J): the normal matrices J^T J of the BAL problems (9-parameter
cameras, 3x3 point blocks) and of a synthetic one (:func:`sparselm.bal.synthetic.synthetic_problem`,
500 cameras, 50,000 points), their Schur complements S (9x9 camera blocks), and the normal matrices of
the pose graphs in the data folder given by SPARSELM_G2O_DATA. For each: the factor's flops per entry
(sum c_k^2 / sum c_k, :mod:`sparselm.linalg.symbolic`), CHOLMOD's analysis time in each mode, and the
minimum of 7 alternating numeric factorizations per mode. ``auto``'s pick is marked against the
faster mode. (Values matter: made-up diagonally dominant values decay to subnormal numbers in the
fill and slow the simplicial factorization several-fold.)

Part 2, solves. ``linear_solver='sparse_normal_cholesky'`` on the BAL problems, 10 LM iterations,
with the former default ``factorization='supernodal'`` and the new ``'auto'``, alternating, 3 rounds,
warm numba cache, one process: total time (set-up included), set-up, factorization phase.

BLAS on one thread (sparselm's policy, :mod:`sparselm.util.threads`); the CPU model and the load
average are recorded; minimum (part 1) and median (part 2) times are reported.

    python benchmarks/bench_factorization_mode.py   # writes benchmarks/results/factorization_mode.{json,md}
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (sets the thread policy before numpy loads)
from common import fmt, md_table  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import sparselm  # noqa: E402
from sparselm.bal.io import read_bal  # noqa: E402
from sparselm.bal.problem import build_problem  # noqa: E402
from sparselm.bal.synthetic import synthetic_problem  # noqa: E402
from sparselm.core.evaluator import Evaluator  # noqa: E402
from sparselm.core.layout import build_layout  # noqa: E402
from sparselm.g2o import build_problem as build_g2o_problem, read_g2o  # noqa: E402
from sparselm.linalg import registry  # noqa: E402
from sparselm.linalg.base import LinearSolverOptions  # noqa: E402
from sparselm.linalg.cholmod import SUPERNODAL_SWITCH, CholmodFactor  # noqa: E402
from sparselm.linalg.symbolic import factor_statistics  # noqa: E402
from sparselm.util.timing import PhaseTimer  # noqa: E402

BAL = [("problem-16-22106-pre", "dubrovnik/problem-16-22106-pre.txt.bz2"),
       ("problem-21-11315-pre", "trafalgar/problem-21-11315-pre.txt.bz2"),
       ("problem-49-7776-pre", "ladybug/problem-49-7776-pre.txt.bz2")]
G2O = ["intel", "parking-garage", "smallGrid3D", "sphere2500"]
REPEATS = 7
ROUNDS = 3
NOISE_NOTE = ("Where CHOLMOD's `auto` resolves to supernodal (the BAL normal matrices, 41-133 flops per entry of L, "
              "see the first table) both columns run the same method, so their difference is the run-to-run noise of "
              "the shared machine; the first table's comparisons of the two methods on the BAL normal matrices also "
              "changed winner between runs under this load (bench runs of 23:10 and 23:20 UTC, load 8-14).")


def real_matrix(problem, solver_name: str) -> sp.csc_matrix:
    """lower(J^T J + D) (sparse_normal_cholesky) or lower(S) (sparse_schur) at the starting point,
    D = 1e-4 diag(J^T J) (+1e-12)."""
    timer = PhaseTimer()
    layout = build_layout(problem)
    evaluator = Evaluator(problem, layout, timer)
    values = {g.name: g.values.copy() for g in problem.parameter_groups.values()}
    evaluator.linearize(values)
    solver = registry.get(solver_name).solver(layout, evaluator, timer, LinearSolverOptions())
    solver.linearize()
    diagonal = 1e-4 * evaluator.column_norms + 1e-12
    if solver_name == "sparse_schur":
        assert solver.solve(diagonal).ok
        lower = solver.structure.pattern.matrix(solver.s_values.copy())
    else:
        values = solver.values.copy()
        values[solver.pattern.diagonal_positions] += diagonal
        lower = solver.pattern.matrix(values)
    return sp.csc_matrix(lower)


def measure_matrix(name: str, lower: sp.csc_matrix) -> dict:
    lower.sort_indices()
    factors, times = {}, {"simplicial": [], "supernodal": []}
    for mode in times:
        factors[mode] = CholmodFactor(lower, "amd", mode)
    auto = CholmodFactor(lower, "amd", "auto")
    for _ in range(REPEATS):
        for mode, f in factors.items():
            t0 = time.perf_counter()
            assert f.factorize(lower)
            times[mode].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    stats = factor_statistics(lower.indptr, lower.indices, factors["simplicial"].permutation())
    count_s = time.perf_counter() - t0
    best = min(times, key=lambda m: min(times[m]))
    return {"matrix": name, "columns": lower.shape[0], "nnz_lower": int(lower.nnz), "nnz_L": stats.nnz,
            "flops_per_nnz": stats.flops_per_nnz, "count_s": count_s,
            "analysis_s": {m: f.analysis_seconds for m, f in factors.items()}, "auto_analysis_s": auto.analysis_seconds,
            "factor_s": {m: min(t) for m, t in times.items()}, "auto_picks": auto.method(), "faster": best,
            "load": common.loadavg()}


def solve_rounds(name: str, bal) -> dict:
    runs = {"supernodal": [], "auto": []}
    sparselm.solve(build_problem(bal), linear_solver="sparse_normal_cholesky", max_iterations=1, threads=2)  # warm
    for _ in range(ROUNDS):
        for mode in runs:
            s = sparselm.solve(build_problem(bal), linear_solver="sparse_normal_cholesky", factorization=mode,
                               max_iterations=10, threads=2)
            runs[mode].append({"total_s": s.total_time_s, "setup_s": s.setup_time_s,
                               "factorization_s": s.phases["factorization"]["seconds"],
                               "symbolic_s": s.phases["symbolic"]["seconds"], "final_cost": s.final_cost,
                               "mode": s.linear_solver["factorization"], "load": common.loadavg()})
    med = {m: {k: float(np.median([r[k] for r in rs])) for k in ("total_s", "setup_s", "factorization_s", "symbolic_s")}
           for m, rs in runs.items()}
    return {"problem": name, "runs": runs, "median": med}


def report(data: dict) -> str:
    env = data["environment"]
    lines = ["# CHOLMOD simplicial vs supernodal: the rule of `factorization='auto'`", "",
             f"CPU: **{env.get('cpu_model')}**. {common.env_line(env)}", "",
             f"`auto` is CHOLMOD's own choice: supernodal when sum c_k^2 / sum c_k >= {SUPERNODAL_SWITCH:g} "
             "(its supernodal_switch). Minimum of "
             f"{REPEATS} alternating numeric factorizations per mode, AMD ordering, one BLAS thread.", "",
             md_table(["matrix", "columns", "nnz(L)", "flops / nnz(L)", "simplicial ms", "supernodal ms",
                       "supernodal / simplicial", "auto picks", "faster", "analysis ms (simpl. / super. / auto)",
                       "count ms", "load"],
                      [[r["matrix"], r["columns"], r["nnz_L"], fmt(r["flops_per_nnz"], ".1f"),
                        fmt(1e3 * r["factor_s"]["simplicial"], ".1f"), fmt(1e3 * r["factor_s"]["supernodal"], ".1f"),
                        fmt(r["factor_s"]["supernodal"] / r["factor_s"]["simplicial"], ".2f"),
                        r["auto_picks"] + (" (faster)" if r["auto_picks"] == r["faster"] else " (**slower**)"), r["faster"],
                        " / ".join(fmt(1e3 * v, ".1f") for v in (*r["analysis_s"].values(), r["auto_analysis_s"])),
                        fmt(1e3 * r["count_s"], ".1f"), fmt(r["load"][0], ".1f")] for r in data["matrices"]]),
             "", f"## sparse_normal_cholesky solves, 10 LM iterations, median of {ROUNDS} alternating rounds", "",
             md_table(["problem", "supernodal (old default) total s", "auto total s", "auto / supernodal",
                       "factorization s (super. / auto)", "set-up s (super. / auto)", "auto's mode"],
                      [[r["problem"], fmt(r["median"]["supernodal"]["total_s"], ".3f"), fmt(r["median"]["auto"]["total_s"], ".3f"),
                        fmt(r["median"]["auto"]["total_s"] / r["median"]["supernodal"]["total_s"], ".2f"),
                        f"{fmt(r['median']['supernodal']['factorization_s'], '.3f')} / {fmt(r['median']['auto']['factorization_s'], '.3f')}",
                        f"{fmt(r['median']['supernodal']['setup_s'], '.3f')} / {fmt(r['median']['auto']['setup_s'], '.3f')}",
                        r["runs"]["auto"][0]["mode"]] for r in data["solves"]]), "", NOISE_NOTE, ""]
    return "\n".join(lines)


def main() -> int:
    warnings.simplefilter("ignore")
    data_dir = common.data_dir()
    g2o_dir = Path(os.environ.get("SPARSELM_G2O_DATA", common.REPO.parent / "shared" / "g2o"))
    matrices, solves = [], []
    bals = {name: read_bal(data_dir / rel) for name, rel in BAL if (data_dir / rel).exists()}
    sources = [(name, build_problem(bal)) for name, bal in bals.items()]
    sources.append(("synthetic 500 cameras", build_problem(synthetic_problem(500, 50_000).initial)))
    for name, problem in sources:
        matrices.append(measure_matrix(f"{name} J^T J", real_matrix(problem, "sparse_normal_cholesky")))
        matrices.append(measure_matrix(f"{name} S", real_matrix(problem, "sparse_schur")))
    for name in G2O:
        path = g2o_dir / f"{name}.g2o.bz2"
        if path.exists():
            matrices.append(measure_matrix(f"{name} (pose graph)",
                                           real_matrix(build_g2o_problem(read_g2o(path)), "sparse_normal_cholesky")))
    for r in matrices:
        print(r["matrix"], fmt(r["flops_per_nnz"], ".1f"), r["factor_s"], r["auto_picks"], flush=True)
    for name, bal in bals.items():
        solves.append(solve_rounds(name, bal))
        print(name, solves[-1]["median"], flush=True)
    data = {"environment": common.environment(), "matrices": matrices, "solves": solves}
    common.write_json("factorization_mode", data)
    common.write_text("factorization_mode.md", report(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
