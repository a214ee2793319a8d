"""sparselm.linalg.numba_blas: BLAS called from numba kernels."""
from __future__ import annotations

import numba
import numpy as np
import pytest

from sparselm.linalg.numba_blas import gram_lower


@numba.njit(parallel=True, cache=False)
def _grams_by_chunk(a, bounds, out):
    for ch in numba.prange(bounds.shape[0] - 1):
        gram_lower(a[bounds[ch]:bounds[ch + 1]], out[ch], 0.0)


@pytest.mark.parametrize("k, n", [(1, 1), (7, 3), (300, 41), (0, 5)])
def test_gram_lower_is_the_lower_triangle_of_a_t_a(k, n):
    a = np.random.default_rng(k + n).normal(size=(k, n))
    out = np.full((n, n), 7.0)
    gram_lower(a, out, 0.0)
    g = out.T  # out[c, r] holds entry (r, c): read column-major
    lower = np.tril_indices(n)
    np.testing.assert_allclose(g[lower], (a.T @ a)[lower], rtol=1e-13, atol=1e-13 * max(1.0, float(np.max(np.abs(a), initial=0.0)) ** 2))
    assert np.all(g[np.triu_indices(n, 1)] == 7.0)  # the strict upper triangle is not touched


def test_gram_lower_runs_on_chunks_in_parallel_threads():
    """Called from a prange, each chunk's Gram product is its own (the sum is the whole one)."""
    a = np.random.default_rng(0).normal(size=(600, 30))
    bounds = np.array([0, 100, 350, 600])
    out = np.zeros((3, 30, 30))
    _grams_by_chunk(a, bounds, out)
    total = np.tril(out.sum(axis=0).T)
    np.testing.assert_allclose(total, np.tril(a.T @ a), rtol=1e-12, atol=1e-12)
    for ch in range(3):
        part = a[bounds[ch]:bounds[ch + 1]]
        np.testing.assert_allclose(np.tril(out[ch].T), np.tril(part.T @ part), rtol=1e-12, atol=1e-12)
