"""Fuzz sparselm.least_squares' arguments (x0 shapes and extreme values, method, tolerances, loss,
f_scale, x_scale, damping, jac, max_nfev, sigma, linear_solver, bounds): each call either returns a
result whose ``cost`` equals 1/2 sum rho(f(x)^2) recomputed at the returned x, or raises a ValueError
naming the offending argument (see properties.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from .budget import budget
from .cases import run_least_squares
from .properties import solved_or_refused, solved_warm_up

T = np.linspace(0.0, 4.0, 12)
Y = 2.5 * np.exp(-1.3 * T) + 0.5 + 0.01 * np.cos(7.0 * T)
ODD = [None, "x", -1.0, 0.0, 1e-300, 1e300, math.inf, math.nan, [1.0, 2.0], True]
ARGUMENTS = {
    "method": st.sampled_from(["trf", "lm", "dogbox", "bogus", None]),
    "ftol": st.sampled_from([1e-8, 1e-12, 0.0, 1.0] + ODD),
    "xtol": st.sampled_from([1e-8, 1e-15, 0.0] + ODD),
    "gtol": st.sampled_from([1e-8, 0.0, 1e3] + ODD),
    "loss": st.sampled_from(["linear", "huber", "soft_l1", "cauchy", "arctan", "tukey", None]),
    "f_scale": st.sampled_from([1.0, 0.1, 10.0, 1e-300, 1e300] + ODD),
    "x_scale": st.sampled_from(["jac", 1.0, [1.0, 2.0, 0.5], [1.0, 2.0], 0.0, -1.0, math.nan, "x", None]),
    "damping": st.sampled_from([None, "marquardt", "levenberg", "gauss_newton", "bogus"]),
    "jac": st.sampled_from(["2-point", "3-point", "cs", "5-point", None]),
    "max_nfev": st.sampled_from([None, 1, 5, 200, 0, -3, 2.5, "x"]),
    "sigma": st.sampled_from([None, 0.1, 2.0, 0.0, -1.0, math.nan, 1e-300]),
    "linear_solver": st.sampled_from(["auto", "dense", "sparse_normal_cholesky", "dense_schur"]),
    "bounds": st.sampled_from([(-math.inf, math.inf), (0.0, 10.0), (1,), "x"]),
}
NAMES = [f"`{name}`" for name in ARGUMENTS] + ["x0", "bounds", "tolerances", "Residuals", "`fun`"]


@st.composite
def starts(draw):
    n = draw(st.sampled_from([3, 3, 3, 4, 0, 2]))
    extreme = st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 1e150, -1e150, 1e300, math.nan, math.inf])
    values = draw(st.lists(st.one_of(st.floats(-3.0, 3.0), extreme), min_size=n, max_size=n))
    shape = draw(st.sampled_from(["1d", "1d", "1d", "2d", "complex", "list"]))
    x0 = np.array(values, dtype=float)
    if shape == "2d":
        return x0[None, :]
    if shape == "complex":
        return x0.astype(complex)
    if shape == "list":
        return values
    return x0


@pytest.fixture(scope="module")
def warm_worker(worker):
    solved_warm_up(worker, run_least_squares, np.array([2.0, 1.0, 0.4]), T, Y, {})
    return worker


@budget(200)
# found by hypothesis (each was a TypeError, an unnamed error or a wrong cost before its fix)
@example(np.array([]), {"f_scale": None})
@example(np.array([]), {"f_scale": 1e-300})
@example(np.array([]), {"damping": "levenberg"})
@example(np.zeros(3), {"ftol": "x"})
@example(np.zeros(3), {"max_nfev": "x"})
@example(np.zeros(3), {"sigma": 0.1})
@example(np.array([1e150, -3.0, 0.0]), {})
@given(starts(), st.dictionaries(st.sampled_from(sorted(ARGUMENTS)), st.none(), max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({k: ARGUMENTS[k] for k in keys})))
def test_least_squares_arguments_solve_with_true_cost_or_are_refused(warm_worker, x0, kwargs):
    solved_or_refused(warm_worker, "least_squares arguments", NAMES, run_least_squares, x0, T, Y, kwargs)
