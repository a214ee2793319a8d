"""The LM loop end to end (sparselm.solve -> minimizer, strategy):

* the classic problems and a random sparse 12k-residual problem reach scipy.optimize.least_squares'
  minimum (same residual function in numpy, same start, tight tolerances);
* Levenberg and Marquardt damping reach the same minimum; Marquardt's iterates are invariant to a
  diagonal rescaling of the parameters and Levenberg's are not; Gauss-Newton converges on a benign fit;
* robust losses match scipy's loss / f_scale on a line fit with outliers;
* termination: gradient at the start, parameter, time limit, failure after invalid steps; the point
  returned is the best one; constant blocks and coordinates do not move.
"""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit, prange
from scipy.optimize import least_squares

import sparselm
from sparselm import ResidualType, models


def _exp_data(rng):
    t = np.linspace(0, 4, 30)
    return np.column_stack([t, 2.5 * np.exp(-1.3 * t) + 0.02 * rng.normal(size=t.size)])


def _gauss_data(rng):
    t = np.linspace(-3, 5, 40)
    return np.column_stack([t, 1.7 * np.exp(-0.5 * ((t - 1.0) / 0.8) ** 2) + 0.05 * rng.normal(size=t.size)])


# name -> (type, start, data factory, zero-residual minimum?)
CLASSIC = {
    "rosenbrock": (models.ROSENBROCK, models.CLASSIC_STARTS["rosenbrock"], lambda rng: None, True),
    "powell_singular": (models.POWELL, models.CLASSIC_STARTS["powell_singular"], lambda rng: None, True),
    "freudenstein_roth": (models.FREUDENSTEIN, models.CLASSIC_STARTS["freudenstein_roth"], lambda rng: None, False),
    "bard": (models.BARD, models.CLASSIC_STARTS["bard"], lambda rng: models.BARD_DATA, False),
    "meyer": (models.MEYER, models.CLASSIC_STARTS["meyer"], lambda rng: models.MEYER_DATA, False),
    "exponential": (models.EXPONENTIAL, np.array([1.0, 0.5]), _exp_data, False),
    "gaussian": (models.GAUSSIAN, np.array([1.0, 0.5, 1.5]), _gauss_data, False),
}


def _scipy(fun, x0, **kwargs):
    kw = dict(method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, x_scale="jac", max_nfev=100000)
    kw.update(kwargs)
    return least_squares(fun, x0, **kw)


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_classic_problems_match_scipy(name, rng, tight, numpy_residuals, make_single_block):
    rt, x0, data_of, zero_residual = CLASSIC[name]
    data = data_of(rng)
    ref = _scipy(lambda x: numpy_residuals[name](x, data).ravel(), x0)
    p = make_single_block(rt, x0, data)
    s = sparselm.solve(p, **tight)
    x = p.parameter_groups["x"].values[0]
    assert s.termination == "convergence", s.message
    assert s.initial_cost == pytest.approx(0.5 * np.sum(numpy_residuals[name](x0, data) ** 2), rel=1e-13)
    if zero_residual:
        assert s.final_cost < 1e-20 and ref.cost < 1e-20
        np.testing.assert_allclose(x, ref.x, atol=1e-4)  # Powell: J singular at 0, slow linear convergence
    else:
        assert s.final_cost == pytest.approx(ref.cost, rel=1e-9)
        np.testing.assert_allclose(x, ref.x, rtol=1e-5)
    # the reported cost is the cost at the values written back
    assert s.final_cost == pytest.approx(0.5 * np.sum(numpy_residuals[name](x, data) ** 2), rel=1e-12, abs=1e-30)


def test_known_minima(make_single_block, tight):
    """Published values: Freudenstein-Roth from (0.5, -2) ends in the local minimum 48.9842/2."""
    expect = {"rosenbrock": 0.0, "freudenstein_roth": 48.98425367924 / 2, "bard": 8.214877306578e-3 / 2,
              "meyer": 87.94585517 / 2}
    for name, cost in expect.items():
        rt, x0, data_of, _ = CLASSIC[name]
        s = sparselm.solve(make_single_block(rt, x0, data_of(None)), **tight)
        assert s.final_cost == pytest.approx(cost, rel=1e-8, abs=1e-20), name


def test_random_sparse_problem_matches_scipy(make_graph, tight, flat_values):
    """2030 points/beacons (4060 unknowns), 12k+ residuals in three groups, one nonlinear."""
    g = make_graph()
    p = g.problem
    assert p.n_residuals > 10_000 and len(p.parameter_groups) == 2 and len(p.residual_groups) == 3
    ref = least_squares(g.fun, g.x0, jac=g.jac, method="trf", tr_solver="lsmr", xtol=1e-15, ftol=1e-15,
                        gtol=1e-15, x_scale="jac", tr_options=dict(atol=1e-12, btol=1e-12))
    s = sparselm.solve(p, **tight)
    assert s.options_used["linear_solver"] == "sparse_normal_cholesky"
    assert s.termination == "convergence", s.message
    assert s.initial_cost == pytest.approx(0.5 * np.sum(g.fun(g.x0) ** 2), rel=1e-12)
    assert s.final_cost == pytest.approx(ref.cost, rel=1e-9)
    x = flat_values(p)
    assert s.final_cost == pytest.approx(0.5 * np.sum(g.fun(x) ** 2), rel=1e-12)
    np.testing.assert_allclose(x, ref.x, atol=1e-6)
    assert s.n_iterations < 30


@pytest.mark.parametrize("name", ["bard", "gaussian", "exponential", "freudenstein_roth"])
def test_levenberg_and_marquardt_reach_the_same_minimum(name, rng, tight, make_single_block):
    rt, x0, data_of, _ = CLASSIC[name]
    data = data_of(rng)
    results = {}
    for damping in ("marquardt", "levenberg"):
        for jacobi in (False, True):
            p = make_single_block(rt, x0, data)
            s = sparselm.solve(p, damping=damping, jacobi_scaling=jacobi, **tight)
            assert s.termination == "convergence", (damping, jacobi, s.message)
            results[damping, jacobi] = (s.final_cost, p.parameter_groups["x"].values[0].copy())
    ref = results["marquardt", False]
    for key, (cost, x) in results.items():
        assert cost == pytest.approx(ref[0], rel=1e-10), key
        np.testing.assert_allclose(x, ref[1], rtol=1e-6, err_msg=str(key))


def test_gauss_newton_converges_on_a_benign_fit(rng, tight, make_single_block, numpy_residuals):
    data = _exp_data(rng)
    x0 = np.array([2.0, 1.0])
    p = make_single_block(models.EXPONENTIAL, x0, data)
    s = sparselm.solve(p, damping="gauss_newton", **tight)
    assert s.termination == "convergence", s.message
    ref = _scipy(lambda x: numpy_residuals["exponential"](x, data).ravel(), x0)
    assert s.final_cost == pytest.approx(ref.cost, rel=1e-10)
    assert s.successful_steps >= s.n_iterations - 1 and s.n_iterations < 15  # quadratic convergence, no damping
    # on a linear problem it is exact after one step
    a = rng.normal(size=(20, 1, 2))
    b = rng.normal(size=(20, 1))
    p = make_single_block(models.LINEAR, [5.0, -3.0], models.linear_data(a, b))
    s = sparselm.solve(p, damping="gauss_newton", **tight)
    x_ls = np.linalg.lstsq(a[:, 0, :], b[:, 0], rcond=None)[0]
    np.testing.assert_allclose(p.parameter_groups["x"].values[0], x_ls, rtol=1e-12)
    assert s.iterations[1].step_is_successful and s.iterations[1].cost == pytest.approx(s.final_cost, rel=1e-14)


# Meyer with each parameter divided by a scale (data: t, y, s0, s1, s2): x' = S x gives the same residuals.
@njit(parallel=True, cache=True)
def _scaled_meyer_residuals(params, index, data, residuals):
    x = params[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        x0, x1, x2 = x[b, 0] / data[i, 2], x[b, 1] / data[i, 3], x[b, 2] / data[i, 4]
        residuals[i, 0] = x0 * np.exp(x1 / (data[i, 0] + x2)) - data[i, 1]


@njit(parallel=True, cache=True)
def _scaled_meyer_jacobians(params, index, data, residuals, jacobians):
    x = params[0]
    jac = jacobians[0]
    for i in prange(index.shape[0]):
        b = index[i, 0]
        x0, x1, x2 = x[b, 0] / data[i, 2], x[b, 1] / data[i, 3], x[b, 2] / data[i, 4]
        tx = data[i, 0] + x2
        e = np.exp(x1 / tx)
        residuals[i, 0] = x0 * e - data[i, 1]
        jac[i, 0, 0] = e / data[i, 2]
        jac[i, 0, 1] = x0 * e / tx / data[i, 3]
        jac[i, 0, 2] = -x0 * e * x1 / (tx * tx) / data[i, 4]


SCALED_MEYER = ResidualType("scaled_meyer", 1, (3,), 5, _scaled_meyer_residuals, _scaled_meyer_jacobians)


def _scaled_meyer_costs(scale, damping, make_single_block, iterations=40):
    data = np.column_stack([models.MEYER_DATA, np.tile(scale, (16, 1))])
    p = make_single_block(SCALED_MEYER, models.CLASSIC_STARTS["meyer"] * scale, data)
    s = sparselm.solve(p, damping=damping, max_iterations=iterations, function_tolerance=0.0, gradient_tolerance=0.0,
                       parameter_tolerance=0.0)
    assert s.n_iterations == iterations and s.termination == "no_convergence"
    return np.array([it.cost for it in s.iterations]), p.parameter_groups["x"].values[0] / scale


def test_marquardt_iterates_are_invariant_to_parameter_scaling(make_single_block):
    scale = np.array([1e3, 1e-3, 1e-1])
    assert check_scaled_meyer_jacobian(scale)
    ref, x_ref = _scaled_meyer_costs(np.ones(3), "marquardt", make_single_block)
    got, x_got = _scaled_meyer_costs(scale, "marquardt", make_single_block)
    assert ref[-1] < 0.01 * ref[0]  # it made progress on this badly scaled problem
    np.testing.assert_allclose(got, ref, rtol=1e-8)
    np.testing.assert_allclose(x_got, x_ref, rtol=1e-6)
    ref_l, _ = _scaled_meyer_costs(np.ones(3), "levenberg", make_single_block)
    got_l, _ = _scaled_meyer_costs(scale, "levenberg", make_single_block)
    assert np.max(np.abs(got_l - ref_l) / ref_l) > 0.1  # Levenberg's lambda * I is not scale invariant


def check_scaled_meyer_jacobian(scale):
    x = (models.CLASSIC_STARTS["meyer"] * scale)[None, :]
    data = np.column_stack([models.MEYER_DATA, np.tile(scale, (16, 1))])
    return sparselm.check_jacobian(SCALED_MEYER, [x], np.zeros((16, 1), np.int64), data).ok


@pytest.mark.parametrize("loss", ["huber", "soft_l1", "cauchy", "arctan"])
def test_robust_line_fit_matches_scipy(loss, rng, tight, make_single_block):
    t = np.linspace(0, 10, 60)
    y = 1.0 + 0.5 * t + 0.1 * rng.normal(size=t.size)
    out = rng.choice(t.size, 8, replace=False)
    y[out] += rng.uniform(3, 8, size=8) * rng.choice([-1, 1], size=8)
    f_scale = 0.3
    x0 = np.array([0.0, 0.0])

    def fun(x):
        return x[0] + x[1] * t - y

    ref = least_squares(fun, x0, loss=loss, f_scale=f_scale, method="trf", xtol=1e-15, ftol=1e-15, gtol=1e-15,
                        max_nfev=10000)
    p = make_single_block(models.LINEAR, x0, np.column_stack([np.ones_like(t), t, y]), loss=loss, loss_scale=f_scale)
    s = sparselm.solve(p, **tight)
    assert s.termination == "convergence", s.message
    assert s.final_cost == pytest.approx(ref.cost, rel=1e-8)
    np.testing.assert_allclose(p.parameter_groups["x"].values[0], ref.x, rtol=1e-6)
    # the robust fit ignores the outliers: close to the true line, unlike plain least squares
    assert np.abs(p.parameter_groups["x"].values[0] - [1.0, 0.5]).max() < 0.1
    plain = least_squares(fun, x0, method="lm").x
    assert np.abs(plain - [1.0, 0.5]).max() > np.abs(p.parameter_groups["x"].values[0] - [1.0, 0.5]).max()


def test_gradient_tolerance_at_the_start(make_single_block):
    p = make_single_block(models.ROSENBROCK, [1.0, 1.0])
    s = sparselm.solve(p)
    assert s.termination == "convergence" and "Gradient tolerance" in s.message
    assert s.n_iterations == 0 and s.final_cost == 0.0


def test_parameter_tolerance(make_single_block):
    p = make_single_block(models.ROSENBROCK, models.CLASSIC_STARTS["rosenbrock"])
    s = sparselm.solve(p, parameter_tolerance=1e-3, function_tolerance=0.0, gradient_tolerance=0.0,
                       max_iterations=200)
    assert s.termination == "convergence" and s.message.startswith("Parameter tolerance reached")


def test_time_limit(make_single_block):
    p = make_single_block(models.MEYER, models.CLASSIC_STARTS["meyer"], models.MEYER_DATA)
    s = sparselm.solve(p, max_time_s=1e-9)
    assert s.termination == "no_convergence" and "time" in s.message


def test_failure_after_consecutive_invalid_steps(rng):
    """Gauss-Newton on a singular J (a block no residual touches): every linear solve fails; the
    solver gives up after max_consecutive_invalid_steps and keeps the starting point."""
    p = sparselm.Problem()
    x0 = rng.normal(size=(2, 2))
    p.add_parameter_group("x", x0)
    p.add_residual_group("prior", models.PRIOR_2D, [("x", [0])], np.ones((1, 2)))
    s = sparselm.solve(p, damping="gauss_newton", max_consecutive_invalid_steps=3)
    assert s.termination == "failure" and "4 consecutive invalid steps" in s.message
    assert s.invalid_steps == 4 and s.successful_steps == 0 and not s.ok
    np.testing.assert_array_equal(p.parameter_groups["x"].values, x0)
    # with damping the same problem is solved (the untouched block stays put)
    s = sparselm.solve(p, damping="marquardt")
    assert s.ok and s.final_cost < 1e-12
    np.testing.assert_array_equal(p.parameter_groups["x"].values[1], x0[1])


def test_cost_never_increases_and_best_point_is_returned(make_single_block, tight, numpy_residuals):
    p = make_single_block(models.MEYER, models.CLASSIC_STARTS["meyer"], models.MEYER_DATA)
    s = sparselm.solve(p, **dict(tight, parameter_tolerance=0.0))
    assert s.message.startswith("Function tolerance")
    costs = [it.cost for it in s.iterations]
    assert all(b <= a for a, b in zip(costs, costs[1:]))
    assert s.unsuccessful_steps > 0  # rejected trials happened on the way ...
    assert costs[-1] == s.final_cost  # ... and the held point is the best one
    x = p.parameter_groups["x"].values[0]
    assert s.final_cost == pytest.approx(0.5 * np.sum(numpy_residuals["meyer"](x, models.MEYER_DATA) ** 2),
                                         rel=1e-12)
    assert s.successful_steps + s.unsuccessful_steps == s.n_iterations


def test_constant_blocks_and_coordinates_do_not_move(make_graph, rng, tight):
    g = make_graph(n_points=200, n_beacons=10, n_loops=200, seed=5)
    p = g.problem
    p.set_constant("points", [0, 7, 100])
    p.add_parameter_group("offsets", rng.normal(size=(4, 3)), constant_coordinates=[1])
    a = rng.normal(size=(12, 2, 3))
    p.add_residual_group("offset_obs", models.linear(2, 3), [("offsets", np.arange(12) % 4)],
                         models.linear_data(a, rng.normal(size=(12, 2))))
    before = {k: v.values.copy() for k, v in p.parameter_groups.items()}
    s = sparselm.solve(p, **tight)
    assert s.ok
    after = p.parameter_groups
    for i in (0, 7, 100):
        assert after["points"].values[i].tobytes() == before["points"][i].tobytes()  # bitwise
    free = np.setdiff1d(np.arange(200), [0, 7, 100])
    assert np.all(np.any(after["points"].values[free] != before["points"][free], axis=1))
    assert after["offsets"].values[:, 1].tobytes() == before["offsets"][:, 1].tobytes()
    assert np.all(after["offsets"].values[:, [0, 2]] != before["offsets"][:, [0, 2]])
    # the free coordinates are the least-squares solution with coordinate 1 held fixed
    for b in range(4):
        rows = np.arange(12) % 4 == b
        aa = a[rows]
        bb = p.residual_groups[-1].data[rows][:, 6:] - aa[:, :, 1] * before["offsets"][b, 1]
        sol = np.linalg.lstsq(aa[:, :, [0, 2]].reshape(-1, 2), bb.ravel(), rcond=None)[0]
        np.testing.assert_allclose(after["offsets"].values[b, [0, 2]], sol, rtol=1e-8, atol=1e-10)
