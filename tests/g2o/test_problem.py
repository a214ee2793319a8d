"""Pose-graph problems on the four real g2o files: sparselm's final error against GTSAM 4.3's
(the figures of the data folder's README, measured with readG2o + LevenbergMarquardtOptimizer),
the gauge, unit quaternions, the g2o error option and writing the solution back."""
import numpy as np
import pytest

import sparselm
from sparselm.g2o import build_problem, graph_error, read_g2o, solution_to_graph, write_g2o

from .conftest import FILES

#: GTSAM 4.3: (initial error, final error) of the between factors, from the data folder's README
GTSAM = {"intel": (2.769979e+02, 2.250212e+01), "parking-garage": (8.363602e+03, 6.341924e-01),
         "sphere2500": (1.305658e+06, 6.757010e+02), "smallGrid3D": (8.389433e+04, 5.179253e+02)}
OPTIONS = dict(max_iterations=100, function_tolerance=1e-12, gradient_tolerance=1e-12, parameter_tolerance=1e-14,
               verbose=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_final_error_is_at_most_gtsams(name, g2o_file):
    graph = read_g2o(g2o_file(name))
    initial, final = GTSAM[name]
    assert graph_error(graph) == pytest.approx(initial, rel=1e-6)
    problem = build_problem(graph)
    summary = sparselm.solve(problem, **OPTIONS)
    assert summary.termination == "convergence"
    assert summary.initial_cost == pytest.approx(initial, rel=1e-6)
    assert summary.final_cost <= final * (1 + 1e-6)
    solved = solution_to_graph(problem, graph)
    assert graph_error(solved) == pytest.approx(summary.final_cost, rel=1e-12)
    np.testing.assert_array_equal(solved.poses[0], graph.poses[0])  # the gauge
    if graph.kind.dimension == 3:
        assert np.abs(np.linalg.norm(solved.poses[:, 3:], axis=1) - 1.0).max() <= 1e-12
    assert summary.problem["free_parameters"] == (graph.n_vertices - 1) * (3 if graph.kind.dimension == 2 else 6)


def test_g2o_error_option_reaches_nearly_the_same_poses(g2o_file):
    graph = read_g2o(g2o_file("smallGrid3D"))
    problem = build_problem(graph, error="g2o")
    summary = sparselm.solve(problem, **OPTIONS)
    assert summary.termination == "convergence"
    assert summary.final_cost < 1e-2 * summary.initial_cost
    # a different error, so a slightly different optimum of GTSAM's error
    assert graph_error(solution_to_graph(problem, graph)) == pytest.approx(GTSAM["smallGrid3D"][1], rel=0.05)


def test_fix_lines_set_the_gauge_and_the_solution_writes_back(tmp_path, g2o_file):
    graph = read_g2o(g2o_file("intel"))
    graph.fixed[[5, 100]] = True
    problem = build_problem(graph)
    assert problem.parameter_groups["poses"].constant.nonzero()[0].tolist() == [5, 100]
    sparselm.solve(problem, **OPTIONS)
    solved = solution_to_graph(problem, graph)
    np.testing.assert_array_equal(solved.poses[[5, 100]], graph.poses[[5, 100]])
    out = write_g2o(solved, tmp_path / "intel-solved.g2o")
    again = read_g2o(out)
    assert again.fixed.nonzero()[0].tolist() == [5, 100]
    assert graph_error(again) == pytest.approx(graph_error(solved), rel=1e-12)


def test_unknown_error_and_2d_g2o_error_are_rejected(g2o_file):
    graph = read_g2o(g2o_file("intel"))
    with pytest.raises(ValueError, match="unknown pose-graph error 'ceres'"):
        build_problem(graph, error="ceres")
    with pytest.raises(ValueError, match="3-D graphs only"):
        build_problem(graph, error="g2o")
