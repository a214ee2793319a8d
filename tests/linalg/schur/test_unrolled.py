"""The straight-line block products (issue 18): A^T B accumulated into a block, against numpy, for
the shapes the Schur kernels use and a few others, with offsets, the assigning and lower-only
variants, A^T x into a vector, J^T r with column norms; every generated sum in the fused-chain form
that keeps processes bitwise equal; and the SLP switch restores numba's setting."""
from __future__ import annotations

import ast

import numba
import numpy as np
import pytest

from sparselm.linalg.schur.unrolled import (gradient_accumulator, outer_product_accumulator, slp_vectorization,
                                            transposed_product_accumulator)


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


@pytest.mark.parametrize("assign, lower", [(True, False), (False, True), (True, True)])
def test_assign_and_lower_variants(assign, lower):
    rng = np.random.default_rng(7)
    n, depth = 9, 3
    a = rng.normal(size=(depth, n + 1))
    out = rng.normal(size=(n, n))
    start = out.copy()
    fn = outer_product_accumulator(n, n, depth, assign=assign, lower=lower)
    with slp_vectorization():
        _apply(fn, out, a, 1, a, 1)
    product = a[:, 1:].T @ a[:, 1:]  # symmetric: out[c, r] gets entry (r, c)
    expected = product if assign else start + product
    written = np.triu(np.ones((n, n), dtype=bool)) if lower else np.ones((n, n), dtype=bool)  # out[c, r], r >= c
    np.testing.assert_allclose(out[written], expected[written], rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(out[~written], start[~written])


@numba.njit(cache=False)
def _apply_transposed(fn, out, a, x, x_off):
    fn(out, a, x, x_off)


@pytest.mark.parametrize("n_rows, depth", [(3, 9), (3, 6), (1, 4)])
def test_transposed_product_adds_a_transpose_x(n_rows, depth):
    rng = np.random.default_rng(n_rows * 10 + depth)
    a = rng.normal(size=(depth, n_rows))
    x = rng.normal(size=depth + 5)
    out = rng.normal(size=n_rows)
    start = out.copy()
    with slp_vectorization():
        _apply_transposed(transposed_product_accumulator(n_rows, depth), out, a, x, 3)
    np.testing.assert_allclose(out, start + a.T @ x[3:3 + depth], rtol=1e-13, atol=1e-13)


@numba.njit(cache=False)
def _apply_gradient(fn, grad, norms, g_off, jac, j_off, res):
    fn(grad, norms, g_off, jac, j_off, res)


@pytest.mark.parametrize("n_cols, depth", [(9, 2), (3, 2), (6, 3)])
def test_gradient_accumulator_adds_j_transpose_r_and_column_norms(n_cols, depth):
    rng = np.random.default_rng(n_cols * 10 + depth)
    jac = rng.normal(size=(depth, n_cols + 4))
    res = rng.normal(size=depth)
    grad, norms = rng.normal(size=n_cols + 3), rng.normal(size=n_cols + 3)
    g0, n0 = grad.copy(), norms.copy()
    with slp_vectorization():
        _apply_gradient(gradient_accumulator(n_cols, depth), grad, norms, 2, jac, 3, res)
    block = jac[:, 3:3 + n_cols]
    np.testing.assert_allclose(grad[2:2 + n_cols], g0[2:2 + n_cols] + block.T @ res, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(norms[2:2 + n_cols], n0[2:2 + n_cols] + (block ** 2).sum(axis=0), rtol=1e-13, atol=1e-13)
    untouched = np.r_[0:2, 2 + n_cols:n_cols + 3]
    np.testing.assert_array_equal(grad[untouched], g0[untouched])
    np.testing.assert_array_equal(norms[untouched], n0[untouched])


def _additions_with_two_products(source: str) -> list[str]:
    """The additions in ``source`` whose both operands are products (contraction could fuse either)."""
    def is_product(node):
        return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult)
    return [ast.unparse(node) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)
            and is_product(node.left) and is_product(node.right)]


@pytest.mark.parametrize("accumulator", [
    outer_product_accumulator(9, 9, 3), outer_product_accumulator(9, 9, 3, assign=True),
    outer_product_accumulator(3, 9, 2, lower=True), outer_product_accumulator(9, 9, 2, assign=True, lower=True),
    transposed_product_accumulator(9, 3), gradient_accumulator(9, 2), gradient_accumulator(3, 3)])
def test_every_generated_addition_has_one_product_operand(accumulator):
    source = accumulator.generated_source
    assert " * " in source and " + " in source
    assert _additions_with_two_products(source) == []


def test_two_product_additions_are_detected():  # the check above can fail
    assert _additions_with_two_products("x = a * b + c * d + e") == ["a * b + c * d"]


def test_slp_switch_is_restored_even_after_an_error():
    before = numba.config.SLP_VECTORIZE
    with pytest.raises(RuntimeError):
        with slp_vectorization():
            assert numba.config.SLP_VECTORIZE == 1
            raise RuntimeError("boom")
    assert numba.config.SLP_VECTORIZE == before


def test_slp_setting_survives_numba_rereading_its_environment(monkeypatch):
    # numba re-reads the NUMBA_* variables at the first compilation after one changed (importing
    # sparselm after numba changes NUMBA_THREADING_LAYER); that must not switch SLP off again
    monkeypatch.setenv("NUMBA_DEBUG_CACHE", "0")
    with slp_vectorization():
        numba.core.config.reload_config()  # what numba's compiler does before compiling
        assert numba.config.SLP_VECTORIZE == 1


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
from sparselm.colmap.problem import build_problem as build_colmap_problem
from sparselm.colmap.synthetic import synthetic_model
for solver in ("dense_schur", "sparse_schur", "iterative_schur"):
    sparselm.solve(build_problem(synthetic_problem(6, 60, seed=3).initial), linear_solver=solver,
                   max_iterations=2, threads=2)
# dense_schur's stacked elimination (every point seen by every camera) and a second f-block size
s = sparselm.solve(build_problem(synthetic_problem(6, 60, observations_per_point=6, seed=3).initial),
                   linear_solver="dense_schur", max_iterations=2, threads=2)
assert s.linear_solver["elimination"] == "stacked", s.linear_solver
sparselm.solve(build_colmap_problem(synthetic_model("SIMPLE_RADIAL", n_images=6, n_points=60).initial).problem,
               linear_solver="dense_schur", max_iterations=2, threads=2)
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
