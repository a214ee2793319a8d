"""Soak: 500 solves in one process of varied small problems with faults injected: residuals that turn
NaN mid-solve, a covariance that depends on the parameters and stops being positive definite at some
trial points, Ctrl-C (KeyboardInterrupt) raised from a callback or from inside a residual evaluation at
a random iteration, and rank-deficient Gauss-Newton systems. After every solve the problem holds the best
accepted point and ``summary.final_cost`` is its exact cost (recomputed independently); the process's
resident memory after the warm-up does not grow beyond a generous bound.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import sparselm
from sparselm import ResidualType

N_SOLVES = 500
WARMUP = 60
RSS_GROWTH_LIMIT = 48 * 2 ** 20  # bytes: far above one problem's arrays, far below a leak per solve


def resident_bytes() -> int:
    """This process's resident set size (VmRSS), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Faults:
    """Injected faults, shared by the residual functions of one solve: after ``interrupt_after``
    evaluations the next one raises KeyboardInterrupt; residual instances whose x exceeds
    ``nan_above`` are NaN."""

    def __init__(self, interrupt_after=None, nan_above=math.inf):
        self.calls = 0
        self.interrupt_after = interrupt_after
        self.nan_above = nan_above
        self.non_finite = 0  # evaluations that produced a NaN residual

    def count_non_finite(self, residuals):
        self.non_finite += int(not np.isfinite(residuals).all())

    def evaluated(self):
        self.calls += 1
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt


def curve_type(faults: Faults) -> ResidualType:
    """r_i = x0 exp(-x1 t_i) + x2 + x3 - y_i (data t, y), NaN where x1 > faults.nan_above; Python
    kernels. x2 and x3 enter only as their sum: J^T J is singular (Gauss-Newton steps fail)."""

    def evaluate(params, index, data, residuals, jacobians=None):
        faults.evaluated()
        x = params[0][index[:, 0]]
        e = np.exp(-x[:, 1] * data[:, 0])
        residuals[:, 0] = x[:, 0] * e + x[:, 2] + x[:, 3] - data[:, 1]
        residuals[x[:, 1] > faults.nan_above, 0] = math.nan
        faults.count_non_finite(residuals)
        if jacobians is not None:
            jac = jacobians[0]
            jac[:, 0, 0] = e
            jac[:, 0, 1] = -x[:, 0] * data[:, 0] * e
            jac[:, 0, 2] = 1.0
            jac[:, 0, 3] = 1.0
            jac[x[:, 1] > faults.nan_above, 0, :] = math.nan

    return ResidualType("soak_curve", 1, (4,), 2, evaluate, evaluate)


def curve_cost(x, data) -> float:
    r = x[0] * np.exp(-x[1] * data[:, 0]) + x[2] + x[3] - data[:, 1]
    return 0.5 * float(r @ r)


def correlated_type(faults: Faults) -> ResidualType:
    """A 2-D prior whitened by a covariance that depends on the point: Sigma(x) = [[1, c], [c, 1]] with
    c = x0 * x1 / 4, positive definite only while |c| < 1; outside, the whitening (Cholesky of
    Sigma) is NaN, so such trial points are rejected. Data (2,): the prior mean."""

    def evaluate(params, index, data, residuals, jacobians=None):
        faults.evaluated()
        x = params[0][index[:, 0]]
        d = x - data
        c = x[:, 0] * x[:, 1] / 4.0
        with np.errstate(invalid="ignore"):
            s = np.sqrt(1.0 - c * c)  # Sigma = L L^T, L = [[1, 0], [c, s]]; A = L^-1
        residuals[:, 0] = d[:, 0]
        residuals[:, 1] = (d[:, 1] - c * d[:, 0]) / s
        faults.count_non_finite(residuals)
        if jacobians is not None:
            h = 1e-7
            for k in range(2):
                xp = x.copy()
                xp[:, k] += h
                dp, cp = xp - data, xp[:, 0] * xp[:, 1] / 4.0
                with np.errstate(invalid="ignore"):
                    sp = np.sqrt(1.0 - cp * cp)
                jacobians[0][:, 0, k] = (dp[:, 0] - d[:, 0]) / h
                jacobians[0][:, 1, k] = ((dp[:, 1] - cp * dp[:, 0]) / sp - residuals[:, 1]) / h

    return ResidualType("soak_correlated", 2, (2,), 2, evaluate, evaluate)


def correlated_cost(x, data) -> float:
    d = x - data
    c = x[:, 0] * x[:, 1] / 4.0
    r2 = (d[:, 1] - c * d[:, 0]) / np.sqrt(1.0 - c * c)
    return 0.5 * float(np.sum(d[:, 0] ** 2 + r2 ** 2))


def make_case(rng: np.random.Generator, k: int):
    """(problem, options, independent cost function of the problem, faults) for solve number k."""
    kind = k % 4
    interrupt = int(rng.integers(0, 12)) if rng.random() < 0.3 else None
    if kind in (0, 1):
        n = int(rng.integers(5, 40))
        t = np.linspace(0.0, 3.0, n)
        data = np.column_stack([t, 2.0 * np.exp(-1.5 * t) + 0.3 + 0.05 * rng.normal(size=n)])
        faults = Faults(interrupt, nan_above=float(rng.uniform(1.6, 3.0)) if kind == 1 else math.inf)
        problem = sparselm.Problem()
        problem.add_parameter_group("x", [[rng.uniform(0.5, 4.0), rng.uniform(0.1, 1.4), 0.0, 0.0]])
        problem.add_residual_group("r", curve_type(faults), [("x", np.zeros(n, dtype=np.int64))], data)
        cost = lambda p: curve_cost(p.parameter_groups["x"].values[0], data)  # noqa: E731
    else:
        n = int(rng.integers(2, 12))
        data = rng.normal(scale=1.5, size=(n, 2))
        faults = Faults(interrupt)
        problem = sparselm.Problem()
        problem.add_parameter_group("x", rng.normal(scale=0.5, size=(n, 2)))
        problem.add_residual_group("r", correlated_type(faults), [("x", np.arange(n))], data)
        cost = lambda p: correlated_cost(p.parameter_groups["x"].values, data)  # noqa: E731
    options = dict(max_iterations=int(rng.integers(1, 25)), threads=1,
                   damping=str(rng.choice(["marquardt", "levenberg", "gauss_newton"], p=[0.6, 0.3, 0.1])))
    stop_at = int(rng.integers(1, 10))
    if rng.random() < 0.2:
        def interrupt_from_callback(record, stop_at=stop_at):
            if record.iteration >= stop_at:
                raise KeyboardInterrupt
        options["callbacks"] = [interrupt_from_callback]
    return problem, options, cost, faults


def check_result(problem, summary, cost) -> None:
    accepted = [record.cost for record in summary.iterations if record.step_is_successful]
    assert summary.final_cost == min(accepted)
    assert math.isfinite(summary.final_cost)
    assert summary.final_cost == pytest.approx(cost(problem), rel=1e-10, abs=1e-14)


@pytest.mark.slow
def test_500_solves_with_injected_faults_keep_memory_flat_and_return_the_best_point():
    rng = np.random.default_rng(19)
    endings, baseline, non_finite = {}, None, 0
    for k in range(N_SOLVES):
        if k == WARMUP:
            baseline = resident_bytes()
        problem, options, cost, faults = make_case(rng, k)
        start = {name: g.values.copy() for name, g in problem.parameter_groups.items()}
        try:
            summary = sparselm.solve(problem, **options)
        except KeyboardInterrupt:
            non_finite += faults.non_finite
            # Ctrl-C before the first iteration (during the first evaluation) propagates, problem untouched.
            assert faults.calls == faults.interrupt_after + 1
            for name, g in problem.parameter_groups.items():
                assert g.values.tobytes() == start[name].tobytes()
            endings["KeyboardInterrupt at setup"] = endings.get("KeyboardInterrupt at setup", 0) + 1
            continue
        non_finite += faults.non_finite
        check_result(problem, summary, cost)
        endings[summary.termination] = endings.get(summary.termination, 0) + 1
    growth = resident_bytes() - baseline
    print(f"\nsoak: {N_SOLVES} solves, endings {endings}, RSS growth after warm-up {growth / 2 ** 20:.1f} MiB")
    assert growth < RSS_GROWTH_LIMIT
    print(f"soak: {non_finite} evaluations hit an injected NaN / non-positive-definite covariance")
    for ending in ("interrupted", "convergence", "failure", "KeyboardInterrupt at setup"):
        assert endings.get(ending, 0) > 0, endings
    assert non_finite > 0
