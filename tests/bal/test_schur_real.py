"""Every Schur solver on the real problem-16-22106-pre reaches the published cost 1.803390e+04
(Ceres' documentation) within 0.01%: sparse_schur, dense_schur and iterative_schur (implicit and
explicit S, block-Jacobi and Schur-Jacobi preconditioners, Ceres' default forcing eta = 0.1).
Needs $SPARSELM_DATA (the ``bal_data`` fixture skips without it)."""
import dataclasses

import pytest

import sparselm
from sparselm.bal import build_problem, read_bal
from sparselm.linalg import registry
from sparselm.linalg.schur.iterative import IterativeSchur

pytestmark = pytest.mark.slow

P16 = "dubrovnik/problem-16-22106-pre.txt.bz2"
PUBLISHED_COST = 1.80339e+04


class _ExplicitIterativeSchur(IterativeSchur):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, variant="explicit", **kwargs)


@pytest.mark.parametrize("solver, variant, preconditioner", [
    ("sparse_schur", None, None),
    ("dense_schur", None, None),
    ("iterative_schur", "implicit", "schur_jacobi"),
    ("iterative_schur", "implicit", "jacobi"),
    ("iterative_schur", "explicit", "schur_jacobi"),
    ("iterative_schur", "explicit", "jacobi"),
])
def test_schur_solvers_reach_the_published_cost(bal_data, monkeypatch, solver, variant, preconditioner):
    path = bal_data / P16
    if not path.is_file():
        pytest.fail(f"{path} is missing from SPARSELM_DATA")
    if solver == "iterative_schur":
        cls = _ExplicitIterativeSchur if variant == "explicit" else IterativeSchur
        monkeypatch.setitem(registry.SPECS, solver, dataclasses.replace(registry.get(solver), solver=cls))
    options = {} if preconditioner is None else {"preconditioner": preconditioner}
    summary = sparselm.solve(build_problem(read_bal(path)), linear_solver=solver, **options)
    assert summary.termination == "convergence", summary.message
    assert summary.final_cost == pytest.approx(PUBLISHED_COST, rel=1e-4)
    its = [r.linear_solver_iterations for r in summary.iterations[1:]]
    if solver == "iterative_schur":
        assert summary.linear_solver["variant"] == variant
        assert summary.linear_solver["preconditioner"] == preconditioner
        assert all(k >= 1 for k in its) and sum(its) == summary.linear_solver["total_cg_iterations"]
        assert {"cg", "preconditioner"} <= set(summary.phases)
    else:
        assert all(k == 1 for k in its)
