"""Reliability through the Python API: bad input, numerical faults inside LM, interruption and limits,
determinism. (BAL files, the CLI and bundle adjustment: tests/bal/test_faults_bal.py; the memory check:
tests/lm/test_memory.py.)

What is promised (docs/guarantees.md) and checked here:

* input: numbers of any real dtype and layout are converted (ints, float32, Fortran order, strided
  views), everything else (bool, complex, object, text) is a ValueError naming the group and field;
* a trial point whose residuals are NaN/Inf is an *unsuccessful* step (more damping, the solve goes
  on); a failed factorization (not positive definite, singular) or a non-finite step is an *invalid*
  step, and more than ``max_consecutive_invalid_steps`` of them in a row end the solve with
  termination 'failure' and the best point so far;
* Ctrl-C (KeyboardInterrupt, SIGINT), the time limit and a callback returning True end the solve
  with 'interrupted', 'no_convergence' and 'user_success'; in every case the Problem holds the best
  accepted iterate and ``summary.final_cost`` is its cost;
* the same input and options give bitwise the same result, in one process and across processes.
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from numba import njit, prange

import sparselm
from sparselm import ResidualType, models
from sparselm.core.evaluator import NonFiniteError

# -- helpers ------------------------------------------------------------------------------------------


def cost_of(problem: sparselm.Problem) -> float:
    """The cost at the problem's current values, by the solver's own evaluation (changes nothing)."""
    return sparselm.solve(problem, max_iterations=0, gradient_tolerance=0.0).initial_cost


def values_of(problem: sparselm.Problem) -> dict:
    return {k: g.values.copy() for k, g in problem.parameter_groups.items()}


def assert_bitwise(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes(), k


def assert_best_point_held(problem: sparselm.Problem, summary) -> None:
    """The Problem holds the best accepted iterate: its cost is summary.final_cost, the lowest cost seen."""
    accepted = [it.cost for it in summary.iterations if it.step_is_successful]
    assert summary.final_cost == min(accepted)
    assert cost_of(problem) == pytest.approx(summary.final_cost, rel=1e-12, abs=1e-300)


class _no_warnings:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


# -- residual types built to misbehave -------------------------------------------------------------------
# exp_nan: r_i = exp(x) - y_i, NaN when x > t_i (data row (y_i, t_i)); one block of size 1.

@njit(parallel=True, cache=True)
def _exp_nan_residuals(params, index, data, residuals):
    x = params[0]
    for i in prange(residuals.shape[0]):
        v = x[index[i, 0], 0]
        residuals[i, 0] = math.nan if v > data[i, 1] else math.exp(v) - data[i, 0]


@njit(parallel=True, cache=True)
def _exp_nan_jacobians(params, index, data, residuals, jacobians):
    x = params[0]
    jac = jacobians[0]
    for i in prange(residuals.shape[0]):
        v = x[index[i, 0], 0]
        if v > data[i, 1]:
            residuals[i, 0] = math.nan
            jac[i, 0, 0] = math.nan
        else:
            residuals[i, 0] = math.exp(v) - data[i, 0]
            jac[i, 0, 0] = math.exp(v)


EXP_NAN = ResidualType("exp_nan", 1, (1,), 2, _exp_nan_residuals, _exp_nan_jacobians)
#: the same without a Jacobian kernel: central differences probe x +- h, which can cross the threshold
EXP_NAN_NUMERIC = ResidualType("exp_nan_numeric", 1, (1,), 2, _exp_nan_residuals)


# saturating: x = (a, b), r = (s(a) + b - 2, s(a) - 2 b) with s(a) = min(a, 1/2): once a > 1/2 the
# Jacobian column of a is zero and J^T J is singular (the gradient in b is not zero).

@njit(cache=True)
def _saturating(params, index, data, residuals, jacobians, with_jacobian):
    x = params[0]
    for i in range(residuals.shape[0]):
        a, b = x[index[i, 0], 0], x[index[i, 0], 1]
        s = min(a, 0.5)
        ds = 1.0 if a < 0.5 else 0.0
        residuals[i, 0] = s + b - 2.0
        residuals[i, 1] = s - 2.0 * b
        if with_jacobian:
            jac = jacobians[0]
            jac[i, 0, 0] = ds
            jac[i, 0, 1] = 1.0
            jac[i, 1, 0] = ds
            jac[i, 1, 1] = -2.0


@njit(cache=True)
def _saturating_residuals(params, index, data, residuals):
    _saturating(params, index, data, residuals, (np.zeros((0, 0, 0)),), False)


@njit(cache=True)
def _saturating_jacobians(params, index, data, residuals, jacobians):
    _saturating(params, index, data, residuals, jacobians, True)


SATURATING = ResidualType("saturating", 2, (2,), 0, _saturating_residuals, _saturating_jacobians)


def exp_problem(x0, y, thresholds, residual_type=EXP_NAN) -> sparselm.Problem:
    p = sparselm.Problem()
    p.add_parameter_group("x", [[x0]])
    p.add_residual_group("r", residual_type, [("x", np.zeros(len(y), dtype=np.int64))],
                         np.column_stack([y, thresholds]))
    return p


def gauge_problem() -> sparselm.Problem:
    """Three 2-D points tied by two relative offsets only: J^T J is exactly singular (a 2-D translation)."""
    p = sparselm.Problem()
    p.add_parameter_group("x", np.array([[0.0, 0.0], [1.0, 1.0], [3.0, -1.0]]))
    p.add_residual_group("offsets", models.OFFSET_2D, [("x", [0, 1]), ("x", [1, 2])],
                         np.array([[2.0, 2.0], [1.0, 1.0]]))
    return p


# == 1. bad problems through the Python API =================================================================

def _twin_problems(rng, convert):
    """A float64 C-contiguous problem and its twin whose every array went through ``convert``."""
    values = rng.integers(-5, 5, size=(6, 2)).astype(np.float64)
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 0], [0, 3]])
    offsets = rng.integers(-3, 3, size=(len(edges), 2)).astype(np.float64)
    prior = np.zeros((1, 2))
    problems = []
    for conv in (lambda a, kind: a, convert):
        p = sparselm.Problem()
        p.add_parameter_group("x", conv(values, "values"))
        p.add_residual_group("o", models.OFFSET_2D, [("x", conv(edges[:, 0], "index")),
                                                     ("x", conv(edges[:, 1], "index"))], conv(offsets, "data"),
                             covariance=conv(np.array([[2.0, 1.0], [1.0, 3.0]]), "covariance"))
        p.add_residual_group("p", models.PRIOR_2D, [("x", [0])], prior)
        problems.append(p)
    return problems


def _fortran(a, kind):
    return np.asfortranarray(a)


def _strided(a, kind):
    big = np.zeros((2 * a.shape[0],) + a.shape[1:], dtype=a.dtype)
    big[::2] = a
    view = big[::2]
    assert not view.flags.c_contiguous or a.ndim == 1 and a.shape[0] == 1
    return view


def _reversed(a, kind):
    view = np.ascontiguousarray(a[::-1])[::-1]  # negative strides
    assert view.strides[0] < 0 or a.shape[0] == 1
    return view


@pytest.mark.parametrize("convert", [
    pytest.param(lambda a, kind: a.astype(np.int64) if kind != "covariance" else a, id="int64"),
    pytest.param(lambda a, kind: a.astype(np.int32), id="int32"),
    pytest.param(lambda a, kind: a.astype(np.int16) if kind in ("values", "data") else a.astype(np.uint16)
                 if kind == "index" else a, id="int16/uint16"),
    pytest.param(lambda a, kind: a.astype(np.float32), id="float32"),
    pytest.param(lambda a, kind: a.tolist(), id="lists"),
    pytest.param(_fortran, id="fortran-order"),
    pytest.param(_strided, id="strided-view"),
    pytest.param(_reversed, id="reversed-view"),
])
def test_real_dtypes_and_layouts_are_converted(rng, convert):
    """Integers, float32, lists, Fortran-order and strided arrays are converted to C-contiguous
    float64 / int64; the solve is bitwise that of the plain float64 twin (values are exact here)."""
    plain, converted = _twin_problems(rng, convert)
    g = converted.parameter_groups["x"]
    assert g.values.dtype == np.float64 and g.values.flags.c_contiguous
    for rg in converted.residual_groups:
        assert rg.index.dtype == np.int64 and rg.index.flags.c_contiguous
        assert rg.data.dtype == np.float64 and rg.data.flags.c_contiguous
    for a, b in zip(plain.residual_groups, converted.residual_groups):
        np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(a.sqrt_information, b.sqrt_information)
    s1, s2 = sparselm.solve(plain), sparselm.solve(converted)
    assert s1.ok and s2.ok and s1.final_cost == s2.final_cost
    assert_bitwise(values_of(plain), values_of(converted))


BAD_VALUES = {
    "bool": np.array([[True, False]]),
    "complex": np.array([[1.0 + 0j, 2.0]]),
    "object": np.array([[1.0, 2.0]], dtype=object),
    "None": [[1.0, None]],
    "text": [["1", "2"]],
    "bytes": np.array([[b"1", b"2"]]),
    "datetime": np.array([["2024-01-01", "2024-01-02"]], dtype="datetime64[D]"),
}


@pytest.mark.parametrize("kind", sorted(BAD_VALUES))
@pytest.mark.parametrize("field", ["values", "data", "covariance", "information"])
def test_non_real_arrays_are_rejected_naming_group_and_field(kind, field):
    bad = np.asarray(BAD_VALUES[kind]) if kind != "None" else BAD_VALUES[kind]
    p = sparselm.Problem()
    if field == "values":
        with pytest.raises(ValueError, match=r"parameter group 'g': values: expected real numbers, got dtype"):
            p.add_parameter_group("g", bad)
        assert p.parameter_groups == {}
        return
    p.add_parameter_group("x", np.zeros((1, 2)))
    data, kwargs = np.zeros((1, 2)), {}
    if field == "data":
        data = bad
    else:
        kwargs[field] = bad
    with pytest.raises(ValueError, match=rf"residual group 'r': {field}: expected real numbers, got dtype"):
        p.add_residual_group("r", models.PRIOR_2D, [("x", [0])], data, **kwargs)
    assert p.residual_groups == []


@pytest.mark.parametrize("index", [np.array([True]), np.array([0j]), np.array([0], dtype=object), ["0"]],
                         ids=["bool", "complex", "object", "text"])
def test_non_integer_indices_are_rejected(index):
    p = sparselm.Problem()
    p.add_parameter_group("x", np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"residual group 'r': slot 0 \(x\) index: expected integers, got dtype"):
        p.add_residual_group("r", models.PRIOR_2D, [("x", index)], np.zeros((1, 2)))
    if not (isinstance(index, np.ndarray) and index.dtype == bool):  # a boolean constant= is a mask
        with pytest.raises(ValueError, match=r"parameter group 'y': constant: expected integers, got dtype"):
            p.add_parameter_group("y", np.zeros((2, 2)), constant=index)


@pytest.mark.parametrize("index", [np.array([0, 2**63 + 5], dtype=np.uint64), np.array([0.0, 1e30])],
                         ids=["uint64-above-int64", "float-above-int64"])
def test_huge_indices_are_reported_with_their_own_value(index):
    p = sparselm.Problem()
    p.add_parameter_group("x", np.zeros((3, 2)))
    with _no_warnings():
        with pytest.raises(ValueError, match=r"slot 0 \(x\) index: entry 1 = (9223372036854775813|1e\+30) is out "
                                             r"of range \[0, 3\)"):
            p.add_residual_group("r", models.PRIOR_2D, [("x", index)], np.zeros((2, 2)))


@pytest.mark.parametrize("kwargs", [
    dict(sigma=1.0 + 1.0j), dict(sigma=np.array([1.0 + 1.0j, 1.0])), dict(sigma="abc"), dict(sigma=True),
    dict(loss="huber", loss_scale=1.0j), dict(loss="huber", loss_scale="big"),
], ids=["sigma-complex", "sigma-complex-vector", "sigma-text", "sigma-bool", "loss_scale-complex",
        "loss_scale-text"])
def test_scalar_weights_of_the_wrong_type_are_rejected_naming_the_group(kwargs):
    p = sparselm.Problem()
    p.add_parameter_group("x", np.zeros((2, 2)))
    with _no_warnings():
        with pytest.raises(ValueError, match=r"residual group 'r': (sigma|loss)"):
            p.add_residual_group("r", models.PRIOR_2D, [("x", [0, 1])], np.zeros((2, 2)), **kwargs)


def test_sigma_not_spd_names_the_instance():
    p = sparselm.Problem()
    p.add_parameter_group("x", np.zeros((3, 2)))
    cov = np.broadcast_to(np.eye(2), (3, 2, 2)).copy()
    cov[2] = [[1.0, 2.0], [2.0, 1.0]]  # symmetric, eigenvalues 3 and -1
    with pytest.raises(ValueError, match=r"residual group 'r': covariance\[2\] is not positive definite "
                                         r"\(smallest eigenvalue -1\)"):
        p.add_residual_group("r", models.PRIOR_2D, [("x", [0, 1, 2])], np.zeros((3, 2)), covariance=cov)
    cov[2] = [[1.0, 0.0], [0.0, -4.0]]
    with pytest.raises(ValueError, match=r"information\[2\] is not positive definite"):
        p.add_residual_group("r", models.PRIOR_2D, [("x", [0, 1, 2])], np.zeros((3, 2)), information=cov)
    cov[2] = [[1.0, 0.0], [0.0, np.inf]]
    with pytest.raises(ValueError, match=r"covariance: non-finite value inf at index \(2, 1, 1\)"):
        p.add_residual_group("r", models.PRIOR_2D, [("x", [0, 1, 2])], np.zeros((3, 2)), covariance=cov)
    assert p.residual_groups == []


def test_non_finite_residual_at_the_start_names_group_and_instance():
    p = exp_problem(1.0, [2.0, 3.0, 4.0], [5.0, 0.5, 5.0])  # instance 1 is NaN at x = 1
    before = values_of(p)
    with pytest.raises(NonFiniteError, match=r"residual group 'r': instance 1 \(x\[0\]\) has a non-finite"):
        sparselm.solve(p)
    assert_bitwise(values_of(p), before)


# == 2. NaN/Inf residuals at a trial point ==================================================================

@pytest.mark.parametrize("linear_solver", ["dense", "sparse_normal_cholesky"])
@pytest.mark.parametrize("residual_type", [EXP_NAN, EXP_NAN_NUMERIC], ids=["analytic", "numeric"])
def test_nan_at_a_trial_point_is_an_unsuccessful_step(linear_solver, residual_type):
    """The first steps from x = -3 overshoot into x > 5, where instance 1 is NaN: each such trial is
    rejected (unsuccessful, not invalid), the radius shrinks, and the solve ends normally at the
    minimum x = log(mean(y)) inside the finite region."""
    y = np.array([1.5, 2.0, 2.5, 3.0])
    p = exp_problem(-3.0, y, [1e300, 5.0, 1e300, 1e300], residual_type)
    s = sparselm.solve(p, linear_solver=linear_solver, max_iterations=100, function_tolerance=1e-14)
    assert s.termination == "convergence", s.message
    nan_trials = [it for it in s.iterations[1:] if it.tr_ratio == -math.inf]
    assert len(nan_trials) >= 2 and not any(it.step_is_successful for it in nan_trials)
    assert all(it.step_is_valid for it in s.iterations)  # a NaN trial is not an invalid step
    assert s.invalid_steps == 0 and s.unsuccessful_steps >= len(nan_trials)
    radii = [it.tr_radius for it in s.iterations]
    for k, it in enumerate(s.iterations[1:], 1):
        if it.tr_ratio == -math.inf:
            assert radii[k] < radii[k - 1]  # more damping after each NaN trial
    costs = [it.cost for it in s.iterations]
    assert all(b <= a for a, b in zip(costs, costs[1:]))
    assert math.isfinite(s.final_cost)
    x = p.parameter_groups["x"].values[0, 0]
    assert x == pytest.approx(math.log(y.mean()), rel=1e-7)
    assert s.final_cost == pytest.approx(0.5 * np.sum((y - y.mean()) ** 2), rel=1e-10)
    assert_best_point_held(p, s)


def test_every_trial_nan_on_the_domain_boundary_ends_cleanly():
    """Starting on the boundary of the finite region with the minimum beyond it: every trial is NaN.
    The solve must end (no exception, no endless loop) at the start point with its finite cost."""
    p = exp_problem(0.5, [3.0], [0.5])
    before = values_of(p)
    s = sparselm.solve(p, max_iterations=500)
    assert s.termination in ("convergence", "no_convergence") and s.n_iterations < 500
    assert s.successful_steps == 0 and s.unsuccessful_steps == s.n_iterations > 0
    assert s.final_cost == s.initial_cost == pytest.approx(0.5 * (math.exp(0.5) - 3.0) ** 2)
    assert_bitwise(values_of(p), before)


def test_non_finite_jacobian_at_an_accepted_point_does_not_abort_the_solve():
    """The minimum (x = log 2.25 = 0.81) lies beyond the NaN threshold 0.5 of instance 1: the iterates
    creep towards 0.5 and the numeric Jacobian at one of them probes x + h > 0.5."""
    y = np.array([1.5, 2.0, 2.5, 3.0])
    p = exp_problem(-3.0, y, [1e300, 0.5, 1e300, 1e300], EXP_NAN_NUMERIC)
    s = sparselm.solve(p, max_iterations=200)
    assert math.isfinite(s.final_cost) and s.final_cost < s.initial_cost
    assert p.parameter_groups["x"].values[0, 0] <= 0.5
    assert_best_point_held(p, s)


# == 3. numerical faults inside LM: invalid steps up to the limit ===============================================

@pytest.mark.parametrize("linear_solver", ["dense", "sparse_normal_cholesky"])
@pytest.mark.parametrize("limit", [0, 2, 5])
def test_singular_factorization_is_an_invalid_step_up_to_the_limit(linear_solver, limit):
    """Gauss-Newton on an exactly rank-deficient problem (a free translation): every factorization
    fails (LAPACK / CHOLMOD: not positive definite); after ``limit`` + 1 invalid steps in a row the
    solve ends with 'failure' and the starting point, which is the best point."""
    p = gauge_problem()
    before = values_of(p)
    s = sparselm.solve(p, damping="gauss_newton", linear_solver=linear_solver, max_consecutive_invalid_steps=limit)
    assert s.termination == "failure" and not s.ok
    assert s.message == (f"{limit + 1} consecutive invalid steps (last: "
                         + ("dense Cholesky: matrix" if linear_solver == "dense" else "CHOLMOD: normal matrix")
                         + " not positive definite).")
    assert s.invalid_steps == s.unsuccessful_steps == s.n_iterations == limit + 1 and s.successful_steps == 0
    assert not any(it.step_is_valid for it in s.iterations[1:])
    radii = [it.tr_radius for it in s.iterations]
    assert all(b < a for a, b in zip(radii, radii[1:]))  # damping grows (for LM; GN ignores it)
    assert s.final_cost == s.initial_cost == 6.0
    assert_bitwise(values_of(p), before)
    # with damping the same rank-deficient problem is solved: the damping fixes the free translation
    s = sparselm.solve(p, linear_solver=linear_solver)
    assert s.termination == "convergence" and s.final_cost < 1e-12 and s.invalid_steps == 0


@pytest.mark.parametrize("linear_solver", ["dense", "sparse_normal_cholesky"])
def test_failure_returns_the_best_point_reached_before_it(linear_solver):
    """Gauss-Newton: the first step is accepted (cost 2 -> 25/36) and lands where the Jacobian loses
    rank; every later factorization fails and the solve ends in 'failure' at that accepted point."""
    p = sparselm.Problem()
    p.add_parameter_group("x", [[0.0, 0.0]])
    p.add_residual_group("r", SATURATING, [("x", [0])])
    s = sparselm.solve(p, damping="gauss_newton", linear_solver=linear_solver, max_consecutive_invalid_steps=3)
    assert s.termination == "failure" and "4 consecutive invalid steps" in s.message
    assert s.successful_steps == 1 and s.invalid_steps == 4
    np.testing.assert_allclose(p.parameter_groups["x"].values, [[4.0 / 3.0, 2.0 / 3.0]], rtol=1e-15)
    assert s.initial_cost == 2.0 and s.final_cost == pytest.approx(25.0 / 36.0, rel=1e-15)
    assert_best_point_held(p, s)


@pytest.mark.parametrize("linear_solver", ["dense", "sparse_normal_cholesky"])
def test_non_finite_step_is_an_invalid_step(linear_solver):
    """r = 1e-160 x - 1e154: J^T J = 1e-320 is subnormal but positive, so the Cholesky factorization
    succeeds, and the Gauss-Newton step 1e-6 / 1e-320 overflows to inf: an invalid step, as many times
    as allowed, then 'failure' at the start point."""
    p = sparselm.Problem()
    p.add_parameter_group("x", [[0.0]])
    p.add_residual_group("r", models.linear(1, 1), [("x", [0])], [[1e-160, 1e154]])
    s = sparselm.solve(p, damping="gauss_newton", linear_solver=linear_solver, gradient_tolerance=0.0,
                       max_consecutive_invalid_steps=2)
    assert s.termination == "failure"
    assert s.message == "3 consecutive invalid steps (last: the linear solve produced a non-finite step)."
    assert s.invalid_steps == 3 and s.final_cost == s.initial_cost == pytest.approx(5e307)
    assert p.parameter_groups["x"].values[0, 0] == 0.0


# == 4. interruption and limits: the best accepted iterate is kept =================================================

@pytest.fixture
def meyer():
    """Meyer's function: badly scaled, 100+ iterations with rejected steps on the way."""
    def make():
        p = sparselm.Problem()
        p.add_parameter_group("x", np.asarray(models.CLASSIC_STARTS["meyer"], dtype=float)[None, :])
        p.add_residual_group("r", models.MEYER, [("x", np.zeros(len(models.MEYER_DATA), dtype=np.int64))],
                             models.MEYER_DATA)
        return p
    return make


def test_keyboard_interrupt_from_a_callback_keeps_the_best_point(meyer):
    def interrupt(record):
        if record.iteration == 3:
            raise KeyboardInterrupt
        return False

    p = meyer()
    s = sparselm.solve(p, callbacks=[interrupt])
    assert s.termination == "interrupted" and not s.ok and "Ctrl-C" in s.message
    assert s.n_iterations == 3 and s.final_cost < s.initial_cost
    assert_best_point_held(p, s)


def test_sigint_during_a_solve_keeps_the_best_point(meyer):
    """A real SIGINT (as Ctrl-C sends), raised by Python's handler wherever the solve is when it lands."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def ctrl_c(record):
        if record.iteration == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return False

    p = meyer()
    s = sparselm.solve(p, callbacks=[ctrl_c])
    assert s.termination == "interrupted"
    assert 5 <= s.n_iterations <= 6
    assert_best_point_held(p, s)


class _InterruptOnJacobian:
    """Rosenbrock in plain Python kernels; the n-th Jacobian evaluation raises KeyboardInterrupt."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def residuals(self, params, index, data, residuals):
        x = params[0][index[:, 0]]
        residuals[:, 0] = 10.0 * (x[:, 1] - x[:, 0] ** 2)
        residuals[:, 1] = 1.0 - x[:, 0]

    def jacobians(self, params, index, data, residuals, jacobians):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        self.residuals(params, index, data, residuals)
        x = params[0][index[:, 0]]
        jacobians[0][:, 0, 0] = -20.0 * x[:, 0]
        jacobians[0][:, 0, 1] = 10.0
        jacobians[0][:, 1, 0] = -1.0
        jacobians[0][:, 1, 1] = 0.0


def test_interrupt_while_linearising_an_accepted_point(make_single_block):
    """Ctrl-C inside the linearisation of a just-accepted point: the point is kept, and the summary's
    final cost is its cost (regression: it used to be the previous point's)."""
    k = _InterruptOnJacobian(3)  # call 1: the start, call 2: after step 1, call 3: after step 2
    rt = ResidualType("rosenbrock_py", 2, (2,), 0, k.residuals, k.jacobians)
    p = make_single_block(rt, [-1.2, 1.0])
    s = sparselm.solve(p)
    assert s.termination == "interrupted"
    x = p.parameter_groups["x"].values[0]
    assert s.final_cost == pytest.approx(0.5 * ((10 * (x[1] - x[0] ** 2)) ** 2 + (1 - x[0]) ** 2), rel=1e-12)


def test_time_limit_mid_solve_keeps_the_best_point(meyer):
    def slow(record):
        time.sleep(0.05)
        return False

    sparselm.solve(meyer(), max_iterations=1)  # load the kernels first: the limit counts from the call
    p = meyer()
    s = sparselm.solve(p, callbacks=[slow], max_time_s=0.3)
    assert s.termination == "no_convergence" and s.ok
    assert s.message == "Maximum solver time reached (0.3 s)."
    assert 2 <= s.n_iterations <= 7 and s.total_time_s >= 0.3
    assert_best_point_held(p, s)


@pytest.mark.parametrize("at", [1, 4])
def test_callback_returning_true_stops_with_user_success(meyer, at):
    seen = []

    def enough(record):
        seen.append(record.iteration)
        return record.iteration == at

    p = meyer()
    s = sparselm.solve(p, callbacks=[enough])
    assert s.termination == "user_success" and s.ok and s.n_iterations == at
    assert seen == list(range(1, at + 1))  # called once per iteration, from iteration 1
    assert_best_point_held(p, s)


def test_an_exception_in_a_callback_propagates_and_keeps_the_best_point(meyer):
    def broken(record):
        if record.iteration == 3:
            raise RuntimeError("callback bug")
        return False

    p, q = meyer(), meyer()
    with pytest.raises(RuntimeError, match="callback bug"):
        sparselm.solve(p, callbacks=[broken])
    s = sparselm.solve(q, max_iterations=3)  # the same three iterations, uninterrupted
    assert_bitwise(values_of(p), values_of(q))
    assert cost_of(p) == s.final_cost


# == 5. determinism ========================================================================================

@pytest.mark.parametrize("linear_solver", ["sparse_normal_cholesky", "dense"])
def test_repeated_solves_are_bitwise_identical_in_process(make_graph, linear_solver):
    size = dict(n_points=150, n_beacons=8, n_loops=150) if linear_solver == "dense" else {}
    results = []
    for _ in range(2):
        p = make_graph(**size).problem
        s = sparselm.solve(p, linear_solver=linear_solver, threads=2, max_iterations=20, function_tolerance=1e-12)
        results.append((values_of(p), [it.cost for it in s.iterations], s.final_cost))
    assert_bitwise(results[0][0], results[1][0])
    assert results[0][1] == results[1][1] and results[0][2] == results[1][2]


_SUBPROCESS_SOLVE = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    import sparselm
    from conftest import graph_problem
    p = graph_problem().problem
    s = sparselm.solve(p, threads=2, max_iterations=20, function_tolerance=1e-12)
    assert s.options_used["threads"] == 2
    np.savez({out!r}, costs=np.array([it.cost for it in s.iterations]),
             **{{k: g.values for k, g in p.parameter_groups.items()}})
""")


def test_repeated_solves_are_bitwise_identical_across_processes(tmp_path):
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/, where conftest.py is
    outs = []
    for k in range(2):
        out = str(tmp_path / f"run{k}.npz")
        proc = subprocess.run([sys.executable, "-c", _SUBPROCESS_SOLVE.format(tests=tests, out=out)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outs.append(np.load(out))
    assert sorted(outs[0].files) == sorted(outs[1].files) == ["beacons", "costs", "points"]
    for name in outs[0].files:
        assert outs[0][name].tobytes() == outs[1][name].tobytes(), name
