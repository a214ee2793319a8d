"""Bounds and scipy's semantics in sparselm.least_squares, against scipy.optimize.least_squares.

Bound-constrained minima equal scipy trf's; every point the solver evaluates (trial points and
finite-difference points) lies inside the bounds; the sparse CHOLMOD path takes bounds; x^2-type
and linear problems converge as scipy's trf does; float32 residuals get float32-sized difference
steps; a run that stops without converging is never reported as a success.
"""
import sparselm  # noqa: F401  (first: its BLAS thread policy)
import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp

from sparselm import least_squares


def rosenbrock(x):
    return np.array([10 * (x[1] - x[0] ** 2), 1 - x[0]])


def broyden(x):
    f = (3 - 2 * x) * x + 1
    f[1:] -= x[:-1]
    f[:-1] -= 2 * x[1:]
    return f


def broyden_jac(x):
    n = x.size
    return sp.diags([-np.ones(n - 1), 3 - 4 * x, -2 * np.ones(n - 1)], [-1, 0, 1], format="csr")


class Recorded:
    """A residual function that keeps every point it is called at."""

    def __init__(self, fun):
        self.fun, self.points = fun, []

    def __call__(self, x):
        self.points.append(np.array(x, dtype=float))
        return self.fun(x)


@pytest.mark.parametrize("x0, bounds, jac", [
    ([-2.0, 1.0], ([-np.inf, -1.5], np.inf), "2-point"),
    ([2.0, 2.0], ([-np.inf, 1.5], np.inf), "3-point"),
    ([0.0, 2.0], ([-np.inf, 1.5], [1.0, np.inf]), "2-point"),
    ([2.0, 2.0], ([1.0, 1.5], [3.0, 3.0]), "3-point"),
    ([-1.2, 1.0], ([-50.0, 0.0], [0.5, 100]), "2-point"),
])
def test_rosenbrock_bounds_match_scipy_and_stay_feasible(x0, bounds, jac):
    f = Recorded(rosenbrock)
    res = least_squares(f, x0, jac, bounds)
    ref = scipy.optimize.least_squares(rosenbrock, x0, jac, bounds)
    lb, ub = (np.broadcast_to(np.asarray(b, float), (2,)) for b in bounds)
    assert res.success and ref.success
    assert res.cost == pytest.approx(ref.cost, rel=1e-6, abs=1e-12)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-5, atol=1e-7)
    assert res.optimality < 1e-5
    points = np.array(f.points)
    assert np.all(points >= lb) and np.all(points <= ub)  # trial and finite-difference points alike
    np.testing.assert_array_equal(res.active_mask, ref.active_mask)


def test_active_mask_and_scipy_bounds_object():
    res = least_squares(lambda x: x - 3.0, [0.0, 0.0, 5.0], bounds=scipy.optimize.Bounds([-1, 0, 4], [1, 5, 6]))
    np.testing.assert_allclose(res.x, [1.0, 3.0, 4.0], atol=1e-10)
    np.testing.assert_array_equal(res.active_mask, [1, 0, -1])
    assert res.status > 0 and res.success


@pytest.mark.parametrize("bounds, x0, words", [
    ((3.0, 4.0), 2.0, "outside of provided bounds"),
    ((10.0, 0.0), 2.0, "strictly less"),
    ((1.0, 2.0, 3.0), 2.0, "2 elements"),
    (([0.0], [3.0, 4.0]), [1.0, 2.0], "Inconsistent shapes"),
])
def test_bounds_checked_as_scipy(bounds, x0, words):
    with pytest.raises(ValueError, match=words):
        least_squares(lambda x: x ** 2 - 1, x0, bounds=bounds)
    with pytest.raises(ValueError, match=words):
        scipy.optimize.least_squares(lambda x: x ** 2 - 1, x0, bounds=bounds)


def test_positional_arguments_in_scipys_order():
    res = least_squares(rosenbrock, [2.0, 2.0], "2-point", ([-np.inf, 1.5], np.inf), "trf", 1e-10, 1e-10, 1e-10)
    ref = scipy.optimize.least_squares(rosenbrock, [2.0, 2.0], "2-point", ([-np.inf, 1.5], np.inf), "trf",
                                       1e-10, 1e-10, 1e-10)
    assert res.cost == pytest.approx(ref.cost, rel=1e-8)
    with pytest.raises(ValueError, match="doesn't support bounds"):
        least_squares(rosenbrock, [2.0, 2.0], "2-point", (0.0, 3.0), "lm")


def test_sparse_bounded_problem_on_cholmod_matches_scipy():
    n = 20_000
    free = least_squares(broyden, -np.ones(n), broyden_jac, ftol=1e-12, xtol=1e-12, gtol=1e-12)
    ub = np.full(n, np.inf)
    ub[::3] = free.x[::3] - 0.05 * (1 + np.abs(free.x[::3]))
    bounds = (np.full(n, -10.0), ub)
    x0 = np.minimum(-np.ones(n), ub - 1e-3)
    tight = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12)
    res = least_squares(broyden, x0, broyden_jac, bounds, **tight)
    ref = scipy.optimize.least_squares(broyden, x0, broyden_jac, bounds, **tight)
    assert res.summary.linear_solver["name"] == "sparse_normal_cholesky" and res.success
    assert res.cost == pytest.approx(ref.cost, rel=1e-9)
    assert np.all(res.x <= ub) and np.all(res.x >= -10.0)
    # every third parameter ends on its upper bound (scipy's interior iterates stay a little inside)
    assert np.sum(res.active_mask == 1) == ub[::3].size >= np.sum(ref.active_mask == 1) > n // 4


def test_vanishing_jacobian_and_linear_problems_converge_as_trf():
    # f = x^2 + 5: J -> 0 at the minimum; the first step is bounded by |x0| and lands on 0
    res = least_squares(lambda x: x ** 2 + 5.0, 2.0)
    assert res.x[0] == 0.0 and res.nfev <= 3 and res.status == 1
    # zero-residual f = x^2 (Gauss-Newton halves x): where gtol stops scipy's trf, as fast
    res = least_squares(lambda x: x ** 2, 1.0)
    ref = scipy.optimize.least_squares(lambda x: x ** 2, 1.0)
    assert res.success and abs(res.x[0]) <= 1.01 * abs(ref.x[0]) and res.nfev <= ref.nfev + 1
    # linear: the undamped Gauss-Newton step solves it exactly
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((30, 5)), rng.standard_normal(30)
    res = least_squares(lambda x: a @ x - b, np.zeros(5), lambda x: a)
    np.testing.assert_allclose(res.x, np.linalg.lstsq(a, b, rcond=None)[0], rtol=1e-12)
    assert res.nfev <= 6


def test_float32_residuals_get_float32_difference_steps():
    rng = np.random.default_rng(1978)
    t = np.linspace(0, 1, 100, dtype=np.float32)
    y = rng.random(size=100, dtype=np.float32)

    def err(p):
        return ((p[0] + p[1] * t).astype(np.float32) - y).astype(np.float32)

    res = least_squares(err, [-1.0, -1.0])
    exact = np.linalg.lstsq(np.column_stack([np.ones(100), t.astype(float)]), y.astype(float), rcond=None)[0]
    assert res.nfev > 2
    np.testing.assert_allclose(res.x, exact, atol=1e-4)


def test_stopping_without_converging_is_not_success():
    res = least_squares(rosenbrock, [-2.0, 1.0], max_nfev=3)
    assert res.status == 0 and not res.success and res.nfev == 3
    def stop(intermediate_result):
        raise StopIteration

    res = least_squares(rosenbrock, [-2.0, 1.0], callback=stop)
    assert res.status == -2 and not res.success and res.nit == 1


def test_result_fields_with_scipys_meaning():
    res = least_squares(rosenbrock, [2.0, 2.0], loss="soft_l1", f_scale=0.5)
    ref = scipy.optimize.least_squares(rosenbrock, [2.0, 2.0], loss="soft_l1", f_scale=0.5)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-6)
    np.testing.assert_allclose(res.jac, ref.jac, rtol=1e-5, atol=1e-8)  # scipy's loss-rescaled Jacobian
    np.testing.assert_allclose(res.grad, ref.grad, atol=1e-7)
    lm = least_squares(rosenbrock, [2.0, 2.0], method="lm")
    assert lm.njev is None and lm.nfev >= lm.summary.problem["fd_function_calls"]


def test_finite_differences_at_the_bounds_stay_inside_and_are_accurate():
    from sparselm.linalg.csc import JacobianPattern
    from sparselm.scipy_api.jacobian import FiniteDifferenceJacobian
    from sparselm.util.timing import PhaseTimer

    lb, ub = np.array([0.0, -1.0, -np.inf]), np.array([1.0, 0.0, 2.0])
    x = np.array([0.0, 0.0, 2.0])  # at a lower, an upper, an upper bound
    exact = np.diag([np.cos(0.0), 2 * 0.0 + 1, 3 * 2.0 ** 2])

    def fun(v):
        assert np.all(v >= lb) and np.all(v <= ub), v
        return np.array([np.sin(v[0]), v[1] ** 2 + v[1], v[2] ** 3])

    for method, tol in (("2-point", 1e-6), ("3-point", 1e-8)):
        pattern = JacobianPattern((3, 3), np.arange(0, 10, 3), np.tile(np.arange(3), 3), dense=True)
        fd = FiniteDifferenceJacobian(fun, pattern, method, None, PhaseTimer(), bounds=(lb, ub))
        data = fd(x, fun(x))
        np.testing.assert_allclose(data.reshape(3, 3).T, exact, atol=tol * 12)


@pytest.mark.parametrize("mode", ["operator", "sparse"])
def test_lsmr_steps_for_operators_and_on_request(mode):
    """tr_solver='lsmr' (a LinearOperator Jacobian implies it): same minimum as the Cholesky steps and as
    scipy, with bounds too, J^T J never formed."""
    from scipy.sparse.linalg import aslinearoperator

    n = 2000
    jac = (lambda x: aslinearoperator(broyden_jac(x))) if mode == "operator" else broyden_jac
    kw = dict(tr_solver="lsmr") if mode == "sparse" else {}
    tight = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12)
    res = least_squares(broyden, -np.ones(n), jac, **kw, **tight)
    assert res.summary.linear_solver["name"] == "lsmr" and res.success and res.cost < 1e-20
    bounds = (np.full(n, -10.0), np.full(n, -0.45))
    res = least_squares(broyden, -np.ones(n), jac, bounds, **kw, **tight)
    ref = scipy.optimize.least_squares(broyden, -np.ones(n), broyden_jac, bounds, **tight)
    assert res.success and res.cost == pytest.approx(ref.cost, rel=1e-8)
    assert np.all(res.x <= -0.45)
