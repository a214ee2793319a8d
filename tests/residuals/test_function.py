"""sparselm.residual: derived Jacobians against central differences and against the hand-written BAL
kernel, Jacobian variants for constant slots/coordinates, errors at decoration time, the disk cache."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import sparselm
from sparselm import math as sm
from sparselm.bal.camera import BAL_REPROJECTION, BAL_REPROJECTION_HANDWRITTEN
from sparselm.residuals.function import FunctionResidualType, ResidualDefinitionError

REPO = Path(__file__).resolve().parents[2]


@sparselm.residual(residual_size=2, block_sizes=(3, 2), data_size=1, name="mixed_ops")
def mixed_ops(x, y, d):
    """Every sparselm.math function and a where, once each."""
    s = sm.sin(x[0]) * sm.cos(x[1]) + sm.tan(0.3 * x[2]) + sm.exp(-y[0] * y[0]) + sm.log(1.0 + x[0] * x[0])
    s = s + sm.sqrt(2.0 + y[1] * y[1]) + sm.atan2(y[1], 2.0 + y[0]) + sm.arctan(x[2]) + sm.tanh(y[0])
    s = s + sm.abs(x[1]) + sm.pow(1.5 + x[2] * x[2], 1.3) + sm.minimum(x[0], y[0]) + sm.maximum(x[1], y[1])
    s = s + sm.asin(0.5 * sm.tanh(x[2])) + sm.acos(0.5 * sm.tanh(y[1])) + sm.sinh(0.3 * x[0]) + sm.cosh(0.2 * y[0])
    t = sm.where((x[0] > 0.0) & (y[0] < 1.0) | ~(x[2] <= -5.0), x[0] * y[1], x[1] - y[0])
    return [s - d[0], t * x[2] + 1.0]


@sparselm.residual(residual_size=3, block_sizes=(2,), data_size=0)
def loop_and_constants(x):
    """A Python loop over Python values, a residual that is a plain number, a slice."""
    acc = 0.0
    for k in range(1, 4):
        acc = acc + k * x[0] ** k
    a, b = x[0:2]
    return [acc, a / (1.0 + b * b), 2.0]


def _random_mixed(rng, n=40):
    x = rng.normal(size=(7, 3))
    x[:, 1] += np.where(x[:, 1] > 0, 0.1, -0.1)  # keep |x1| away from the kink of abs
    y = rng.normal(size=(5, 2))
    index = np.column_stack([rng.integers(0, 7, n), rng.integers(0, 5, n)])
    return (x, y), index, rng.normal(size=(n, 1))


def test_returns_a_residual_type_with_exact_jacobian(rng):
    assert isinstance(mixed_ops, FunctionResidualType) and isinstance(mixed_ops, sparselm.ResidualType)
    assert (mixed_ops.name, mixed_ops.residual_size, mixed_ops.block_sizes, mixed_ops.data_size) == \
        ("mixed_ops", 2, (3, 2), 1)
    params, index, data = _random_mixed(rng)
    result = sparselm.check_jacobian(mixed_ops, params, index, data, tolerance=1e-7)
    assert result.ok, str(result)


def test_kernels_agree_with_the_function_run_on_numbers(rng):
    params, index, data = _random_mixed(rng)
    res = np.empty((len(index), 2))
    mixed_ops.residual_kernel(params, index, data, res)
    for i in range(len(index)):
        want = mixed_ops.function(params[0][index[i, 0]], params[1][index[i, 1]], data[i])
        np.testing.assert_allclose(res[i], want, rtol=1e-13, atol=1e-13)


def test_loops_slices_and_constant_residuals(rng):
    x = rng.normal(size=(4, 2))
    index = np.arange(4)[:, None]
    assert sparselm.check_jacobian(loop_and_constants, [x], index, tolerance=1e-7).ok
    res = np.empty((4, 3))
    jac = (np.empty((4, 3, 2)),)
    loop_and_constants.jacobian_kernel((x,), index, np.zeros((4, 0)), res, jac)
    np.testing.assert_array_equal(res[:, 2], 2.0)
    np.testing.assert_array_equal(jac[0][:, 2, :], 0.0)
    np.testing.assert_allclose(jac[0][:, 0, 0], 1 + 4 * x[:, 0] + 9 * x[:, 0] ** 2, rtol=1e-14)


def _bal_reference_point(rng, n_cameras=30, n_points=50, n_obs=400):
    cameras = np.zeros((n_cameras, 9))
    cameras[:, 0:3] = rng.normal(size=(n_cameras, 3)) * rng.choice([1e-9, 1e-3, 0.05, 0.5, 2.5], (n_cameras, 1))
    cameras[0, 0:3] = 0.0                                     # theta = 0 exactly
    cameras[1, 0:3] = [0.0999, 0.0, 0.0]                      # just below the Taylor switch
    cameras[2, 0:3] = [0.1001, 0.0, 0.0]                      # just above it
    cameras[:, 3:6] = rng.normal(size=(n_cameras, 3))
    cameras[:, 5] -= 8.0
    cameras[:, 6] = rng.uniform(400, 900, n_cameras)
    cameras[:, 7] = rng.normal(size=n_cameras) * 0.1
    cameras[:, 8] = rng.normal(size=n_cameras) * 0.01
    points = rng.normal(size=(n_points, 3))
    index = np.column_stack([np.arange(n_obs) % n_cameras, rng.integers(0, n_points, n_obs)]).astype(np.int64)
    return (cameras, points), index, rng.normal(size=(n_obs, 2)) * 100


def _jacobian(rt, params, index, data):
    n = len(index)
    res = np.full((n, rt.residual_size), np.nan)
    jac = tuple(np.full((n, rt.residual_size, k), np.nan) for k in rt.block_sizes)
    rt.jacobian_kernel(params, index, data, res, jac)
    return res, jac


def test_derived_bal_jacobian_equals_the_hand_written_one(rng):
    params, index, data = _bal_reference_point(rng)
    res_d, jac_d = _jacobian(BAL_REPROJECTION, params, index, data)
    res_h, jac_h = _jacobian(BAL_REPROJECTION_HANDWRITTEN, params, index, data)
    np.testing.assert_allclose(res_d, res_h, rtol=1e-12, atol=1e-12 * np.abs(res_h).max())
    for jd, jh in zip(jac_d, jac_h):
        # relative to the size of each residual row's Jacobian block (entries can vanish)
        scale = np.abs(jh).max(axis=2, keepdims=True)
        assert np.all(np.abs(jd - jh) <= 1e-12 * scale)
    assert sparselm.check_jacobian(BAL_REPROJECTION, params, index, data, tolerance=1e-6).ok


def test_jacobian_variants_skip_constant_columns(rng):
    params, index, data = _bal_reference_point(rng, n_obs=100)
    needed = (tuple([True] * 6 + [False] * 3), (False, False, False))
    kernel = BAL_REPROJECTION.jacobian_kernel_for(needed)
    assert kernel is BAL_REPROJECTION.jacobian_kernel_for(needed)  # cached
    n = len(index)
    res, jac = np.full((n, 2), np.nan), (np.full((n, 2, 9), np.nan), np.full((n, 2, 3), np.nan))
    kernel(params, index, data, res, jac)
    full_res, full_jac = _jacobian(BAL_REPROJECTION, params, index, data)
    np.testing.assert_array_equal(res, full_res)
    np.testing.assert_array_equal(jac[0][:, :, :6], full_jac[0][:, :, :6])
    assert np.isnan(jac[0][:, :, 6:]).all() and np.isnan(jac[1]).all()  # never written
    full = tuple(tuple([True] * k) for k in (9, 3))
    assert BAL_REPROJECTION.jacobian_kernel_for(full) is BAL_REPROJECTION.jacobian_kernel
    with pytest.raises(ValueError, match="block sizes"):
        BAL_REPROJECTION.jacobian_kernel_for(((True,) * 9,))


def test_solve_with_constant_coordinates_and_groups_uses_the_variant(rng):
    """Intrinsics constant and one constant point group: the same minimum as with a full kernel."""
    from sparselm.bal import synthetic_problem

    syn = synthetic_problem(n_cameras=6, n_points=60, seed=3)
    results = []
    for rt in (BAL_REPROJECTION_HANDWRITTEN, BAL_REPROJECTION):
        p = sparselm.Problem()
        p.add_parameter_group("cameras", syn.initial.cameras, constant=[0, 1], constant_coordinates=[6, 7, 8])
        p.add_parameter_group("points", syn.initial.points, eliminate=True)
        p.add_residual_group("obs", rt, [("cameras", syn.initial.camera_index), ("points", syn.initial.point_index)],
                             syn.initial.observations)
        calls = BAL_REPROJECTION.jacobian_kernel_for.cache_info()
        summary = sparselm.solve(p, max_iterations=50)
        after = BAL_REPROJECTION.jacobian_kernel_for.cache_info()
        if rt is BAL_REPROJECTION:  # the evaluator asked for the variant without the constant columns
            assert after.hits + after.misses > calls.hits + calls.misses
        results.append((summary.final_cost, p.parameter_groups["cameras"].values.copy()))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(results[1][1][:, 6:], syn.initial.cameras[:, 6:])


# --- errors at decoration time ----------------------------------------------------------------

def _decorate(func, **kw):
    args = dict(residual_size=1, block_sizes=(2,), data_size=1)
    args.update(kw)
    return sparselm.residual(**args)(func)


def test_wrong_return_length_names_function():
    def two_values(x, d):
        return [x[0] - d[0], x[1]]
    with pytest.raises(ResidualDefinitionError, match=r"two_values.*returned 2 residual values, expected 1"):
        _decorate(two_values)


def test_wrong_block_count_names_function():
    def three_args(x, y, d):
        return [x[0] - y[0] - d[0]]
    with pytest.raises(ResidualDefinitionError, match=r"three_args.*takes 3 argument\(s\), expected 2"):
        _decorate(three_args)


def test_python_if_on_a_traced_value_names_the_line():
    def branchy(x, d):
        if x[0] > 0:
            return [x[0] - d[0]]
        return [-x[0] - d[0]]
    line = branchy.__code__.co_firstlineno + 1
    with pytest.raises(ResidualDefinitionError, match=rf"branchy.*test_function.py:{line}.*sm.where"):
        _decorate(branchy)


def test_math_and_numpy_functions_are_refused_with_a_hint():
    def uses_math(x, d):
        return [math.sin(x[0]) - d[0]]

    def uses_numpy(x, d):
        return [np.exp(x[0]) - d[0]]
    with pytest.raises(ResidualDefinitionError, match=r"uses_math.*:\d+: .*sparselm.math"):
        _decorate(uses_math)
    with pytest.raises(ResidualDefinitionError, match=r"uses_numpy.*numpy.exp.*sm.exp"):
        _decorate(uses_numpy)


def test_index_out_of_range_and_non_finite_constants():
    def too_far(x, d):
        return [x[2] - d[0]]

    def infinite(x, d):
        return [x[0] * float("inf") - d[0]]
    with pytest.raises(ResidualDefinitionError, match=r"too_far.*index 2 out of range.*size 2"):
        _decorate(too_far)
    with pytest.raises(ResidualDefinitionError, match=r"infinite.*non-finite constant"):
        _decorate(infinite)


def test_bad_precompute_definitions():
    def needs_r(x, d, R):
        return [R[0] * x[0] - d[0]]
    with pytest.raises(ResidualDefinitionError, match=r"'cam' is not a block argument"):
        _decorate(needs_r, precompute={"R": ("cam", lambda x: [x[0]])})
    with pytest.raises(ResidualDefinitionError, match=r"needs_r.*precomputed names \['Q'\]"):
        _decorate(needs_r, precompute={"Q": ("x", lambda x: [x[0]])})


def test_precompute_matches_the_inline_function(rng):
    def scaled(x):
        return [sm.exp(x[0]), x[0] * x[1]]

    def with_pre(x, y, d, g):
        return [g[0] * y[0] - d[0], g[1] + sm.sin(y[1])]

    def inline(x, y, d):
        return with_pre(x, y, d, scaled(x))
    pre = sparselm.residual(2, (2, 2), 1, name="with_pre", precompute={"g": ("x", scaled)})(with_pre)
    plain = sparselm.residual(2, (2, 2), 1, name="inline_pre")(inline)
    x, y = rng.normal(size=(4, 2)), rng.normal(size=(6, 2))
    index = np.column_stack([rng.integers(0, 4, 30), rng.integers(0, 6, 30)])
    data = rng.normal(size=(30, 1))
    a, b = _jacobian(pre, (x, y), index, data), _jacobian(plain, (x, y), index, data)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-14, atol=1e-14)
    for ja, jb in zip(a[1], b[1]):
        np.testing.assert_allclose(ja, jb, rtol=1e-13, atol=1e-14)
    assert sparselm.check_jacobian(pre, (x, y), index, data).ok


# --- the disk cache ---------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import time
    start = time.perf_counter()
    import sparselm
    from sparselm import math as sm
    import numpy as np

    @sparselm.residual(residual_size=1, block_sizes=(2,), data_size=2, name="cache_probe")
    def decay(x, obs):
        return [x[0] * sm.exp(-x[1] * obs[0]) - obs[1]]

    res = np.empty((3, 1))
    jac = (np.empty((3, 1, 2)),)
    decay.jacobian_kernel((np.ones((1, 2)),), np.zeros((3, 1), dtype=np.int64), np.ones((3, 2)), res, jac)
    print(decay.cache_hit, time.perf_counter() - start)
""")


def test_disk_cache_makes_a_second_process_fast(tmp_path):
    env = dict(os.environ, SPARSELM_CACHE_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=600,
                             cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        hit, seconds = out.stdout.split()
        runs.append((hit == "True", float(seconds)))
    assert runs[0][0] is False and runs[1][0] is True
    assert runs[1][1] < 5.0  # generous: the import of sparselm itself is most of it
    assert list(tmp_path.glob("cache_probe_*.py"))


@sparselm.residual(residual_size=4, block_sizes=(4,), data_size=4, name="quaternion_difference")
def quaternion_difference(q, target):
    """q - target in ambient coordinates (a function of a block on a manifold)."""
    return [q[k] - target[k] for k in range(4)]


def test_residual_function_on_a_manifold_group(rng):
    """The ambient Jacobian of a generated type is converted to the tangent of the group's manifold;
    constant tangent coordinates do not drop ambient columns."""
    target = rng.normal(size=4)
    target /= np.linalg.norm(target)
    start = target + 0.1 * rng.normal(size=4)
    start /= np.linalg.norm(start)
    problem = sparselm.Problem()
    problem.add_parameter_group("q", start[None], manifold="so3_quaternion")
    problem.add_residual_group("d", quaternion_difference, [("q", [0])], target[None])
    before = quaternion_difference.jacobian_kernel_for.cache_info()
    summary = sparselm.solve(problem, max_iterations=100, function_tolerance=1e-16, gradient_tolerance=1e-16,
                             parameter_tolerance=1e-15)
    q = problem.parameter_groups["q"].values[0]
    assert summary.final_cost < 1e-20, summary.message
    np.testing.assert_allclose(q * np.sign(q @ target), target, atol=1e-10)
    after = quaternion_difference.jacobian_kernel_for.cache_info()
    assert after.hits + after.misses > before.hits + before.misses
