"""Symbolic column counts against CHOLMOD's own simplicial factor, on random and structured patterns."""
import numpy as np
import pytest
import scipy.sparse as sp

from sparselm.linalg.cholmod import CholmodFactor
from sparselm.linalg.symbolic import column_counts, factor_statistics, permuted_lower_rows


def spd_lower(n, density, rng):
    a = sp.random(n, n, density=density, random_state=rng)
    a = a + a.T + sp.identity(n) * (n + 10.0)
    lower = sp.tril(a).tocsc()
    lower.sort_indices()
    return lower


@pytest.mark.parametrize("n,density", [(1, 1.0), (7, 0.3), (60, 0.05), (300, 0.01), (200, 0.2)])
@pytest.mark.parametrize("ordering", ["amd", "natural"])
def test_counts_match_cholmod_factor(n, density, ordering, rng):
    lower = spd_lower(n, density, rng)
    factor = CholmodFactor(lower, ordering, "simplicial")
    assert factor.factorize(lower)
    counts = factor.column_counts()  # CHOLMOD's L in its permuted order, diagonal included
    stats = factor_statistics(lower.indptr, lower.indices, factor.permutation())
    assert stats.nnz == int(counts.sum())
    assert stats.flops == float(np.sum(counts.astype(np.float64) ** 2))


def test_full_pattern_counts_as_lower(rng):
    """Both triangles given: the upper entries repeat the lower ones and change nothing."""
    lower = spd_lower(80, 0.05, rng)
    full = (lower + sp.tril(lower, -1).T).tocsc()
    perm = rng.permutation(80)
    a = factor_statistics(lower.indptr, lower.indices, perm)
    b = factor_statistics(full.indptr, full.indices, perm)
    assert (a.nnz, a.flops) == (b.nnz, b.flops)


def test_known_shapes():
    """Tridiagonal: no fill, 2 entries per column but the last; dense: column k has n - k entries."""
    n = 50
    tri = sp.tril(sp.diags([np.ones(n - 1), np.full(n, 4.0), np.ones(n - 1)], [-1, 0, 1])).tocsc()
    s = factor_statistics(tri.indptr, tri.indices, np.arange(n))
    assert s.nnz == 2 * n - 1
    dense = sp.tril(np.ones((n, n)) + n * np.eye(n)).tocsc()
    s = factor_statistics(dense.indptr, dense.indices, np.arange(n))
    assert s.nnz == n * (n + 1) // 2 and s.flops == sum(k * k for k in range(1, n + 1))


def test_weighted_counts_are_block_rows():
    """Block arrowhead (3 blocks of size 2 coupled to a last block of size 5): every block above the
    last has the last one's 5 rows below it, the last has none."""
    row_ptr = np.array([0, 0, 0, 0, 3])
    row_cols = np.array([0, 1, 2])
    assert list(column_counts(row_ptr, row_cols, np.array([2, 2, 2, 5]))) == [5, 5, 5, 0]
    ptr, cols = permuted_lower_rows(np.array([0, 2, 3]), np.array([0, 1, 1]), np.array([1, 0]))
    assert list(ptr) == [0, 0, 1] and list(cols) == [0]

