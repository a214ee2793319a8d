"""sparselm.linalg.schur.linearize: the specialised slot pass against the general one."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from sparselm.linalg.schur import eliminate, linearize

from tests.linalg.schur.test_schur import Linearised, ba_problem, colmap_problem, mixed_problem


@pytest.mark.parametrize("make", [ba_problem, mixed_problem, colmap_problem], ids=["ba", "mixed", "colmap"])
def test_slot_pass_gives_the_general_pass_results(make):
    """V, W, U, the gradient and the column norms from slot_pass_kernel (the groups with at most two f-slots)
    equal those of linearize_kernel, to round-off."""
    lin = Linearised(make())
    solver = lin.solver("sparse_schur")  # linearised once with the kernels group_pass_kernel chose
    kf = solver.w.shape[1]
    ke = solver.v.shape[1]
    chosen = [k.py_func.__name__ for k in solver._linearize_kernels]
    assert "linearize_slots" in chosen
    results = {}
    for name, kernels in (("slots", solver._linearize_kernels),
                          ("general", [linearize.linearize_kernel(r.shape[1], kf, ke) for r in lin.evaluator.residuals])):
        solver._linearize_kernels = kernels
        solver.w.fill(0.0)  # as allocated: rows past a smaller block's size stay zero
        solver.linearize()
        results[name] = [solver.v.copy(), solver.w.copy(), solver.u_values.copy(), lin.evaluator.gradient.copy(),
                         lin.evaluator.column_norms.copy()]
    for a, b in zip(results["slots"], results["general"]):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13 * np.abs(b).max())


@pytest.mark.parametrize("factory, parameters", [
    (linearize.slot_pass_kernel, (2, 6, 3, 0, 0, 6, 1, 6, 3)),
    (linearize.linearize_kernel, (2, 6, 3)),
    (eliminate.point_pass_kernel, (6, 3)),
    (eliminate.stacked_point_pass_kernel, (6, 3)),
])
def test_every_specialisation_parameter_is_part_of_the_cache_key(factory, parameters):
    """numba keys a cached closure by its cells (see unrolled.cacheable_kernel): each parameter of a kernel
    factory must be read by the kernel, or two specialisations would share one cache entry."""
    kernel = factory(*parameters)
    names = set(inspect.signature(factory.__wrapped__).parameters)
    assert names <= set(kernel.py_func.__code__.co_freevars), names - set(kernel.py_func.__code__.co_freevars)
