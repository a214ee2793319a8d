"""The gauge: the null space of the information matrix and the coordinates that fix it.

A gauge freedom is a direction n of the parameters that changes no residual: J n = 0, so
H = J^T W J is singular (bundle adjustment with no block held: the 7-dof similarity of the world;
a pose graph without a prior: the global pose). In the reduced form (see
:mod:`sparselm.covariance.information`) a null vector n = (n_f, n_e) of H has
n_e = -V^+ W^T n_f and S n_f = 0, so the null space is found on M alone and lifted.

It is found numerically, for any problem: M is scaled to unit diagonal (M~ = D M D), and a block of
vectors is iterated with (M~ + mu I)^-1 (one CHOLMOD factorization, mu = ``null_tolerance``), which
multiplies directions with eigenvalue lambda by 1 / (lambda + mu): the null directions dominate
after a few steps. A Rayleigh-Ritz step on the block gives the eigenpairs; those with
lambda < ``null_tolerance`` form the null space (the block grows while every Ritz value is below it).

Fixing the gauge by coordinates: holding the coordinates C fixed is a valid gauge when the null
basis restricted to C is square and nonsingular; the best-conditioned such choice comes from a
column-pivoted QR of the null basis (its first d pivots).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from sparselm.linalg.cholmod import CholmodFactor

ITERATIONS = 8
INITIAL_BLOCK = 12
MAX_BLOCK = 96
SEED = 20240515


class GaugeError(ValueError):
    """The gauge could not be fixed as asked (the message says which directions remain free)."""


def full_symmetric(lower: sp.csc_matrix) -> sp.csr_matrix:
    """The symmetric matrix whose lower triangle is ``lower``."""
    return (lower + sp.tril(lower, -1).T).tocsr()


def null_space(lower: sp.csc_matrix, null_tolerance: float, ordering: str = "amd") -> np.ndarray:
    """Orthonormal basis (n, d) of the numerical null space of the PSD matrix with lower triangle
    ``lower`` (eigenvalues below ``null_tolerance`` after scaling to unit diagonal), d >= 0."""
    n = lower.shape[0]
    diag = lower.diagonal()
    scale = 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0))
    d_scale = sp.diags(scale)
    scaled_lower = sp.csc_matrix(d_scale @ lower @ d_scale)
    scaled = full_symmetric(scaled_lower)
    shift = null_tolerance
    for _ in range(6):
        factor = CholmodFactor(sp.csc_matrix(scaled_lower + shift * sp.eye(n, format="csc")), ordering)
        if factor.factorize(sp.csc_matrix(scaled_lower + shift * sp.eye(n, format="csc"))):
            break
        shift *= 100.0
    else:
        raise GaugeError("the information matrix is not positive semi-definite (shifted factorization failed)")
    rng = np.random.default_rng(SEED)
    block = min(INITIAL_BLOCK, n)
    while True:
        x = rng.standard_normal((n, block))
        for _ in range(ITERATIONS):
            x, _ = np.linalg.qr(factor.solve(x))
        theta, vectors = np.linalg.eigh(x.T @ (scaled @ x))
        small = theta < null_tolerance
        if small.all() and block < min(MAX_BLOCK, n):
            block = min(2 * block, n)
            continue
        basis = x @ vectors[:, small]
        break
    if basis.shape[1] == 0:
        return np.zeros((n, 0))
    basis = basis * scale[:, None]  # back to unscaled coordinates: M (D y) = 0 iff M~ y = 0
    q, _ = np.linalg.qr(basis)
    return q


def fixing_coordinates(basis: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """d coordinates (indices into basis rows, among ``allowed``) whose values fix the gauge:
    basis[C] is square and as well-conditioned as a pivoted QR finds."""
    d = basis.shape[1]
    if d == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.flatnonzero(allowed)
    _, r, piv = scipy.linalg.qr(basis[rows].T, mode="economic", pivoting=True)
    if abs(r[d - 1, d - 1]) <= 1e-12 * abs(r[0, 0]):
        raise GaugeError(f"no choice of {d} coordinates fixes the {d}-dimensional gauge")
    return np.sort(rows[piv[:d]]).astype(np.int64)


def pin_coordinates(lower: sp.csc_matrix, coordinates: np.ndarray) -> Tuple[sp.csc_matrix, np.ndarray]:
    """A copy of ``lower`` with the rows and columns of ``coordinates`` zeroed and 1 on their diagonal
    (those coordinates decoupled: holding them fixed), and the mask of pinned columns."""
    n = lower.shape[0]
    pinned = np.zeros(n, dtype=bool)
    pinned[coordinates] = True
    out = lower.copy()
    col_of = np.repeat(np.arange(n), np.diff(out.indptr))
    hit = pinned[out.indices] | pinned[col_of]
    out.data[hit] = 0.0
    out.data[out.indptr[:-1][pinned]] = 1.0  # the diagonal is the first entry of each column
    return out, pinned
