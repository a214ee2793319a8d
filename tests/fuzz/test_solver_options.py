"""Fuzz SolverOptions: any mix of option values (right and wrong types, NaN, infinities, zero, negative,
huge, unknown names) is either refused with a ValueError naming the option, or accepted and then solves a
small problem with its true cost reported (see properties.py)."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparselm.lm.options import SolverOptions

from .budget import budget, tried
from .cases import SMALL_SPEC, solve_problem_spec
from .properties import solved_or_refused, solved_warm_up

ODD = [None, True, "", "x", -1, 0, 1, 3, 2 ** 63, -0.0, 1e-300, 0.5, 1e300, math.inf, -math.inf, math.nan, [1], 1 + 2j]
FIELDS = {
    "max_iterations": st.one_of(st.integers(0, 30), st.sampled_from(ODD)),
    "max_time_s": st.one_of(st.floats(0.0, 30.0), st.sampled_from(ODD)),
    "function_tolerance": st.sampled_from([0.0, 1e-12, 1e-3, 1.0, 1e300] + ODD),
    "gradient_tolerance": st.sampled_from([0.0, 1e-12, 1e-3, 1e300] + ODD),
    "parameter_tolerance": st.sampled_from([0.0, 1e-12, 1e-3, 1e300] + ODD),
    "initial_trust_region_radius": st.sampled_from([1e-300, 1e-3, 1e4, 1e300] + ODD),
    "max_trust_region_radius": st.sampled_from([1e-3, 1e16, 1e300] + ODD),
    "min_trust_region_radius": st.sampled_from([1e-300, 1e-32, 1.0, 1e10] + ODD),
    "min_relative_decrease": st.sampled_from([0.0, 1e-3, 0.99, 1.0, 10.0] + ODD),
    "min_diagonal": st.sampled_from([1e-300, 1e-6, 1e10] + ODD),
    "max_diagonal": st.sampled_from([1e-300, 1e32, 1e300] + ODD),
    "max_consecutive_invalid_steps": st.one_of(st.integers(0, 10), st.sampled_from(ODD)),
    "damping": st.sampled_from(["marquardt", "levenberg", "gauss_newton", "dogleg", None, 3]),
    "jacobi_scaling": st.sampled_from([True, False]),
    "linear_solver": st.sampled_from(["auto", "dense", "sparse_normal_cholesky", "dense_schur", "sparse_schur",
                                      "iterative_schur", "qr", None]),
    "ordering": st.sampled_from(["amd", "metis", "natural", "colamd", "best", "x", None]),
    "threads": st.sampled_from([None, 1, 2, 64, 0, -1, 1.5, True, "2"]),
    "cg_tolerance": st.sampled_from([1e-1, 1e-10, 1.0, 0.0] + ODD),
    "max_cg_iterations": st.one_of(st.integers(0, 50), st.sampled_from(ODD)),
}

@pytest.fixture(scope="module")
def warm_worker(worker):
    solved_warm_up(worker, solve_problem_spec, SMALL_SPEC)
    return worker


@budget(150)
@given(st.dictionaries(st.sampled_from(sorted(FIELDS) + ["not_an_option"]), st.none(), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: FIELDS.get(k, st.just(1)) for k in keys})))
def test_options_are_refused_by_name_or_solve(warm_worker, kwargs):
    try:
        SolverOptions.from_kwargs(**kwargs)
    except ValueError as error:
        tried("SolverOptions", "refused")
        assert any(f"option {k}" in str(error) or k in str(error) for k in kwargs), str(error)
        return
    except Exception as error:  # pragma: no cover - the failure is the point
        pytest.fail(f"SolverOptions({kwargs}) raised {type(error).__name__}: {error}")
    solved_or_refused(warm_worker, "SolverOptions", ["option"], solve_problem_spec, dict(SMALL_SPEC, options=kwargs))
