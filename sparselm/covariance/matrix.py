"""Covariance from a plain sparse Jacobian (the scipy front door): (J^T J)^-1 on the pattern of J^T J.

For ``sparselm.least_squares`` there is no Problem with blocks, only J (m x n, whitened and
loss-corrected at the solution). Every parameter is its own block: the result is the covariance's
entries wherever J^T J has an entry (its diagonal and every pair of parameters that share a
residual; all of it for a dense J), as a sparse matrix, from the selected inverse of J^T J's
Cholesky factor. With a singular J^T J the same definitions as :mod:`sparselm.covariance.estimate`
apply: the Moore-Penrose inverse P G P by default, G with the gauge coordinates held for
``gauge="fix"``. A parameter that no residual depends on (a zero column of J) has no covariance:
its row and column are NaN.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sparselm.covariance.gauge import fixing_coordinates, null_space, pin_coordinates
from sparselm.covariance.selected_inverse import SelectedInverse
from sparselm.linalg.cholmod import CholmodFactor


def jacobian_covariance(jacobian, gauge: str = "pinv", null_tolerance: float = 1e-10) -> sp.csc_matrix:
    """(J^T J)^+ (or the gauge-fixed inverse) on the pattern of J^T J, as a symmetric CSC matrix (n, n)."""
    if gauge not in ("pinv", "fix"):
        raise ValueError(f"gauge must be 'pinv' or 'fix', got {gauge!r}")
    jac = sp.csr_matrix(jacobian, dtype=np.float64)
    normal = sp.csc_matrix(jac.T @ jac)
    n = normal.shape[0]
    unused = normal.diagonal() == 0.0
    normal = sp.csc_matrix(normal + sp.diags(unused.astype(float)))  # a diagonal entry in every column
    normal.sort_indices()
    lower = sp.csc_matrix(sp.tril(normal))
    lower.sort_indices()  # the diagonal first in every column (pin_coordinates relies on it)
    basis = null_space(lower, null_tolerance)
    fixed = fixing_coordinates(basis, ~unused)
    pinned, _ = pin_coordinates(lower, fixed)
    factor = CholmodFactor(pinned)
    if not factor.factorize(pinned):
        raise ValueError("J^T J with the gauge held is not positive definite: a rank deficiency beyond the "
                         "null space found (try a larger null_tolerance)")
    selected = SelectedInverse(*factor.lower_factor())
    rows = normal.indices.astype(np.int64)
    cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(normal.indptr))
    zeroed = np.zeros(n, dtype=bool)
    zeroed[fixed] = True
    values = selected.gather(np.where(zeroed[rows], -1, rows)[:, None], np.where(zeroed[cols], -1, cols)[:, None])
    values = values[:, 0, 0]
    if gauge == "pinv" and basis.shape[1]:
        rhs = basis.copy()
        rhs[zeroed] = 0.0
        g_basis = np.asarray(factor.solve(rhs)).reshape(basis.shape)
        g_basis[zeroed] = 0.0
        k = basis.T @ g_basis
        values += (-np.einsum("td,td->t", basis[rows], g_basis[cols]) - np.einsum("td,td->t", g_basis[rows], basis[cols])
                   + np.einsum("td,de,te->t", basis[rows], k, basis[cols]))
    values[unused[rows] | unused[cols]] = np.nan
    return sp.csc_matrix((values, normal.indices, normal.indptr), shape=(n, n))
