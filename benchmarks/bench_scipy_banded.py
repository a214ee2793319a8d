"""sparselm.least_squares vs scipy.optimize.least_squares (trf + lsmr) on banded sparse problems.

Problems (m residuals):

    broyden            Broyden tridiagonal f_i = (3 - 2 x_i) x_i - x_{i-1} - 2 x_{i+1} + 1, m = n,
                       zero residual at the solution; x0 = -1
    banded_nonlinear   the Broyden rows plus n rows 0.5 (exp(-x_i) - 1.5) + 0.3 sin(x_i)^2, m = 2n,
                       a non-zero minimum; x0 = -1
    smoothing          curve smoothing through a nonlinearity: rows exp(x_i) - y_i (noisy samples of
                       exp(0.5 sin(6 pi t))) and 30 (x_{i-1} - 2 x_i + x_{i+1}); m = 2n - 2; x0 = 0.
                       J^T J has condition number ~1e4 (independent of n): the case where an
                       iterative inner solver (lsmr) needs many iterations and a direct one does not.

Both well-conditioned problems are easy for lsmr (a few dozen iterations per step); the smoothing
problem is not. All three are reported; none is left out.

Jacobians: 'analytic' (a callable returning a CSR matrix, the same function for both solvers) and
'fd' (2-point finite differences with ``jac_sparsity``; both colour the columns). scipy runs with its
defaults for a sparse Jacobian (method='trf', tr_solver='lsmr'); sparselm with its defaults.

Measured per run: wall time of the whole call, final cost, nfev/njev, status, and the time to
reach the common target cost max(final costs) * (1 + 1e-6), taken from each solver's callback
(both record (time, cost) after every accepted step, so both are measured the same way). numba's
JIT compilation happens in a warm-up solve first and is reported separately.

    python benchmarks/bench_scipy_banded.py                    # 1e5 and 1e6 residuals
    python benchmarks/bench_scipy_banded.py --sizes 100000 --repeats 3

Writes benchmarks/results/scipy_banded.json and .md. On a shared 2-core machine the timings are
noisy: sparselm is run ``--repeats`` times (min and median reported), scipy ``--scipy-repeats``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sparselm  # noqa: E402  (first: sets the BLAS/numba thread policy before numpy loads BLAS)
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from sparselm.util import threads  # noqa: E402
from sparselm.scipy_api import least_squares  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


# -- problems ----------------------------------------------------------------------------------
def broyden(x):
    f = (3 - 2 * x) * x + 1
    f[1:] -= x[:-1]
    f[:-1] -= 2 * x[1:]
    return f


def broyden_jac(x):
    n = x.size
    return sp.diags([-np.ones(n - 1), 3 - 4 * x, -2 * np.ones(n - 1)], [-1, 0, 1], format="csr")


def banded_nonlinear(x):
    return np.concatenate([broyden(x), 0.5 * (np.exp(-x) - 1.5) + 0.3 * np.sin(x) ** 2])


def banded_nonlinear_jac(x):
    d = sp.diags(-0.5 * np.exp(-x) + 0.6 * np.sin(x) * np.cos(x))
    return sp.vstack([broyden_jac(x), d], format="csr")


SMOOTHING_WEIGHT = 30.0


def smoothing_data(n, seed=0):
    t = np.linspace(0.0, 1.0, n)
    rng = np.random.default_rng(seed)
    return np.exp(0.5 * np.sin(6 * np.pi * t)) + 0.05 * rng.standard_normal(n)


_SMOOTHING_Y = {}


def _y(n):
    if n not in _SMOOTHING_Y:
        _SMOOTHING_Y.clear()
        _SMOOTHING_Y[n] = smoothing_data(n)
    return _SMOOTHING_Y[n]


def smoothing(x):
    s = SMOOTHING_WEIGHT
    return np.concatenate([np.exp(x) - _y(x.size), s * (x[:-2] - 2 * x[1:-1] + x[2:])])


def second_difference(n, s=1.0):
    return sp.diags([np.full(n - 2, s), np.full(n - 2, -2 * s), np.full(n - 2, s)], [0, 1, 2], shape=(n - 2, n),
                    format="csr")


def smoothing_jac(x):
    return sp.vstack([sp.diags(np.exp(x)), second_difference(x.size, SMOOTHING_WEIGHT)], format="csr")


def tridiagonal(n):
    return sp.diags([np.ones(n - 1), np.ones(n), np.ones(n - 1)], [-1, 0, 1], format="csr")


PROBLEMS = {
    # name: (residual, jacobian, sparsity(n), parameters for m residuals)
    "broyden": (broyden, broyden_jac, tridiagonal, lambda m: m),
    "banded_nonlinear": (banded_nonlinear, banded_nonlinear_jac,
                         lambda n: sp.vstack([tridiagonal(n), sp.identity(n)], format="csr"), lambda m: m // 2),
    "smoothing": (smoothing, smoothing_jac, lambda n: sp.vstack([sp.identity(n), second_difference(n)], format="csr"),
                  lambda m: (m + 2) // 2),
}
X0 = {"broyden": -1.0, "banded_nonlinear": -1.0, "smoothing": 0.0}


# -- one timed run -------------------------------------------------------------------------------
def run_one(solver: str, problem: str, m: int, mode: str) -> dict:
    fun, jac, sparsity, n_of = PROBLEMS[problem]
    n = n_of(m)
    x0 = np.full(n, X0[problem])
    trace = []
    t0 = [0.0]

    def callback(intermediate_result):
        trace.append((time.perf_counter() - t0[0], float(intermediate_result.cost)))

    kwargs = dict(callback=callback)
    if mode == "analytic":
        kwargs["jac"] = jac
    else:
        kwargs["jac_sparsity"] = sparsity(n)
    call = least_squares if solver == "sparselm" else scipy.optimize.least_squares
    t0[0] = time.perf_counter()
    res = call(fun, x0, **kwargs)
    wall = time.perf_counter() - t0[0]
    out = {"solver": solver, "problem": problem, "m": m, "n": n, "jac": mode, "wall_s": wall,
           "cost": float(res.cost), "initial_cost": float(0.5 * np.sum(fun(x0) ** 2)), "nfev": int(res.nfev),
           "njev": None if res.njev is None else int(res.njev), "status": int(res.status),
           "message": res.message, "trace": trace}
    if solver == "sparselm":
        out["phases"] = res.summary.phases
        out["linear_solver"] = res.summary.linear_solver
        out["fd_function_calls"] = res.summary.problem["fd_function_calls"]
    return out


def time_to(trace, target):
    for t, c in trace:
        if c <= target:
            return t
    return None


def warm_up() -> float:
    """Compile numba kernels (cached on disk after the first run) on a tiny problem."""
    t = time.perf_counter()
    least_squares(broyden, -np.ones(50), jac=broyden_jac)
    least_squares(banded_nonlinear, -np.ones(50), jac_sparsity=PROBLEMS["banded_nonlinear"][2](50), loss="soft_l1")
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="residual counts m")
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument("--modes", nargs="+", default=["analytic", "fd"], choices=["analytic", "fd"])
    ap.add_argument("--repeats", type=int, default=3, help="sparselm runs per case")
    ap.add_argument("--scipy-repeats", type=int, default=1, help="scipy runs per case")
    ap.add_argument("--out", default=str(RESULTS / "scipy_banded"), help="output path without extension")
    args = ap.parse_args(argv)

    jit_s = warm_up()
    print(f"warm-up (numba JIT / cache load): {jit_s:.2f} s", flush=True)
    rows = []
    for m in args.sizes:
        for problem in args.problems:
            for mode in args.modes:
                sl = [run_one("sparselm", problem, m, mode) for _ in range(args.repeats)]
                sc = [run_one("scipy", problem, m, mode) for _ in range(args.scipy_repeats)]
                target = max(max(r["cost"] for r in sl), max(r["cost"] for r in sc)) * (1 + 1e-6)
                for r in sl + sc:
                    r["time_to_target_s"] = time_to(r["trace"], target)
                    r["target_cost"] = target

                def stats(runs, key):
                    v = [r[key] for r in runs if r[key] is not None]
                    return (min(v), statistics.median(v)) if v else (None, None)

                row = {"problem": problem, "m": m, "n": sl[0]["n"], "jac": mode, "target_cost": target,
                       "sparselm": {"wall_min_s": stats(sl, "wall_s")[0], "wall_median_s": stats(sl, "wall_s")[1],
                                    "to_target_min_s": stats(sl, "time_to_target_s")[0],
                                    "cost": sl[0]["cost"], "nfev": sl[0]["nfev"], "njev": sl[0]["njev"],
                                    "status": sl[0]["status"], "fd_function_calls": sl[0]["fd_function_calls"],
                                    "phases": min(sl, key=lambda r: r["wall_s"])["phases"],
                                    "linear_solver": sl[0]["linear_solver"]},
                       "scipy": {"wall_min_s": stats(sc, "wall_s")[0], "wall_median_s": stats(sc, "wall_s")[1],
                                 "to_target_min_s": stats(sc, "time_to_target_s")[0],
                                 "cost": sc[0]["cost"], "nfev": sc[0]["nfev"], "njev": sc[0]["njev"],
                                 "status": sc[0]["status"]},
                       "runs": [{k: v for k, v in r.items() if k != "phases"} for r in sl + sc]}
                row["speedup_wall"] = row["scipy"]["wall_min_s"] / row["sparselm"]["wall_min_s"]
                if row["scipy"]["to_target_min_s"] and row["sparselm"]["to_target_min_s"]:
                    row["speedup_to_target"] = row["scipy"]["to_target_min_s"] / row["sparselm"]["to_target_min_s"]
                rows.append(row)
                s, c = row["sparselm"], row["scipy"]
                print(f"{problem:17s} m={m:>8d} jac={mode:8s} sparselm {s['wall_min_s']:7.2f} s "
                      f"(median {s['wall_median_s']:.2f}, nfev {s['nfev']}, cost {s['cost']:.6e})  "
                      f"scipy {c['wall_min_s']:7.2f} s (nfev {c['nfev']}, cost {c['cost']:.6e})  "
                      f"x{row['speedup_wall']:.1f}", flush=True)

    meta = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "sparselm": sparselm.__version__, "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "threads": threads.describe(), "jit_warmup_s": jit_s,
            "note": "shared 2-core machine; other jobs may run concurrently: timings are noisy",
            "scipy_settings": "defaults: method='trf', tr_solver='lsmr' (sparse Jacobian), x_scale=1",
            "sparselm_settings": "defaults: Marquardt LM, CHOLMOD (amd, factorization auto)"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": rows}, indent=1, default=str))
    out.with_suffix(".md").write_text(markdown(rows, meta))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


def markdown(rows, meta) -> str:
    def f(v, fmt="{:.2f}"):
        return "-" if v is None else fmt.format(v)

    lines = ["# sparselm.least_squares vs scipy.optimize.least_squares (trf + lsmr), banded problems", "",
             f"scipy {meta['scipy']}, numpy {meta['numpy']}, {meta['cpu_count']} CPUs, numba threads "
             f"{meta['threads']['numba_threads']}, OPENBLAS_NUM_THREADS={meta['threads']['OPENBLAS_NUM_THREADS']}; "
             f"JIT warm-up {meta['jit_warmup_s']:.1f} s (not in the timings). {meta['note']}.", "",
             "Wall: the whole call (sparselm: min of its repeats). To target: time until the cost first fell to "
             "max(final costs) * (1 + 1e-6), from each solver's callback.", "",
             "| problem | m | n | jac | sparselm wall s | scipy wall s | speed-up | sparselm to target s | "
             "scipy to target s | sparselm nfev | scipy nfev | sparselm cost | scipy cost |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s, c = r["sparselm"], r["scipy"]
        lines.append(f"| {r['problem']} | {r['m']:.0e} | {r['n']:.0e} | {r['jac']} | {f(s['wall_min_s'])} | "
                     f"{f(c['wall_min_s'])} | {f(r['speedup_wall'], '{:.1f}x')} | {f(s['to_target_min_s'])} | "
                     f"{f(c['to_target_min_s'])} | {s['nfev']} | {c['nfev']} | {s['cost']:.6e} | {c['cost']:.6e} |")
    lines += ["", "sparselm phases (fastest run, seconds):", ""]
    for r in rows:
        ph = ", ".join(f"{k} {v['seconds']:.3f}" for k, v in r["sparselm"]["phases"].items())
        lines.append(f"- {r['problem']} m={r['m']:.0e} {r['jac']}: {ph}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
