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
