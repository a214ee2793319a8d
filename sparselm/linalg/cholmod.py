"""The one module that talks to CHOLMOD (scikit-sparse 0.4 API).

A :class:`CholmodFactor` is analysed once for a fixed sparsity pattern (fill-reducing ordering
and, for the supernodal method, the supernodes), then numerically refactorised in place for each
new set of values. A matrix that is not positive definite is reported as ``False`` from
:meth:`factorize`, never as an exception, so the LM loop can answer it with more damping.
Only the lower triangle of the CSC matrix given is read.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse as sp

ORDERINGS = ("amd", "metis", "nesdis", "natural", "colamd", "best", "default")
MODES = ("supernodal", "simplicial", "auto")


def _cholmod():
    from sksparse import cholmod  # imported lazily: the import loads the system BLAS

    return cholmod


class CholmodFactor:
    """Symbolic analysis once, numeric factorization per call, solves with the current factor."""

    def __init__(self, lower: sp.csc_matrix, ordering: str = "amd", mode: str = "supernodal"):
        if ordering not in ORDERINGS:
            raise ValueError(f"unknown ordering {ordering!r}; choose one of {', '.join(ORDERINGS)}")
        if mode not in MODES:
            raise ValueError(f"unknown factorization {mode!r}; choose one of {', '.join(MODES)}")
        cholmod = _cholmod()
        self.ordering = ordering
        self.mode = mode
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cholmod.CholmodTypeConversionWarning)
            self._factor = cholmod.analyze(lower, mode=mode, ordering_method=ordering)
        self.analysis_seconds = time.perf_counter() - t0
        self.factorized = False

    def factorize(self, lower: sp.csc_matrix) -> bool:
        """Numerically factor ``lower`` (same pattern as analysed); False if not positive definite."""
        cholmod = _cholmod()
        with warnings.catch_warnings():
            warnings.simplefilter("error", cholmod.CholmodWarning)
            warnings.simplefilter("ignore", cholmod.CholmodTypeConversionWarning)
            try:
                self._factor.cholesky_inplace(lower)
            except (cholmod.CholmodNotPositiveDefiniteError, cholmod.CholmodWarning, cholmod.CholmodError):
                self.factorized = False
                return False
        self.factorized = True
        return True

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """Solve A x = rhs with the current factor."""
        return self._factor.solve_A(rhs)

    def lower_factor(self):
        """(L, permutation) of the current factorization: A[perm][:, perm] = L L^T, with L lower
        triangular as a scipy CSC matrix (the factor is converted to that form if it is not)."""
        return self._factor.L(), self._factor.P()

    def permutation(self) -> np.ndarray:
        """The fill-reducing permutation chosen by the analysis."""
        return self._factor.P()

    def factor_nnz(self) -> int:
        """Number of nonzeros of the Cholesky factor L (needs a factorization)."""
        return int(self._factor.L().nnz)

    def column_counts(self) -> np.ndarray:
        """Nonzeros stored in each column of L, diagonal included (needs a factorization).

        Their sum is :meth:`factor_nnz`; the sum of their squares is CHOLMOD's flop count of the
        factorization (``Common->fl``), computed here on the factor's stored pattern.
        """
        return np.diff(self._factor.L().indptr).astype(np.int64)



def extension_path() -> str:
    """File of scikit-sparse's CHOLMOD extension module; calling this loads CHOLMOD and its BLAS."""
    return str(_cholmod().__file__)


def available_orderings() -> tuple:
    """Orderings this CHOLMOD build supports (metis and nesdis need METIS)."""
    cholmod = _cholmod()
    probe = sp.csc_matrix(np.eye(3) * 2.0)
    ok = []
    for name in ("amd", "metis", "nesdis", "natural", "colamd"):
        try:
            cholmod.analyze(probe, ordering_method=name)
            ok.append(name)
        except Exception:
            pass
    return tuple(ok)
