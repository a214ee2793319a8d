"""sparselm.linalg.registry: one registry of linear solvers that options, auto, memory, profiling,
least_squares and the command line read; adding a solver is its module plus one registration line."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import sparselm
from sparselm.bal import build_problem, synthetic_problem
from sparselm.cli.main import build_parser
from sparselm.linalg import registry
from sparselm.core.evaluator import Evaluator
from sparselm.core.layout import build_layout
from sparselm.linalg.base import LinearSolver, LinearSolverOptions, StructureCounts
from sparselm.util.timing import PhaseTimer
from sparselm.linalg.dense import DenseNormalCholesky
from sparselm.lm.memory import estimate_memory
from sparselm.lm.options import LINEAR_SOLVERS, SolverOptions
from sparselm.scipy_api.front import API_LINEAR_SOLVERS

OWN_ITEMS = {"dense": "dense matrices", "sparse_normal_cholesky": "normal matrix", "dense_schur": "dense matrices",
             "sparse_schur": "cholesky factor", "iterative_schur": "iterative solver"}


def small_ba():
    return build_problem(synthetic_problem(6, 200, seed=2).initial)


def test_specs_are_consistent():
    fields = {f.name for f in dataclasses.fields(SolverOptions)}
    assert LINEAR_SOLVERS == ("auto",) + registry.names()
    assert set(registry.names()) == set(OWN_ITEMS)
    problem = small_ba()
    layout = build_layout(problem)
    for name, spec in registry.SPECS.items():
        solver = spec.solver(layout, Evaluator(problem, layout, PhaseTimer()), PhaseTimer(), LinearSolverOptions())
        assert spec.name == name == solver.name and isinstance(solver, LinearSolver)
        assert set(spec.options) <= fields, (name, set(spec.options) - fields)
        assert spec.summary and callable(spec.memory) and callable(spec.model_flops)
        assert not (spec.uses_cholmod and spec.dense_factor)
    assert API_LINEAR_SOLVERS == ("auto", "dense", "sparse_normal_cholesky") == ("auto",) + registry.general_names()
    with pytest.raises(ValueError, match="unknown linear solver 'cholesky'; registered: dense, "):
        registry.get("cholesky")


@pytest.mark.parametrize("name", sorted(OWN_ITEMS))
def test_memory_and_flops_come_from_the_spec(name):
    est = estimate_memory(small_ba(), name, threads=2)
    assert est.linear_solver == name and est.items[OWN_ITEMS[name]] > 0 and est.items["jacobian"] > 0
    spec = registry.get(name)
    counts = StructureCounts(columns=54, factor_flops=1e6, factor_nnz=1000, gradient=10.0, assembly=20.0, kf=9, ke=3,
                             n_cells=800, n_pairs=2000, n_e=200)
    flops = spec.model_flops(counts)
    assert all(v >= 0 for v in flops.values())
    assert ("factorization" in flops) == (spec.uses_cholmod or spec.dense_factor)
    assert ("schur_complement" in flops) == spec.uses_schur


class _EchoDense(DenseNormalCholesky):
    """A 'new' solver for the test: the dense one under another name."""

    name = "echo_dense"


def test_one_registration_line_makes_a_solver_usable_everywhere(monkeypatch):
    spec = dataclasses.replace(registry.get("dense"), name="echo_dense", solver=_EchoDense, general=None)
    monkeypatch.setitem(registry.SPECS, "echo_dense", spec)  # the one line
    p = small_ba()
    s = sparselm.solve(p, linear_solver="echo_dense", max_iterations=3)
    assert s.options_used["linear_solver"] == "echo_dense" and s.linear_solver["name"] == "echo_dense"
    reference = sparselm.solve(small_ba(), linear_solver="dense", max_iterations=3)
    assert s.final_cost == pytest.approx(reference.final_cost, rel=1e-9)
    assert estimate_memory(p, "echo_dense").items["dense matrices"] > 0
    assert build_parser().parse_args(["solve", "--linear-solver", "echo_dense"]).linear_solver == "echo_dense"
    with pytest.raises(ValueError, match="echo_dense"):
        SolverOptions(linear_solver="echo_dense_2")


def test_auto_returns_the_factor_estimate_it_used():
    from sparselm.core.layout import build_layout
    from sparselm.linalg.auto import choose_linear_solver

    layout = build_layout(build_problem(synthetic_problem(60, 2000, seed=1).initial))
    choice = choose_linear_solver(layout, "auto")
    assert choice.name in ("sparse_schur", "iterative_schur", "dense_schur")
    assert choice.factor_estimate is not None and choice.factor_estimate["nnz"] > 0
    n = layout.n_reduced_columns
    dense = choice.factor_estimate["nnz"] >= 0.9 * n * (n + 1) / 2
    assert (choice.name == "dense_schur") == (dense and choice.factor_estimate["flops"] <= 2e10)
    assert choose_linear_solver(layout, "dense_schur") == ("dense_schur", "as requested", None)
    assert np.isfinite(choice.factor_estimate["flops"])
