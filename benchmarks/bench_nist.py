"""NIST StRD nonlinear regression: correct digits of sparselm.least_squares vs scipy's 'trf' and 'lm'.

27 problems x 2 starting points (NIST's 'Start 1', far, and 'Start 2', near), the data files and
models of tests/scipy_api (nist/*.dat, nist_problems.py). Every solver gets the same analytic
Jacobian and the same tight tolerances (ftol = xtol = gtol = 1e-15, max_nfev 20000); each case is
scored by NIST's log relative error, the number of correct significant digits of the worst
parameter (LRE, capped at 11; 0 when it is wrong in the first digit or the solve raised).

    python benchmarks/bench_nist.py          # writes benchmarks/results/nist.json and nist.md
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import sparselm  # noqa: E402  (first: sets the BLAS/numba thread policy before numpy loads BLAS)
import scipy.optimize  # noqa: E402

from benchmarks.common import cpu_model, write_json, write_text  # noqa: E402
from scipy_api import nist_problems as nist  # noqa: E402

TOLERANCES = dict(ftol=1e-15, xtol=1e-15, gtol=1e-15, max_nfev=20000)
SOLVERS = {
    "sparselm": lambda p, x0: sparselm.least_squares(p.residual, x0, jac=p.jacobian, **TOLERANCES),
    "scipy trf": lambda p, x0: scipy.optimize.least_squares(p.residual, x0, jac=p.jacobian, method="trf",
                                                           **TOLERANCES),
    "scipy lm": lambda p, x0: scipy.optimize.least_squares(p.residual, x0, jac=p.jacobian, method="lm",
                                                          **TOLERANCES),
}


def score(solve, problem, x0) -> dict:
    t = time.perf_counter()
    try:
        res = solve(problem, x0)
    except Exception as exc:  # a solver that raises scores 0 digits; the error is kept
        return {"digits": 0.0, "error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - t}
    return {"digits": float(nist.lre(res.x, problem.certified).min()), "nfev": int(res.nfev),
            "status": int(res.status), "seconds": time.perf_counter() - t}


def main() -> int:
    rows = []
    for name in nist.PROBLEMS:
        problem = nist.load(name)
        for start in (0, 1):
            row = {"problem": name, "start": start + 1}
            for label, solve in SOLVERS.items():
                row[label] = score(solve, problem, problem.starts[start])
            rows.append(row)
            print(name, start + 1, {k: round(row[k]["digits"], 1) for k in SOLVERS}, flush=True)
    cpu = cpu_model()
    write_json("nist", {"cpu": cpu, "tolerances": TOLERANCES, "rows": rows})
    lines = ["# NIST StRD nonlinear regression: correct digits (LRE) of the worst parameter", "",
             f"CPU: {cpu}. Same analytic Jacobians and tolerances ({TOLERANCES}) for every solver; "
             "measured in one run by benchmarks/bench_nist.py.", "",
             "| problem | start 1: " + " / ".join(SOLVERS) + " | start 2: " + " / ".join(SOLVERS) + " |",
             "|---|---|---|"]
    for k in range(0, len(rows), 2):
        cells = [" / ".join(f"{row[label]['digits']:.1f}" for label in SOLVERS) for row in rows[k:k + 2]]
        lines.append(f"| {rows[k]['problem']} | {cells[0]} | {cells[1]} |")
    solved = {k: sum(row[k]["digits"] >= 4 for row in rows) for k in SOLVERS}
    lines += ["", "Cases with >= 4 correct digits of every parameter: "
              + ", ".join(f"{k} {v}/{len(rows)}" for k, v in solved.items()) + "."]
    write_text("nist.md", "\n".join(lines) + "\n")
    print("\n".join(lines[-1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
