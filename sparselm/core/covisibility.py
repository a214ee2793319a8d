"""Co-visibility: which kept blocks share an eliminated block (in bundle adjustment, which cameras see
a common point). It is the block pattern of the reduced matrix S = U - W V^-1 W^T beyond U's own
blocks, the graph the Schur solvers' fill-in and the ``auto`` choice depend on, and what
``sparselm info`` and ``sparselm profile`` report. Computed here only.

With the incidence matrix I (n_eliminated x n_kept, 1 where a kept block and an eliminated block
share a residual, a repeated pair counted once), C = I^T I: C[a, b] is the number of eliminated
blocks kept blocks a and b share, C[a, a] the number of eliminated blocks a touches.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def covisibility(kept: np.ndarray, eliminated: np.ndarray, n_kept: int, n_eliminated: int) -> sp.csr_matrix:
    """C = I^T I (n_kept x n_kept, symmetric) from the (kept, eliminated) block pairs of the residuals.

    kept, eliminated  equal-length integer arrays, one entry per (residual, kept slot) incidence;
                      repeated pairs count once.
    """
    kept = np.asarray(kept, dtype=np.int64)
    eliminated = np.asarray(eliminated, dtype=np.int64)
    incidence = sp.csr_matrix((np.ones(kept.size), (eliminated, kept)), shape=(n_eliminated, n_kept))
    incidence.data[:] = 1.0  # duplicates were summed by the constructor: a pair counts once
    return (incidence.T @ incidence).tocsr()
