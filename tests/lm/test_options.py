"""sparselm.lm.options: Ceres defaults, validation of every kind of bad value, unknown names (listing
the known ones), and how solve() takes options."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import sparselm
from sparselm import SolverOptions, models
from sparselm.lm.options import DAMPINGS, LINEAR_SOLVERS


@pytest.fixture
def problem(make_single_block):
    return make_single_block(models.ROSENBROCK, models.CLASSIC_STARTS["rosenbrock"])


def test_ceres_defaults():
    o = SolverOptions()
    assert (o.max_iterations, o.function_tolerance, o.gradient_tolerance, o.parameter_tolerance) == (50, 1e-6, 1e-10,
                                                                                                      1e-8)
    assert (o.initial_trust_region_radius, o.max_trust_region_radius, o.min_trust_region_radius) == (1e4, 1e16, 1e-32)
    assert (o.min_relative_decrease, o.min_diagonal, o.max_diagonal) == (1e-3, 1e-6, 1e32)
    assert o.max_consecutive_invalid_steps == 5 and o.damping == "marquardt" and o.linear_solver == "auto"
    assert set(DAMPINGS) == {"marquardt", "levenberg", "gauss_newton"}
    assert {"auto", "dense", "sparse_normal_cholesky"} <= set(LINEAR_SOLVERS)


def test_unknown_option_lists_known_ones(problem):
    with pytest.raises(ValueError, match=r"unknown option\(s\) max_iter; known options: .*max_iterations") as info:
        sparselm.solve(problem, max_iter=3)
    known = [f.name for f in dataclasses.fields(SolverOptions)]
    assert all(name in str(info.value) for name in known)
    with pytest.raises(ValueError, match=r"unknown option\(s\) bar, foo; known options"):
        SolverOptions.from_kwargs(foo=1, bar=2, max_iterations=3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(function_tolerance=-1e-6), "option function_tolerance: must be non-negative, got -1e-06"),
    (dict(gradient_tolerance=-1.0), "option gradient_tolerance: must be non-negative"),
    (dict(parameter_tolerance=float("nan")), "option parameter_tolerance: expected a number, got nan"),
    (dict(min_relative_decrease=-0.5), "option min_relative_decrease: must be non-negative"),
    (dict(max_time_s=0), "option max_time_s: must be positive, got 0"),
    (dict(initial_trust_region_radius=-1.0), "option initial_trust_region_radius: must be positive"),
    (dict(min_diagonal=0.0), "option min_diagonal: must be positive"),
    (dict(function_tolerance="1e-6"), "option function_tolerance: expected a number, got '1e-6'"),
    (dict(function_tolerance=True), "option function_tolerance: expected a number, got True"),
    (dict(max_iterations=-1), "option max_iterations: expected a non-negative integer, got -1"),
    (dict(max_iterations=10.0), "option max_iterations: expected a non-negative integer, got 10.0"),
    (dict(max_consecutive_invalid_steps=True), "option max_consecutive_invalid_steps: expected a non-negative integer"),
    (dict(damping="dogleg"), "option damping: unknown 'dogleg'; choose one of marquardt, levenberg, gauss_newton"),
    (dict(linear_solver="qr"), "option linear_solver: unknown 'qr'; choose one of auto, dense, sparse_normal_cholesky"),
    (dict(min_diagonal=1.0, max_diagonal=0.5), "option min_diagonal must not exceed max_diagonal"),
    (dict(threads=0), "option threads: expected a positive integer or None, got 0"),
    (dict(threads=2.5), "option threads: expected a positive integer or None, got 2.5"),
    (dict(callbacks=[print, 3]), "option callbacks: every entry must be callable"),
])
def test_bad_values(problem, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SolverOptions(**kwargs)
    with pytest.raises(ValueError, match=match):
        sparselm.solve(problem, **kwargs)


@pytest.mark.parametrize("kwargs,match", [(dict(ordering="nope"), "option ordering"),
                                          (dict(factorization="qr"), "option factorization")])
def test_solver_specific_names_are_validated_up_front(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SolverOptions(**kwargs)


def test_options_object_or_keywords(problem):
    with pytest.raises(ValueError, match="either as a SolverOptions or as keyword arguments, not both"):
        sparselm.solve(problem, SolverOptions(), max_iterations=3)
    s = sparselm.solve(problem, SolverOptions(max_iterations=2))
    assert s.n_iterations == 2 and s.options_given["max_iterations"] == 2


def test_to_dict_and_used_options(problem):
    o = SolverOptions(callbacks=[lambda rec: False, lambda rec: False], threads=1)
    d = o.to_dict()
    assert d["callbacks"] == 2 and d["threads"] == 1
    assert set(d) == {f.name for f in dataclasses.fields(SolverOptions)}
    s = sparselm.solve(problem, threads=1, linear_solver="sparse_normal_cholesky")
    assert s.options_used["threads"] == 1 and s.options_given["threads"] == 1
    assert s.options_used["linear_solver"] == "sparse_normal_cholesky"
    s = sparselm.solve(problem)
    assert s.options_given["threads"] is None and s.options_used["threads"] >= 1


def test_linear_solver_choices(problem, make_graph):
    assert sparselm.solve(problem).options_used["linear_solver"] == "dense"  # tiny problem
    g = make_graph(n_points=200, n_beacons=10, n_loops=100)
    assert sparselm.solve(g.problem, max_iterations=1).options_used["linear_solver"] == "sparse_normal_cholesky"
    with pytest.raises(ValueError, match="option ordering: unknown .nope."):
        sparselm.solve(problem, linear_solver="sparse_normal_cholesky", ordering="nope")


@pytest.mark.parametrize("damping", DAMPINGS)
@pytest.mark.parametrize("linear_solver", ["dense", "sparse_normal_cholesky"])
def test_every_damping_and_solver_runs(make_single_block, tight, damping, linear_solver):
    # a start where the undamped Gauss-Newton step already decreases the cost
    problem = make_single_block(models.ROSENBROCK, [0.9, 0.8])
    s = sparselm.solve(problem, damping=damping, linear_solver=linear_solver, **tight)
    assert s.ok and s.final_cost < 1e-20, s.message
    np.testing.assert_allclose(problem.parameter_groups["x"].values[0], [1.0, 1.0], rtol=1e-8)


def test_every_option_has_help_and_the_cli_reads_its_defaults():
    from sparselm.cli.main import build_parser
    from sparselm.lm.options import option_default, option_help

    for f in dataclasses.fields(SolverOptions):
        assert option_help(f.name)
    args = build_parser().parse_args(["solve"])
    for name in ("linear_solver", "max_iterations", "function_tolerance", "gradient_tolerance",
                 "parameter_tolerance", "threads", "ordering", "damping"):
        assert getattr(args, name) == option_default(name) == getattr(SolverOptions(), name), name
    profile_args = build_parser().parse_args(["profile"])
    assert (profile_args.ordering, profile_args.factorization) == (SolverOptions().ordering,
                                                                   SolverOptions().factorization)
