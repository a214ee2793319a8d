"""The straight-line block products (issue 18): A^T B accumulated into a block, against numpy, for
the shapes the Schur kernels use and a few others, with offsets and the lower-only variant; and
the SLP switch restores numba's setting."""
from __future__ import annotations

import numba
import numpy as np
import pytest

from sparselm.linalg.schur.unrolled import outer_product_accumulator, slp_vectorization


@numba.njit(cache=False)
def _apply(fn, out, a, a_off, b, b_off):
    fn(out, a, a_off, b, b_off)


@pytest.mark.parametrize("n_rows, n_cols, depth", [(9, 9, 3), (3, 9, 2), (9, 9, 2), (3, 3, 2), (6, 6, 4), (5, 2, 1)])
def test_accumulates_a_transpose_b(n_rows, n_cols, depth):
    rng = np.random.default_rng(n_rows * 100 + n_cols * 10 + depth)
    a_off, b_off = 2, 1
    a = rng.normal(size=(depth, a_off + n_rows + 1))
    b = rng.normal(size=(depth, b_off + n_cols + 2))
    out = rng.normal(size=(n_cols, n_rows))
    start = out.copy()
    fn = outer_product_accumulator(n_rows, n_cols, depth)
    with slp_vectorization():
        _apply(fn, out, a, a_off, b, b_off)
    product = (a[:, a_off:a_off + n_rows].T @ b[:, b_off:b_off + n_cols]).T  # out[c, r] += sum_k a[k, r] b[k, c]
    np.testing.assert_allclose(out, start + product, rtol=1e-13, atol=1e-13)


def test_slp_switch_is_restored_even_after_an_error():
    before = numba.config.SLP_VECTORIZE
    with pytest.raises(RuntimeError):
        with slp_vectorization():
            assert numba.config.SLP_VECTORIZE == 1
            raise RuntimeError("boom")
    assert numba.config.SLP_VECTORIZE == before


def test_non_finite_values_propagate():
    fn = outer_product_accumulator(3, 3, 2)
    out = np.zeros((3, 3))
    a = np.ones((2, 3))
    a[1, 2] = np.nan
    with slp_vectorization():
        _apply(fn, out, a, 0, np.ones((2, 3)), 0)
    assert np.isnan(out[:, 2]).all() and np.isfinite(out[:, :2]).all()


_SOLVE_AND_COUNT_CACHE_MISSES = """
import gc, json
from numba.core.dispatcher import Dispatcher
import sparselm
from sparselm.bal import build_problem, synthetic_problem
for solver in ("dense_schur", "sparse_schur", "iterative_schur"):
    sparselm.solve(build_problem(synthetic_problem(6, 60, seed=3).initial), linear_solver=solver,
                   max_iterations=2, threads=2)
misses = {}
for obj in gc.get_objects():
    if isinstance(obj, Dispatcher) and obj.signatures and type(obj._cache).__name__ != "NullCache":
        missed = sum(obj.stats.cache_misses.values())
        if missed:
            misses[obj.py_func.__module__ + "." + obj.py_func.__qualname__] = missed
print(json.dumps(misses))
"""


def test_schur_kernels_load_from_the_disk_cache_in_a_new_process():
    """Every cache=True kernel a Schur solve compiles, the generated ones included, is found in numba's
    disk cache by the next process (a kernel whose cache key changes per process would be compiled
    again in every process: seconds per solve)."""
    import json
    import subprocess
    import sys

    runs = [subprocess.run([sys.executable, "-c", _SOLVE_AND_COUNT_CACHE_MISSES], capture_output=True, text=True,
                           timeout=600) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert json.loads(runs[1].stdout.strip().splitlines()[-1]) == {}
