"""CholmodFactor: CHOLMOD's 'auto' choice between simplicial and supernodal (and our account of it),
failures as statuses in every mode."""
import numpy as np
import pytest
import scipy.sparse as sp

from sparselm.linalg.cholmod import SUPERNODAL_SWITCH, CholmodFactor


@pytest.mark.parametrize("n,expect", [(400, "simplicial"), (300, "supernodal")])
def test_auto_mode_follows_flops_per_entry(n, expect, rng):
    """'auto' factors a banded matrix (3 flops per entry of L) simplicially and a dense one supernodally,
    and the factor solves the system either way."""
    if expect == "simplicial":
        a = sp.diags([np.ones(n - 1), np.full(n, 4.0), np.ones(n - 1)], [-1, 0, 1])
    else:
        m = rng.standard_normal((n, n))
        a = sp.csc_matrix(m @ m.T + n * np.eye(n))
    lower = sp.tril(a).tocsc()
    factor = CholmodFactor(lower, "amd", "auto")
    assert factor.mode == "auto" and factor.method() == expect
    assert (factor.statistics().flops_per_nnz >= SUPERNODAL_SWITCH) == (expect == "supernodal")
    assert factor.factorize(lower)
    explicit = CholmodFactor(lower, "amd", expect)
    assert explicit.factorize(lower) and explicit.factor_nnz() == factor.factor_nnz()
    b = rng.standard_normal(n)
    x = factor.solve(b)
    assert np.linalg.norm(a @ x - b) <= 1e-10 * np.linalg.norm(b) * n
    assert CholmodFactor(lower, "amd", "simplicial").method() == "simplicial"



@pytest.mark.parametrize("mode", ["simplicial", "supernodal", "auto"])
def test_indefinite_is_a_status_in_every_mode(mode, rng):
    """Simplicial CHOLMOD computes LDL^T, which does not stop at a negative pivot: still reported."""
    n = 40
    a = sp.diags([np.ones(n - 1), np.full(n, 4.0), np.ones(n - 1)], [-1, 0, 1]).tolil()
    a[n // 2, n // 2] = -3.0
    lower = sp.tril(a.tocsc()).tocsc()
    factor = CholmodFactor(lower, "amd", mode)
    assert factor.factorize(lower) is False and not factor.factorized
    lower.data[lower.data == -3.0] = 4.0
    assert factor.factorize(lower) is True
