"""The engine on manifolds: tangent Jacobians (J_amb P) against differences of r(x [+] d), unit
quaternions through a solve, a solution independent of the rotation chart, constant blocks and
constant tangent coordinates, and the checks on add_parameter_group/add_residual_group."""
import numpy as np
import pytest
from numba import njit, prange
from scipy.spatial.transform import Rotation

import sparselm
from sparselm.core.evaluator import Evaluator
from sparselm.manifolds import SE3, lie
from sparselm.residuals.base import ResidualType
from sparselm.residuals.pose_graph import SE3_PRIOR
from sparselm.core.layout import build_layout
from sparselm.util.timing import PhaseTimer

TIGHT = dict(max_iterations=200, function_tolerance=1e-16, gradient_tolerance=1e-14, parameter_tolerance=1e-14,
             verbose=False)


@njit(cache=True)
def _observe(q, t, data, n, residuals):
    """r = R^T (P - t) - obs: a world point P seen from the pose (R(q), t); data row (P, obs)."""
    qc = lie.quaternion_conjugate(q)
    local = lie.rotate(qc, (data[n, 0] - t[0], data[n, 1] - t[1], data[n, 2] - t[2]))
    for r in range(3):
        residuals[n, r] = local[r] - data[n, 3 + r]


@njit(parallel=True, cache=True)
def _quaternion_observation(params, index, data, residuals):
    q, t = params[0], params[1]
    for n in prange(index.shape[0]):
        a, b = index[n, 0], index[n, 1]
        _observe((q[a, 0], q[a, 1], q[a, 2], q[a, 3]), (t[b, 0], t[b, 1], t[b, 2]), data, n, residuals)


@njit(parallel=True, cache=True)
def _rotation_vector_observation(params, index, data, residuals):
    r, t = params[0], params[1]
    for n in prange(index.shape[0]):
        a, b = index[n, 0], index[n, 1]
        _observe(lie.so3_exp((r[a, 0], r[a, 1], r[a, 2])), (t[b, 0], t[b, 1], t[b, 2]), data, n, residuals)


@njit(parallel=True, cache=True)
def _pose_observation(params, index, data, residuals):
    x = params[0]
    for n in prange(index.shape[0]):
        a = index[n, 0]
        _observe((x[a, 3], x[a, 4], x[a, 5], x[a, 6]), (x[a, 0], x[a, 1], x[a, 2]), data, n, residuals)


QUATERNION_OBS = ResidualType("quaternion_observation", 3, (4, 3), 6, _quaternion_observation)
ROTVEC_OBS = ResidualType("rotation_vector_observation", 3, (3, 3), 6, _rotation_vector_observation)
POSE_OBS = ResidualType("pose_observation", 3, (7,), 6, _pose_observation)


def _scene(rng, n_frames=5, n_points=12, noise=0.01):
    rot = Rotation.from_rotvec(rng.normal(size=(n_frames, 3)) * 0.8)
    t = rng.normal(size=(n_frames, 3))
    points = rng.normal(size=(n_points, 3)) * 4
    frame = np.repeat(np.arange(n_frames), n_points)
    world = np.tile(points, (n_frames, 1))
    obs = rot[frame].inv().apply(world - t[frame]) + noise * rng.normal(size=world.shape)
    start_rot = rot * Rotation.from_rotvec(rng.normal(size=(n_frames, 3)) * 0.3)
    start_t = t + rng.normal(size=t.shape) * 0.3
    return frame, np.hstack([world, obs]), start_rot, start_t


def _solve(chart, frame, data, start_rot, start_t, **kwargs):
    p = sparselm.Problem()
    if chart == "quaternion":
        p.add_parameter_group("rot", start_rot.as_quat(), manifold="so3_quaternion")
        p.add_parameter_group("t", start_t)
        p.add_residual_group("obs", QUATERNION_OBS, [("rot", frame), ("t", frame)], data)
    elif chart == "rotation_vector":
        p.add_parameter_group("rot", start_rot.as_rotvec(), manifold="so3_rotation_vector")
        p.add_parameter_group("t", start_t)
        p.add_residual_group("obs", ROTVEC_OBS, [("rot", frame), ("t", frame)], data)
    else:
        p.add_parameter_group("pose", np.hstack([start_t, start_rot.as_quat()]), manifold=SE3)
        p.add_residual_group("obs", POSE_OBS, [("pose", frame)], data)
    summary = sparselm.solve(p, **dict(TIGHT, **kwargs))
    if chart == "se3":
        values = p.parameter_groups["pose"].values
        return summary, Rotation.from_quat(values[:, 3:]), values[:, :3], p
    rot = p.parameter_groups["rot"].values
    rot = Rotation.from_quat(rot) if chart == "quaternion" else Rotation.from_rotvec(rot)
    return summary, rot, p.parameter_groups["t"].values, p


def test_solution_does_not_depend_on_the_rotation_chart(rng):
    frame, data, start_rot, start_t = _scene(rng)
    results = {chart: _solve(chart, frame, data, start_rot, start_t)
               for chart in ("quaternion", "rotation_vector", "se3")}
    ref_summary, ref_rot, ref_t, _ = results["quaternion"]
    assert ref_summary.termination == "convergence"
    assert ref_summary.final_cost < 1e-3 * ref_summary.initial_cost
    for chart, (summary, rot, t, _) in results.items():
        assert summary.final_cost == pytest.approx(ref_summary.final_cost, rel=1e-9), chart
        np.testing.assert_allclose(rot.as_matrix(), ref_rot.as_matrix(), atol=1e-8, err_msg=chart)
        np.testing.assert_allclose(t, ref_t, atol=1e-8, err_msg=chart)
        assert summary.problem["free_parameters"] == 5 * 6


def test_quaternions_stay_unit_norm_through_a_solve(rng):
    frame, data, start_rot, start_t = _scene(rng, noise=0.2)
    summary, _, _, problem = _solve("quaternion", frame, data, start_rot, start_t)
    q = problem.parameter_groups["rot"].values
    assert summary.successful_steps > 3
    assert np.abs(np.linalg.norm(q, axis=1) - 1.0).max() <= 1e-12


def test_tangent_jacobian_is_the_derivative_of_r_of_x_plus_delta(rng):
    frame, data, start_rot, start_t = _scene(rng, n_frames=3, n_points=4)
    p = sparselm.Problem()
    p.add_parameter_group("pose", np.hstack([start_t, start_rot.as_quat()]), manifold=SE3)
    p.add_residual_group("obs", POSE_OBS, [("pose", frame)], data)
    layout = build_layout(p)
    ev = Evaluator(p, layout, PhaseTimer())
    values = {"pose": p.parameter_groups["pose"].values.copy()}
    ev.linearize(values)
    jac = ev.in_user_order(0, ev.jacobians[0])
    assert jac.shape == (len(frame), 3, 6)
    h = 1e-6
    for c in range(6):
        delta = np.zeros((3, 6))
        delta[:, c] = h
        res = []
        for sign in (1, -1):
            out = np.empty((len(frame), 3))
            POSE_OBS.residual_kernel((SE3.plus(values["pose"], sign * delta),), frame[:, None], data, out)
            res.append(out)
        np.testing.assert_allclose(jac[:, :, c], (res[0] - res[1]) / (2 * h), atol=1e-7)


def test_constant_blocks_and_constant_tangent_coordinates_hold(rng):
    frame, data, start_rot, start_t = _scene(rng)
    p = sparselm.Problem()
    start = np.hstack([start_t, start_rot.as_quat()])
    p.add_parameter_group("pose", start, manifold="se3", constant=[0], constant_coordinates=[0, 1, 2])
    p.add_residual_group("obs", POSE_OBS, [("pose", frame)], data)
    summary = sparselm.solve(p, **TIGHT)
    values = p.parameter_groups["pose"].values
    assert summary.final_cost < summary.initial_cost
    np.testing.assert_array_equal(values[0], start[0])
    # the rotation's tangent coordinates are held: every rotation stays where it started
    np.testing.assert_allclose(np.abs(np.sum(values[:, 3:] * start[:, 3:], axis=1)), 1.0, atol=1e-12)
    assert np.abs(values[1:, :3] - start[1:, :3]).max() > 1e-3
    assert summary.problem["free_parameters"] == 4 * 6


def test_checks_on_groups_and_slots():
    p = sparselm.Problem()
    with pytest.raises(ValueError, match="parameter group 'q': unknown manifold 'so4'"):
        p.add_parameter_group("q", np.zeros((2, 4)), manifold="so4")
    with pytest.raises(ValueError, match="size 7, the values have 4"):
        p.add_parameter_group("q", np.zeros((2, 4)), manifold="se3")
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        p.add_parameter_group("q", np.tile([0, 0, 0, 1.0], (2, 1)), manifold="so3_quaternion",
                              constant_coordinates=np.array([True, False, False, False]))
    p.add_parameter_group("flat", np.zeros((2, 7)))
    with pytest.raises(ValueError, match="differentiates on the 'se3' manifold, group 'flat' is on 'euclidean"):
        p.add_residual_group("prior", SE3_PRIOR, [("flat", [0])], np.zeros((1, 7)))


@njit(parallel=True, cache=True)
def _direction_observation(params, index, data, residuals):
    """r = R(q)^T u - obs: a unit direction u (sphere2) seen from a rotation q."""
    q, u = params[0], params[1]
    for n in prange(index.shape[0]):
        a, b = index[n, 0], index[n, 1]
        local = lie.rotate(lie.quaternion_conjugate((q[a, 0], q[a, 1], q[a, 2], q[a, 3])), (u[b, 0], u[b, 1], u[b, 2]))
        for r in range(3):
            residuals[n, r] = local[r] - data[n, r]


DIRECTION_OBS = ResidualType("direction_observation", 3, (4, 3), 3, _direction_observation)


@pytest.mark.parametrize("linear_solver", ["sparse_schur", "dense_schur", "iterative_schur"])
def test_schur_elimination_of_a_manifold_group_matches_the_full_system(linear_solver, rng):
    n_frames, n_dirs = 4, 30
    rot = Rotation.from_rotvec(rng.normal(size=(n_frames, 3)))
    dirs = rng.normal(size=(n_dirs, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    frame, d = np.repeat(np.arange(n_frames), n_dirs), np.tile(np.arange(n_dirs), n_frames)
    obs = rot[frame].inv().apply(dirs[d]) + 0.01 * rng.normal(size=(len(frame), 3))
    start_dirs = dirs + 0.1 * rng.normal(size=dirs.shape)
    start_dirs /= np.linalg.norm(start_dirs, axis=1, keepdims=True)
    start_rot = (rot * Rotation.from_rotvec(0.1 * rng.normal(size=(n_frames, 3)))).as_quat()
    start_rot[0] = rot[0].as_quat()
    finals = []
    for solver in ("sparse_normal_cholesky", linear_solver):
        p = sparselm.Problem()
        p.add_parameter_group("rot", start_rot, manifold="so3_quaternion", constant=[0])
        p.add_parameter_group("dirs", start_dirs, manifold="sphere2", eliminate=True)
        p.add_residual_group("obs", DIRECTION_OBS, [("rot", frame), ("dirs", d)], obs)
        summary = sparselm.solve(p, **dict(TIGHT, linear_solver=solver))
        assert summary.problem["free_parameters"] == 3 * 3 + 2 * n_dirs
        u = p.parameter_groups["dirs"].values
        assert np.abs(np.linalg.norm(u, axis=1) - 1).max() <= 1e-12
        finals.append((summary.final_cost, u.copy()))
    assert finals[1][0] == pytest.approx(finals[0][0], rel=1e-8)
    np.testing.assert_allclose(finals[1][1], finals[0][1], atol=1e-7)
