"""Hostile but finite numbers never end in a false "converged" (docs/guarantees.md, *Overflow*).

The reported case: a BAL point at 1e200 made |x|^2 overflow, the parameter-tolerance test passed
against |x| = inf ("|step| 3.1e+02 <= inf") and ``sparselm solve`` reported convergence after 0
iterations. Now |x| and |step| are overflow-safe norms (sparselm.util.numerics, tested in
tests/util/test_numerics.py), values beyond
+-1e150 are refused where they enter (BAL reader, Problem groups, weights, least_squares' x0) with a
message naming them, a cost / gradient that overflows at the start is a NonFiniteError naming the
residual group and at a trial point an unsuccessful step. Extreme but accepted inputs (1e-300,
denormals, -0.0, 1e150) are solved, with the reported cost equal to an independent evaluation.
"""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import sparselm
from sparselm import ResidualType
from sparselm.bal import build_problem, read_bal, synthetic_problem, write_bal
from sparselm.residuals import library


# -- the reported case: a BAL point at 1e200 ----------------------------------------------------------------

def _bal_with_point_at(tmp_path, value: float, name="big.txt"):
    bal = synthetic_problem(3, 7, seed=2).initial
    bal.points[0, 0] = value
    return write_bal(bal, tmp_path / name)


def test_bal_point_at_1e200_is_refused_naming_the_group_and_point(tmp_path):
    """The reader reads the file faithfully (it round-trips any finite value); building the problem refuses
    the point."""
    bal = read_bal(_bal_with_point_at(tmp_path, 1e200))
    assert bal.points[0, 0] == 1e200
    with pytest.raises(ValueError, match=r"parameter group 'points': values: value 1e\+200 is beyond \+-1e\+150"
                                         r".*index \(0, 0\)"):
        build_problem(bal)


def test_bal_point_at_1e200_through_the_cli_is_an_input_error_not_convergence(tmp_path):
    path = _bal_with_point_at(tmp_path, 1e200)
    proc = subprocess.run([sys.executable, "-m", "sparselm.cli", "solve", str(path), "-q"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "CONVERGENCE" not in proc.stdout + proc.stderr
    assert proc.stderr.startswith("sparselm: error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "parameter group 'points'" in proc.stderr and "beyond +-1e+150" in proc.stderr


def test_bal_point_at_1e150_is_accepted_and_does_not_mask_the_other_steps(tmp_path):
    """At the limit nothing overflows, but |x| ~ 1e150 would still make the global parameter test pass for
    any step (|step| ~ 1e3 <= 1e-8 * 1e150): the test also holds block by block, so the solve goes on and
    the other cameras and points improve (the first step alone used to be refused as 'converged')."""
    bal = read_bal(_bal_with_point_at(tmp_path, 1e150))
    problem = build_problem(bal)
    summary = sparselm.solve(problem, max_iterations=10)
    assert summary.successful_steps > 0 and summary.final_cost < 0.5 * summary.initial_cost
    assert not summary.message.startswith("Parameter tolerance reached") or summary.n_iterations > 1


# -- parameter values and weights beyond the range are refused by name --------------------------------------------

@pytest.mark.parametrize("where, value, fragment", [
    ("values", 1e200, r"parameter group 'x': values: value 1e\+200 is beyond \+-1e\+150.*index \(1, 0\)"),
    ("values", -1e151, r"parameter group 'x': values: value -1e\+151"),
    ("sigma", 1e-200, r"residual group 'prior': sigma must be a positive finite number, got 1e-200"),
    ("sigma", 1e200, r"residual group 'prior': sigma must be a positive finite number, got 1e\+200"),
    ("covariance", 1e-320, r"residual group 'prior': covariance\[0\] gives square-root information entries beyond"),
    ("information", 1e301, r"residual group 'prior': information\[0\] gives square-root information entries beyond"),
])
def test_values_beyond_the_range_are_refused_naming_group_and_field(where, value, fragment):
    values, data, kwargs = np.zeros((2, 2)), np.ones((2, 2)), {}
    if where == "values":
        values[1, 0] = value
    elif where == "data":
        data[0, 1] = value
    elif where == "sigma":
        kwargs["sigma"] = value
    else:
        kwargs[where] = np.diag([value, 1.0])
    problem = sparselm.Problem()
    with pytest.raises(ValueError, match=fragment):
        problem.add_parameter_group("x", values)
        problem.add_residual_group("prior", library.PRIOR_2D, [("x", [0, 1])], data, **kwargs)


# -- overflow inside the arithmetic --------------------------------------------------------------------------------

def _python_type(name, residual, jacobian, block_size=1):
    """A residual type from numpy functions r(x) and J(x) of a (n, k) block array (one instance per block)."""

    def kernel(params, index, data, residuals, jacobians=None):
        x = params[0][index[:, 0]]
        residuals[:] = residual(x)
        if jacobians is not None:
            jacobians[0][:] = jacobian(x)

    return ResidualType(name, 1, (block_size,), 0, kernel, kernel)


def _one_block(residual_type, x0):
    problem = sparselm.Problem()
    problem.add_parameter_group("x", [[x0]])
    problem.add_residual_group("r", residual_type, [("x", [0])])
    return problem


def test_cost_that_overflows_at_the_start_is_refused_naming_the_group():
    """Residual 1e200 (finite, accepted) squares to inf: refused before any iteration."""
    cube = _python_type("cube", lambda x: x ** 3, lambda x: 3.0 * x[:, :, None] ** 2)
    with pytest.raises(sparselm.NonFiniteError, match=r"the cost overflows .*residual group 'r'.*1e\+200"):
        sparselm.solve(_one_block(cube, 1e200 ** (1 / 3)))


def test_gradient_that_overflows_at_the_start_is_refused():
    """r = 1 (finite cost) with J = 1e300: diag(J^T J) overflows."""
    steep = _python_type("steep", lambda x: np.ones_like(x), lambda x: np.full(x.shape + (1,), 1e300))
    with pytest.raises(sparselm.NonFiniteError, match=r"diag\(J\^T J\) overflows .*residual group 'r'"):
        sparselm.solve(_one_block(steep, 0.0))


def test_overflow_at_a_trial_point_is_an_unsuccessful_step():
    """r = exp(x) - 1 from x = -8 with a huge trust region: the first (Gauss-Newton-like) step goes to
    x ~ 3000, where the residual is ~1e304 (capped at exp(700), still finite) and its square overflows the
    cost. That trial is rejected, the solve goes on and reaches the minimum x = 0."""
    exp = _python_type("exp", lambda x: np.expm1(np.minimum(x, 700.0)),
                       lambda x: np.exp(np.minimum(x, 700.0))[:, :, None])
    problem = _one_block(exp, -8.0)
    summary = sparselm.solve(problem, initial_trust_region_radius=1e16, damping="levenberg",
                             max_iterations=200, function_tolerance=1e-14, gradient_tolerance=1e-14)
    assert summary.termination == "convergence", summary.message
    overflowed = [it for it in summary.iterations[1:] if it.tr_ratio == -math.inf]
    assert overflowed and not any(it.step_is_successful for it in overflowed)
    assert abs(problem.parameter_groups["x"].values[0, 0]) < 1e-6


def test_invalid_step_records_say_why():
    """A singular Gauss-Newton system: each invalid record carries the linear solver's reason."""
    twice = ResidualType("twice", 1, (2,), 0,
                         lambda p, i, d, r: r.__setitem__(slice(None), (p[0][i[:, 0], :1] + p[0][i[:, 0], 1:]) - 1.0))
    problem = sparselm.Problem()
    problem.add_parameter_group("x", [[0.3, 0.2]])
    problem.add_residual_group("r", twice, [("x", [0])])
    summary = sparselm.solve(problem, damping="gauss_newton", linear_solver="dense")
    invalid = [it for it in summary.iterations if not it.step_is_valid]
    assert invalid and all(it.invalid_reason for it in invalid)
    assert summary.termination == "failure" and invalid[-1].invalid_reason in summary.message


def test_gain_ratio_that_overflows_makes_the_step_invalid():
    """A finite cost change over a denormal model decrease overflows the ratio: the step is invalid, with a
    reason; an infinite cost change (non-finite trial) stays an ordinary unsuccessful step (-inf)."""
    from sparselm.lm.minimizer import Minimizer

    ratio, reason = Minimizer.gain_ratio(1.0, 5e-324)
    assert ratio == math.inf and "gain ratio" in reason and "not finite" in reason
    assert Minimizer.gain_ratio(-math.inf, 1.0) == (-math.inf, None)
    assert Minimizer.gain_ratio(0.5, 1.0) == (0.5, None)


# -- extreme but accepted inputs are solved correctly ----------------------------------------------------------------

@pytest.mark.parametrize("scale, options", [
    (5e-324, {}), (1e-300, {}), (1e-160, {}),  # squares underflow: the gradient test ends it at once
    (1e-120, {"gradient_tolerance": 1e-130, "parameter_tolerance": 0.0}), (1.0, {}), (1e150, {})])
def test_extreme_but_accepted_values_are_solved_with_their_true_cost(scale, options):
    """Priors on 2-D points, data and starting values of magnitude ``scale`` (with -0.0 and zeros mixed in):
    the solve ends normally and the reported cost is the cost at the returned point; where the squared
    residuals are normal numbers and the gradient test does not stop it first, the solution is the data to
    relative precision."""
    rng = np.random.default_rng(3)
    data = scale * rng.uniform(-1.0, 1.0, (6, 2))
    data[0] = [-0.0, 0.0]
    start = scale * rng.uniform(-1.0, 1.0, (6, 2))
    problem = sparselm.Problem()
    problem.add_parameter_group("x", start)
    problem.add_residual_group("prior", library.PRIOR_2D, [("x", np.arange(6))], data)
    summary = sparselm.solve(problem, max_iterations=50, **options)
    assert summary.ok, summary.message
    x = problem.parameter_groups["x"].values
    assert summary.final_cost == pytest.approx(0.5 * float(np.sum((x - data) ** 2)), rel=1e-12, abs=1e-300)
    assert summary.final_cost <= summary.initial_cost
    if scale >= 1e-120:
        np.testing.assert_allclose(x, data, rtol=1e-6, atol=1e-6 * scale)


# -- the scipy front door ----------------------------------------------------------------------------------------------

def test_least_squares_refuses_x0_beyond_the_range():
    with pytest.raises(ValueError, match=r"`x0`: value 1e\+200 is beyond"):
        sparselm.least_squares(lambda x: x - 1.0, np.array([1e200, 0.0]))


def test_least_squares_xtol_test_uses_an_overflow_safe_norm():
    """|x| ~ 1.4e150 would square to ~2e300 (finite), but the sum of several such squares overflows: the old
    xtol test then compared the step with inf and reported success at the first step."""
    x0 = np.full(200, 1e150)

    def fun(x):
        return np.concatenate([(x - 1e150) / 1e150, [x[0] / 1e150 - 2.0]])

    result = sparselm.least_squares(fun, x0, xtol=1e-8, ftol=1e-12, gtol=1e-12)
    assert result.status != 3 or np.linalg.norm(fun(result.x)) < np.linalg.norm(fun(x0))
    assert math.isfinite(result.cost) and result.cost == pytest.approx(0.5 * float(np.sum(fun(result.x) ** 2)))
