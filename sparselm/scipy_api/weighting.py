"""Whitening of :func:`sparselm.least_squares`' residuals by ``sigma``: per-residual standard
deviations, or a block-diagonal covariance Sigma whose blocks (connected components) are factored
so that A^T A = Sigma^-1 with A = L^T, Sigma^-1 = L L^T."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

MAX_SIGMA_BLOCK = 2000


def whitening_operator(sigma, m: int):
    """From ``sigma`` build ('diag', 1/sigma) or ('matrix', A) with A^T A = Sigma^-1 (block-wise)."""
    if sigma is None:
        return None
    if not sp.issparse(sigma):
        arr = np.asarray(sigma, dtype=float)
        if arr.ndim == 0:
            arr = np.full(m, float(arr))
        if arr.ndim == 1:
            if arr.shape != (m,):
                raise ValueError(f"`sigma`: expected {m} standard deviations, got shape {arr.shape}")
            if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
                raise ValueError("`sigma`: standard deviations must be positive and finite")
            return ("diag", 1.0 / arr)
        if arr.ndim != 2:
            raise ValueError("`sigma` must be a vector of standard deviations or an (m, m) covariance matrix")
        sigma = sp.csr_matrix(arr)
    cov = sp.csr_matrix(sigma, dtype=float)
    if cov.shape != (m, m):
        raise ValueError(f"`sigma`: covariance must be ({m}, {m}), got {cov.shape}")
    cov.eliminate_zeros()
    asym = abs(cov - cov.T)
    if asym.nnz and asym.max() > 1e-12 * abs(cov).max():
        raise ValueError("`sigma`: covariance matrix is not symmetric")
    n_comp, label = sp.csgraph.connected_components(cov, directed=False)
    sizes = np.bincount(label, minlength=n_comp)
    if sizes.max() > MAX_SIGMA_BLOCK:
        raise ValueError(f"`sigma`: covariance blocks larger than {MAX_SIGMA_BLOCK} residuals are not supported "
                         f"(largest connected block: {sizes.max()}); expected a block-diagonal covariance")
    if sizes.max() == 1:
        d = cov.diagonal()
        if not np.all(d > 0):
            raise ValueError("`sigma`: covariance diagonal must be positive")
        return ("diag", 1.0 / np.sqrt(d))
    # Rows of each block, in row order; local index of every row within its block.
    order = np.argsort(label, kind="stable")
    start = np.concatenate([[0], np.cumsum(sizes)])
    local = np.empty(m, np.int64)
    local[order] = np.arange(m) - start[label[order]]
    coo = cov.tocoo()
    rows_out, cols_out, vals_out = [], [], []
    for k in np.unique(sizes):
        comps = np.flatnonzero(sizes == k)
        slot = np.full(n_comp, -1, np.int64)
        slot[comps] = np.arange(comps.size)
        members = order[(start[comps][:, None] + np.arange(k)).ravel()].reshape(comps.size, k)
        blocks = np.zeros((comps.size, k, k))
        sel = slot[label[coo.row]] >= 0
        blocks[slot[label[coo.row[sel]]], local[coo.row[sel]], local[coo.col[sel]]] = coo.data[sel]
        try:
            info = np.linalg.inv(np.linalg.cholesky(blocks))          # Sigma = C C^T -> C^-1
            info = np.swapaxes(info, 1, 2) @ info                     # Sigma^-1 = C^-T C^-1
            lower = np.linalg.cholesky(0.5 * (info + np.swapaxes(info, 1, 2)))  # Sigma^-1 = L L^T
        except np.linalg.LinAlgError:
            raise ValueError("`sigma`: covariance matrix is not positive definite") from None
        a = np.swapaxes(lower, 1, 2)                                   # A = L^T, A^T A = Sigma^-1
        r, c = np.triu_indices(k)
        rows_out.append(members[:, r].ravel())
        cols_out.append(members[:, c].ravel())
        vals_out.append(a[:, r, c].ravel())
    a = sp.csr_matrix((np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))), shape=(m, m))
    return ("matrix", a)

