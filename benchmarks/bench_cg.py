"""The CG inner loop of ``iterative_schur``: forcing rule, iteration cap and preconditioner, measured.

    python benchmarks/bench_cg.py                       # BAL files in $SPARSELM_DATA + synthetic 1e5, 1e6
    python benchmarks/bench_cg.py --synthetic 1e5       # chosen synthetic sizes only (no BAL files: --no-bal)

For each problem, every configuration (termination, max_cg_iterations, preconditioner) solves from
the same start with Ceres' default tolerances (function 1e-6, at most 50 LM iterations), in a fresh
process each (:func:`common.run_worker`): LM iterations, CG iterations per LM iteration (mean, max),
total time (set-up included) and the time to reach within 1e-5 (relative) of the lowest final cost
any configuration reached. Synthetic problems have final-13682's shape (see bench_scale.py).
Results: ``benchmarks/results/cg.json`` and ``cg.md``, CPU named.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import common  # noqa: E402  (sets the thread policy before numpy loads)
from bench_scale import shape

SCRIPT = Path(__file__).resolve()
BAL_FILES = ("ladybug/problem-49-7776-pre.txt.bz2", "trafalgar/problem-21-11315-pre.txt.bz2",
             "dubrovnik/problem-16-22106-pre.txt.bz2")
CONFIGS = (("residual", 500, "schur_jacobi"), ("quadratic", 500, "schur_jacobi"), ("quadratic", 100, "schur_jacobi"),
           ("quadratic", 50, "schur_jacobi"), ("quadratic", 100, "jacobi"))


def worker_cg(spec: dict) -> dict:
    import sparselm
    from sparselm.bal import build_problem, read_bal, synthetic_problem

    if spec.get("file"):
        bal = read_bal(spec["file"])
    else:
        bal = synthetic_problem(**shape(spec["n_obs"]), seed=0).initial
    term, cap, pc = spec["config"]
    options = dict(linear_solver="iterative_schur", cg_termination=term, max_cg_iterations=cap, preconditioner=pc)
    sparselm.solve(build_problem(synthetic_problem(30, 2000, 6.5, seed=1).initial), **dict(options, max_iterations=2))
    s = sparselm.solve(build_problem(bal), **options)
    lm = s.iterations[1:]
    cg = [r.linear_solver_iterations for r in lm]
    return {"n_obs": int(bal.observations.shape[0]), "config": spec["config"], "lm_iterations": len(lm),
            "cg_mean": sum(cg) / max(len(cg), 1), "cg_max": max(cg, default=0), "cg": cg, "final_cost": s.final_cost,
            "total_s": s.total_time_s, "curve": [(r.total_time_s, r.cost) for r in s.iterations],
            "termination": s.termination, "cpu": common.cpu_model()}


HANDLERS = {"cg": worker_cg}


def report(data) -> str:
    lines = ["# The CG inner loop of iterative_schur", "", f"CPU: {data['environment'].get('cpu_model')}, numba "
             f"threads {data['environment'].get('numba_threads')}; shared machine under load (times pessimistic). "
             "Produced by `benchmarks/bench_cg.py`.", "",
             "| problem | observations | termination | max CG | preconditioner | LM iterations | CG per LM iteration "
             "(mean / max) | total s | s to 1e-5 of best | final cost |", "|" + "---|" * 10]
    for name, runs in data["problems"].items():
        ok = [r for r in runs if "error" not in r]
        best = min(r["final_cost"] for r in ok)
        for r in ok:
            hit = next((t for t, c in r["curve"] if c <= best * (1 + 1e-5)), None)
            term, cap, pc = r["config"]
            lines.append(f"| {name} | {r['n_obs']:,} | {term} | {cap} | {pc} | {r['lm_iterations']} | "
                         f"{r['cg_mean']:.1f} / {r['cg_max']} | {r['total_s']:.1f} | "
                         f"{'-' if hit is None else f'{hit:.1f}'} | {r['final_cost']:.6e} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) > 1 and argv[1] == "--worker":
        return common.worker_main(HANDLERS, argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic", type=float, nargs="*", default=[1e5, 1e6])
    ap.add_argument("--no-bal", action="store_true")
    args = ap.parse_args(argv[1:])
    problems = {}
    if not args.no_bal:
        for f in BAL_FILES:
            path = common.data_dir() / f
            if path.exists():
                problems[path.name.split("-pre")[0]] = {"file": str(path)}
    for n in args.synthetic:
        problems[f"synthetic {n:.0e}"] = {"n_obs": n}
    data = {"problems": {}, "environment": common.environment(load_cholmod=False)}
    for name, spec in problems.items():
        data["problems"][name] = [common.run_worker(SCRIPT, dict(spec, task="cg", config=c), timeout=3600,
                                                    quiet_wait_s=0) for c in CONFIGS]
        print(name, "done", file=sys.stderr, flush=True)
    (common.RESULTS / "cg.json").write_text(json.dumps(data, indent=1, default=str))
    (common.RESULTS / "cg.md").write_text(report(data))
    print(report(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
