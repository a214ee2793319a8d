"""Synthetic BAL problems: determinism, geometry, noise levels, scale."""
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sparselm.bal import BALProblem, default_problem, read_bal, synthetic_problem, write_bal
from sparselm.bal.synthetic import project, world_to_camera

ARRAYS = ("cameras", "points", "camera_index", "point_index", "observations")


def arrays_equal(a: BALProblem, b: BALProblem) -> bool:
    return all(np.array_equal(getattr(a, n), getattr(b, n)) for n in ARRAYS)


def test_seeded_determinism():
    a, b = synthetic_problem(12, 500, seed=7), synthetic_problem(12, 500, seed=7)
    assert arrays_equal(a.initial, b.initial) and arrays_equal(a.ground_truth, b.ground_truth)
    c = synthetic_problem(12, 500, seed=8)
    assert not np.array_equal(a.initial.points, c.initial.points)


def test_shapes_and_tracks():
    initial, truth = synthetic_problem(20, 3000, observations_per_point=5.0, seed=1)
    for problem in (initial, truth):
        assert problem.cameras.shape == (20, 9) and problem.points.shape == (3000, 3)
        assert problem.camera_index.dtype == np.int64 and problem.point_index.dtype == np.int64
        problem.validate()
    assert abs(initial.n_observations / 3000 - 5.0) < 0.2
    np.testing.assert_array_equal(initial.camera_index, truth.camera_index)
    np.testing.assert_array_equal(initial.observations, truth.observations)
    # every point is seen by >= 2 consecutive cameras along the circle, each once
    track = np.bincount(initial.point_index, minlength=3000)
    assert track.min() >= 2 and track.max() <= 20
    same_point = initial.point_index[1:] == initial.point_index[:-1]
    steps = (initial.camera_index[1:] - initial.camera_index[:-1]) % 20
    assert np.all(steps[same_point] == 1)


def test_intrinsics_are_realistic():
    cameras = synthetic_problem(200, 100, seed=2).ground_truth.cameras
    assert np.all((cameras[:, 6] >= 500) & (cameras[:, 6] <= 1000))
    assert np.all(np.abs(cameras[:, 7]) < 0.3) and np.all(np.abs(cameras[:, 8]) < 0.06)


@pytest.mark.parametrize("n_cameras", [1, 2, 3, 16, 200])
def test_points_are_in_front_of_the_cameras_that_see_them(n_cameras):
    truth = synthetic_problem(n_cameras, 2000, seed=3).ground_truth
    depth = world_to_camera(truth.cameras, truth.points, truth.camera_index, truth.point_index)[:, 2]
    assert np.all(depth < -0.5 * 10.0)  # BAL cameras look down -z; the circle radius is 10
    pixels = project(truth.cameras, truth.points, truth.camera_index, truth.point_index)
    assert np.all(np.abs(pixels) < 1500)  # inside a plausible image


def test_world_to_camera_matches_scipy_rotations():
    rng = np.random.default_rng(0)
    cameras = rng.normal(size=(5, 9))
    cameras[0, :3] = 0.0  # identity
    cameras[1, :3] = [1e-14, -2e-14, 0.0]  # below the small-angle threshold
    cameras[2, :3] = [0.0, np.pi, 0.0]
    points = rng.normal(size=(4, 3))
    cam, pt = np.repeat(np.arange(5), 4), np.tile(np.arange(4), 5)
    expected = Rotation.from_rotvec(cameras[cam, :3]).apply(points[pt]) + cameras[cam, 3:6]
    np.testing.assert_allclose(world_to_camera(cameras, points, cam, pt), expected, rtol=0, atol=1e-13)


def test_projection_follows_the_bal_model():
    camera = np.array([[0, 0, 0, 0, 0, -4.0, 800.0, 0.1, 0.01]])  # identity rotation, camera at z=4
    point = np.array([[1.0, -2.0, 0.0]])  # P = (1, -2, -4): p = (0.25, -0.5)
    r2 = 0.25 ** 2 + 0.5 ** 2
    expected = 800.0 * (1 + 0.1 * r2 + 0.01 * r2 ** 2) * np.array([0.25, -0.5])
    np.testing.assert_allclose(project(camera, point, np.array([0]), np.array([0]))[0], expected, rtol=1e-15)


@pytest.mark.parametrize("pixel_noise", [0.0, 0.5, 2.0])
def test_observations_are_projections_plus_pixel_noise(pixel_noise):
    truth = synthetic_problem(16, 5000, seed=4, pixel_noise=pixel_noise).ground_truth
    residual = project(truth.cameras, truth.points, truth.camera_index, truth.point_index) - truth.observations
    if pixel_noise == 0.0:
        np.testing.assert_allclose(residual, 0.0, atol=1e-9)
    else:
        assert abs(residual.std() / pixel_noise - 1.0) < 0.03
        assert np.abs(residual).max() < 6 * pixel_noise
        assert abs(residual.mean()) < 0.05 * pixel_noise


def test_initial_parameters_are_perturbed_by_param_noise():
    initial, truth = synthetic_problem(400, 4000, seed=5, param_noise=0.02)
    np.testing.assert_allclose((initial.cameras[:, :3] - truth.cameras[:, :3]).std(), 0.02, rtol=0.1)
    np.testing.assert_allclose((initial.points - truth.points).std(), 0.2, rtol=0.1)
    np.testing.assert_allclose((initial.cameras[:, 6] / truth.cameras[:, 6] - 1).std(), 0.02, rtol=0.15)
    np.testing.assert_array_equal(initial.cameras[:, 7:], truth.cameras[:, 7:])
    exact = synthetic_problem(10, 100, seed=5, param_noise=0.0)
    assert arrays_equal(exact.initial, exact.ground_truth)


def test_round_trips_through_a_bal_file(tmp_path):
    initial = synthetic_problem(8, 300, seed=6).initial
    back = read_bal(write_bal(initial, tmp_path / "synthetic.txt"))  # no duplicates, all valid
    assert arrays_equal(back, initial)


def test_default_problem_is_fixed_and_bal_sized():
    problem = default_problem()
    assert (problem.n_cameras, problem.n_points) == (16, 2000)
    assert 7000 <= problem.n_observations <= 9000
    assert arrays_equal(problem, default_problem())
    assert problem.source.startswith("synthetic(")


@pytest.mark.parametrize("kwargs", [dict(n_cameras=0, n_points=5), dict(n_cameras=3, n_points=0),
                                    dict(n_cameras=3, n_points=5, observations_per_point=0.5)])
def test_rejects_empty_problems(kwargs):
    with pytest.raises(ValueError):
        synthetic_problem(**kwargs)


@pytest.mark.slow
def test_three_million_observations_in_seconds():
    start = time.perf_counter()
    initial, truth = synthetic_problem(1000, 750_000, observations_per_point=4.0, seed=9)
    elapsed = time.perf_counter() - start
    assert initial.n_observations > 2.9e6
    assert elapsed < 15.0, f"{elapsed:.1f} s"


@pytest.mark.bal
@pytest.mark.parametrize("name,cost", [("dubrovnik/problem-16-22106-pre.txt.bz2", 4.185660e06),
                                       ("ladybug/problem-49-7776-pre.txt.bz2", 8.5091e05)])
def test_project_reproduces_the_published_initial_costs(bal_data, name, cost):
    problem = read_bal(bal_data / name)
    residual = project(problem.cameras, problem.points, problem.camera_index, problem.point_index)
    residual -= problem.observations
    assert 0.5 * np.sum(residual ** 2) == pytest.approx(cost, rel=1e-5)
