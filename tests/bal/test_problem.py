"""build_problem / solution_to_bal / reprojection_errors on synthetic problems (fast, no data files)."""
import numpy as np
import pytest

import sparselm
from sparselm.bal import (BALProblem, build_problem, read_bal, reprojection_errors, solution_to_bal,
                          synthetic_problem, write_bal)
from sparselm.bal import synthetic
from sparselm.bal.camera import BAL_REPROJECTION

TIGHT = dict(max_iterations=200, function_tolerance=1e-14, gradient_tolerance=1e-14, parameter_tolerance=1e-14)


@pytest.fixture(scope="module")
def small():
    """6 cameras, 150 points, about 600 observations."""
    return synthetic_problem(6, 150, observations_per_point=4.0, seed=3).initial


def initial_cost(problem) -> float:
    """The cost at the current values (a solve with no iteration)."""
    return sparselm.solve(problem, max_iterations=0).initial_cost


def numpy_errors(bal: BALProblem) -> np.ndarray:
    """Reference (n, 2) residuals from the independent numpy projection of the synthetic module."""
    return synthetic.project(bal.cameras, bal.points, bal.camera_index, bal.point_index) - bal.observations


def test_structure_of_the_problem(small):
    p = build_problem(small)
    assert list(p.parameter_groups) == ["cameras", "points"]
    cams, pts = p.parameter_groups["cameras"], p.parameter_groups["points"]
    assert cams.values.shape == (small.n_cameras, 9) and not cams.eliminate
    assert pts.values.shape == (small.n_points, 3) and pts.eliminate
    assert not cams.constant.any() and not cams.constant_coordinates.any()
    (rg,) = p.residual_groups
    assert rg.name == "observations" and rg.residual_type is BAL_REPROJECTION
    assert rg.groups == ("cameras", "points")
    np.testing.assert_array_equal(rg.index[:, 0], small.camera_index)
    np.testing.assert_array_equal(rg.index[:, 1], small.point_index)
    np.testing.assert_array_equal(rg.data, small.observations)
    assert rg.sqrt_information is None and rg.loss.is_trivial
    assert p.n_parameters == 9 * small.n_cameras + 3 * small.n_points
    assert p.n_residuals == 2 * small.n_observations
    # the arrays are copies: solving leaves the BALProblem alone
    before = small.copy()
    sparselm.solve(p, max_iterations=3)
    np.testing.assert_array_equal(small.cameras, before.cameras)
    np.testing.assert_array_equal(small.points, before.points)


def test_reprojection_errors_match_numpy_reference(small):
    ref = np.linalg.norm(numpy_errors(small), axis=1)
    np.testing.assert_allclose(reprojection_errors(small), ref, rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(reprojection_errors(build_problem(small)), ref, rtol=1e-11, atol=1e-9)
    # cost convention: 1/2 sum of squared pixel errors
    np.testing.assert_allclose(initial_cost(build_problem(small)), 0.5 * np.sum(ref ** 2), rtol=1e-12)


def test_solve_converges_and_solution_round_trips(small, tmp_path):
    problem = build_problem(small)
    summary = sparselm.solve(problem, **TIGHT)
    assert summary.termination == "convergence", summary.message
    assert summary.final_cost < 1e-2 * summary.initial_cost
    errors = reprojection_errors(problem)
    np.testing.assert_allclose(0.5 * np.sum(errors ** 2), summary.final_cost, rtol=1e-12)
    solved = solution_to_bal(problem, small)
    assert solved.source == small.source
    np.testing.assert_array_equal(solved.cameras, problem.parameter_groups["cameras"].values)
    np.testing.assert_array_equal(solved.points, problem.parameter_groups["points"].values)
    np.testing.assert_array_equal(solved.observations, small.observations)
    for name in ("solution.txt", "solution.txt.bz2"):
        back = read_bal(write_bal(solved, tmp_path / name))
        np.testing.assert_array_equal(back.cameras, solved.cameras)  # bitwise
        np.testing.assert_array_equal(back.points, solved.points)
        np.testing.assert_array_equal(reprojection_errors(back), errors)
        np.testing.assert_allclose(initial_cost(build_problem(back)), summary.final_cost, rtol=1e-12)


def test_solution_to_bal_keeps_source_so_the_input_is_not_overwritten(small, tmp_path):
    path = write_bal(small, tmp_path / "input.txt")
    bal = read_bal(path)
    problem = build_problem(bal)
    sparselm.solve(problem, max_iterations=2)
    with pytest.raises(ValueError, match="refusing to overwrite"):
        write_bal(solution_to_bal(problem, bal), path)


@pytest.mark.parametrize("fix", [[0], [0, 3], np.array([True, False, False, False, False, True])])
def test_fix_cameras_bitwise_unchanged_and_converges(small, fix):
    problem = build_problem(small, fix_cameras=fix)
    mask = np.zeros(small.n_cameras, bool)
    mask[np.asarray(fix)] = True
    assert np.array_equal(problem.parameter_groups["cameras"].constant, mask)
    summary = sparselm.solve(problem, **TIGHT)
    assert summary.termination == "convergence", summary.message
    cams = problem.parameter_groups["cameras"].values
    assert np.array_equal(cams[mask], small.cameras[mask])  # bitwise
    assert not np.any(np.all(cams[~mask] == small.cameras[~mask], axis=1))  # the others moved
    free = sparselm.solve(build_problem(small), **TIGHT).final_cost
    # the fixed cameras keep their perturbed focal lengths (and, with two, pin the scale): a converged
    # minimum, higher than the free problem's
    assert free * (1 - 1e-9) <= summary.final_cost < 0.1 * summary.initial_cost
    assert summary.problem["free_parameters"] == 9 * int((~mask).sum()) + 3 * small.n_points


def test_fix_intrinsics_bitwise_unchanged_and_converges(small):
    problem = build_problem(small, fix_intrinsics=True)
    assert np.flatnonzero(problem.parameter_groups["cameras"].constant_coordinates).tolist() == [6, 7, 8]
    summary = sparselm.solve(problem, **TIGHT)
    assert summary.termination == "convergence", summary.message
    cams = problem.parameter_groups["cameras"].values
    assert np.array_equal(cams[:, 6:9], small.cameras[:, 6:9])
    assert np.all(cams[:, :6] != small.cameras[:, :6])
    assert summary.final_cost < 1e-2 * summary.initial_cost
    # the ground-truth intrinsics of k1, k2 are exact here, f perturbed: fixing costs something
    free = build_problem(small)
    assert sparselm.solve(free, **TIGHT).final_cost <= summary.final_cost * (1 + 1e-9)


def test_fix_first_camera_and_intrinsics_together(small):
    problem = build_problem(small, fix_cameras=[0], fix_intrinsics=True)
    summary = sparselm.solve(problem, **TIGHT)
    assert summary.termination == "convergence", summary.message
    cams = problem.parameter_groups["cameras"].values
    assert np.array_equal(cams[0], small.cameras[0])
    assert np.array_equal(cams[:, 6:9], small.cameras[:, 6:9])


@pytest.mark.parametrize("s", [0.25, 4.0, 9.5])
def test_uniform_covariance_scales_the_cost_by_one_over_s(small, s):
    plain = build_problem(small)
    weighted = build_problem(small, covariance=s * np.eye(2))
    per_obs = build_problem(small, covariance=np.broadcast_to(s * np.eye(2), (small.n_observations, 2, 2)).copy())
    c0 = initial_cost(plain)
    np.testing.assert_allclose(initial_cost(weighted), c0 / s, rtol=1e-12)
    np.testing.assert_allclose(initial_cost(per_obs), c0 / s, rtol=1e-12)
    # same minimiser: the converged costs keep the ratio
    f_plain = sparselm.solve(plain, **TIGHT).final_cost
    f_weighted = sparselm.solve(weighted, **TIGHT).final_cost
    np.testing.assert_allclose(f_weighted, f_plain / s, rtol=1e-8)
    np.testing.assert_allclose(weighted.parameter_groups["points"].values, plain.parameter_groups["points"].values,
                               rtol=1e-6, atol=1e-8)


def test_sigma_scalar_and_vector(small):
    c0 = initial_cost(build_problem(small))
    np.testing.assert_allclose(initial_cost(build_problem(small, sigma=2.0)), c0 / 4, rtol=1e-12)
    sig = np.linspace(0.5, 3.0, small.n_observations)
    e = numpy_errors(small)
    np.testing.assert_allclose(initial_cost(build_problem(small, sigma=sig)),
                               0.5 * np.sum((e / sig[:, None]) ** 2), rtol=1e-10)


def test_general_covariance_is_the_mahalanobis_cost(small):
    rng = np.random.default_rng(5)
    a = rng.normal(size=(small.n_observations, 2, 2))
    cov = a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(2)
    e = numpy_errors(small)
    expected = 0.5 * np.einsum("ni,ni->", e, np.linalg.solve(cov, e[:, :, None])[:, :, 0])
    problem = build_problem(small, covariance=cov)
    np.testing.assert_allclose(initial_cost(problem), expected, rtol=1e-10)
    summary = sparselm.solve(problem, **TIGHT)
    assert summary.termination == "convergence" and summary.final_cost < 1e-2 * summary.initial_cost


def test_robust_loss(small):
    e2 = np.sum(numpy_errors(small) ** 2, axis=1)
    scale = 3.0
    s = e2 / scale ** 2
    huber = np.where(s <= 1, s, 2 * np.sqrt(s) - 1) * scale ** 2
    problem = build_problem(small, loss="huber", loss_scale=scale)
    np.testing.assert_allclose(initial_cost(problem), 0.5 * huber.sum(), rtol=1e-10)
    summary = sparselm.solve(problem, **TIGHT)
    assert summary.ok and summary.final_cost < 0.05 * summary.initial_cost


def test_errors_are_clear(small):
    with pytest.raises(ValueError, match="at most one of sigma and covariance"):
        build_problem(small, sigma=1.0, covariance=np.eye(2))
    with pytest.raises(ValueError, match="out of range"):
        build_problem(small, fix_cameras=[small.n_cameras])
    with pytest.raises(ValueError, match="sigma"):
        build_problem(small, sigma=-1.0)
    with pytest.raises(ValueError, match="positive definite"):
        build_problem(small, covariance=-np.eye(2))
    with pytest.raises(ValueError, match="BALProblem"):
        build_problem("not a problem")
    bad = small.copy()
    bad.points[3, 1] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        build_problem(bad)
    other = sparselm.Problem()
    other.add_parameter_group("x", np.zeros((1, 3)))
    with pytest.raises(ValueError, match="not a bundle-adjustment problem"):
        reprojection_errors(other)
    with pytest.raises(ValueError, match="not a bundle-adjustment problem"):
        solution_to_bal(other, small)
    smaller = synthetic_problem(3, 20, seed=0).initial
    with pytest.raises(ValueError, match="does not match"):
        solution_to_bal(build_problem(smaller), small)
    with pytest.raises(ValueError, match="expected a Problem or a BALProblem"):
        reprojection_errors(np.zeros(3))
