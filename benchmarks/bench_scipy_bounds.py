"""Bound-constrained sparse problems: sparselm.least_squares vs scipy.optimize.least_squares (trf).

The banded problems of bench_scipy_banded.py (broyden, banded_nonlinear, smoothing) with bounds
that bind: the unconstrained minimum x* is computed first (sparselm, tight tolerances), then every
third parameter gets the upper bound x*_i - 0.05 (1 + |x*_i|) and every parameter the loose lower
bound -10 (inactive); x0 is the problem's usual start, moved 1e-3 inside an upper bound it would
exceed. Both solvers get the same analytic sparse Jacobian and the same tolerances
(ftol = xtol = gtol = 1e-12); scipy runs its default for sparse Jacobians (trf with lsmr), with an
evaluation budget on the smoothing problem only (SCIPY_BUDGET).

Reported per problem and size: whole-call wall time (set-up included), final cost, their relative
difference (the acceptance bar is 1e-9), nfev, status, the number of active bounds at the end, and
the peak resident memory of the process so far.

    python benchmarks/bench_scipy_bounds.py                          # the DEFAULT_CASES
    python benchmarks/bench_scipy_bounds.py --cases broyden:100000 smoothing:20000

Writes benchmarks/results/scipy_bounds.json and .md (CPU model named).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sparselm  # noqa: E402  (first: sets the BLAS/numba thread policy before numpy loads BLAS)
import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402

from benchmarks.bench_scipy_banded import PROBLEMS, X0  # noqa: E402
from benchmarks.common import cpu_model, process_peak_rss_mb, write_json, write_text  # noqa: E402

TOLERANCES = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12)
#: smoothing (J^T J condition ~1e4): scipy's lsmr-based trf with these bounds creeps (200 evaluations
#: at 2000 residuals leave it 2e-5 above sparselm's minimum; at 1e5 residuals it had not finished after
#: 5 minutes), so it runs small and with an evaluation budget, reported as such
DEFAULT_CASES = ["broyden:100000", "banded_nonlinear:100000", "smoothing:2000", "broyden:1000000",
                 "banded_nonlinear:1000000"]
SCIPY_BUDGET = {"smoothing": 2000}


def bounded_problem(name: str, m: int):
    """(fun, jac, x0, lb, ub) of the bound-constrained version of a banded problem with m residuals."""
    fun, jac, _, n_of = PROBLEMS[name]
    n = n_of(m)
    x0 = np.full(n, X0[name])
    free = sparselm.least_squares(fun, x0, jac=jac, **TOLERANCES)
    lb = np.full(n, -10.0)
    ub = np.full(n, np.inf)
    ub[::3] = free.x[::3] - 0.05 * (1.0 + np.abs(free.x[::3]))
    x0 = np.minimum(x0, ub - 1e-3)
    return fun, jac, x0, lb, ub


def timed(solve):
    t = time.perf_counter()
    res = solve()
    return res, time.perf_counter() - t


def run(name: str, m: int) -> dict:
    fun, jac, x0, lb, ub = bounded_problem(name, m)
    ours, t_ours = timed(lambda: sparselm.least_squares(fun, x0, jac, (lb, ub), **TOLERANCES))
    budget = {"max_nfev": SCIPY_BUDGET[name]} if name in SCIPY_BUDGET else {}
    ref, t_ref = timed(lambda: scipy.optimize.least_squares(fun, x0, jac, (lb, ub), **TOLERANCES, **budget))
    rel = abs(ours.cost - ref.cost) / max(abs(ref.cost), 1e-300)
    row = {"problem": name, "residuals": m, "parameters": x0.size, "bounds_active_sparselm": int(np.sum(ours.active_mask != 0)),
           "bounds_active_scipy": int(np.sum(ref.active_mask != 0)), "sparselm_s": t_ours, "scipy_s": t_ref,
           "sparselm_cost": float(ours.cost), "scipy_cost": float(ref.cost), "cost_rel_diff": rel,
           "sparselm_nfev": int(ours.nfev), "scipy_nfev": int(ref.nfev), "sparselm_status": int(ours.status),
           "scipy_status": int(ref.status), "scipy_max_nfev": budget.get("max_nfev"),
           "feasible": bool(np.all((ours.x >= lb) & (ours.x <= ub))),
           "peak_rss_mb": process_peak_rss_mb()}
    print(row, flush=True)
    return row


def markdown(rows, cpu) -> str:
    lines = ["# Bound-constrained banded problems: sparselm.least_squares vs scipy trf (lsmr)", "",
             f"CPU: {cpu}. Same analytic Jacobians, tolerances {TOLERANCES}, one run each, whole-call wall time "
             "(set-up included). Written by benchmarks/bench_scipy_bounds.py.", "",
             "| problem | residuals | active bounds (ours / scipy) | sparselm s | scipy s | speed-up | cost sparselm "
             "| cost scipy | rel. diff | nfev (ours / scipy) | status (ours / scipy) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['problem']} | {r['residuals']:,} | {r['bounds_active_sparselm']} / "
                     f"{r['bounds_active_scipy']} | {r['sparselm_s']:.2f} | {r['scipy_s']:.2f} | "
                     f"{r['scipy_s'] / r['sparselm_s']:.1f}x | {r['sparselm_cost']:.12e} | {r['scipy_cost']:.12e} | "
                     f"{r['cost_rel_diff']:.1e} | {r['sparselm_nfev']} / {r['scipy_nfev']} | "
                     f"{r['sparselm_status']} / {r['scipy_status']} |")
    lines += ["", "scipy status 0: it stopped at the evaluation budget given (smoothing: "
              f"{SCIPY_BUDGET['smoothing']}), before its own tests held; see the module docstring."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES,
                        help="problem:residuals pairs (default: %(default)s)")
    a = parser.parse_args(argv)
    sparselm.least_squares(PROBLEMS["broyden"][0], -np.ones(30), PROBLEMS["broyden"][1], (-10.0, 0.0))  # JIT
    rows = []
    for case in a.cases:
        name, m = case.split(":")
        rows.append(run(name, int(m)))
    cpu = cpu_model()
    write_json("scipy_bounds", {"cpu": cpu, "tolerances": TOLERANCES, "rows": rows})
    write_text("scipy_bounds.md", markdown(rows, cpu))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
