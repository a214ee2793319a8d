"""The one module that talks to CHOLMOD (scikit-sparse 0.4 API).

A :class:`CholmodFactor` is analysed once for a fixed sparsity pattern (fill-reducing ordering
and, for the supernodal method, the supernodes), then numerically refactorised in place for each
new set of values. A matrix that is not positive definite is reported as ``False`` from
:meth:`factorize`, never as an exception, so the LM loop can answer it with more damping.
Only the lower triangle of the CSC matrix given is read.

Simplicial or supernodal. ``mode="auto"`` (sparselm's default) is CHOLMOD's own choice, made in
its symbolic analysis: supernodal when the factorization's flops per entry of L, sum c_k^2 / sum c_k
(c_k: entries of column k of L), reach its ``supernodal_switch`` (40), else simplicial. Measured on
the real matrices of this project (benchmarks/bench_factorization_mode.py, results in
benchmarks/results/factorization_mode.md) that rule picked the faster method for all but one of 12
matrices (BAL normal matrices and Schur complements, pose graphs); a stricter switch (80), which
made-up matrices had suggested, was 2x slower on problem-16's J^T J. scikit-sparse does not say which
method CHOLMOD took; :meth:`CholmodFactor.method` recomputes its rule from the exact column counts
(:func:`sparselm.linalg.symbolic.factor_statistics`) when asked, outside the solve.
"""
from __future__ import annotations

import time
import warnings
from typing import Optional

import numpy as np
import scipy.sparse as sp

from sparselm.linalg.symbolic import FactorStatistics, factor_statistics

ORDERINGS = ("amd", "metis", "nesdis", "natural", "colamd", "best", "default")
MODES = ("supernodal", "simplicial", "auto")

#: CHOLMOD's ``supernodal_switch``: with mode "auto" it factors supernodally when sum c_k^2 / sum c_k reaches it
SUPERNODAL_SWITCH = 40.0


def _cholmod():
    from sksparse import cholmod  # imported lazily: the import loads the system BLAS

    return cholmod


class CholmodFactor:
    """Symbolic analysis once, numeric factorization per call, solves with the current factor.

    ``mode`` is the method asked for ("supernodal", "simplicial" or "auto": CHOLMOD's choice);
    :meth:`method` says which one is used.
    """

    def __init__(self, lower: sp.csc_matrix, ordering: str = "amd", mode: str = "supernodal"):
        if ordering not in ORDERINGS:
            raise ValueError(f"unknown ordering {ordering!r}; choose one of {', '.join(ORDERINGS)}")
        if mode not in MODES:
            raise ValueError(f"unknown factorization {mode!r}; choose one of {', '.join(MODES)}")
        cholmod = _cholmod()
        self.ordering = ordering
        self.mode = mode
        self._pattern = (lower.indptr, lower.indices)
        self._statistics: Optional[FactorStatistics] = None
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cholmod.CholmodTypeConversionWarning)
            self._factor = cholmod.analyze(lower, mode=mode, ordering_method=ordering)
        self.analysis_seconds = time.perf_counter() - t0
        self.factorized = False

    def statistics(self) -> FactorStatistics:
        """nnz(L) and the flop count of the factorization under the analysed ordering (counted once, in O(nnz(L)))."""
        if self._statistics is None:
            self._statistics = factor_statistics(*self._pattern, self.permutation())
        return self._statistics

    def method(self) -> str:
        """"supernodal" or "simplicial": the one asked for, or for "auto" the one CHOLMOD's rule picks."""
        if self.mode != "auto":
            return self.mode
        return "supernodal" if self.statistics().flops_per_nnz >= SUPERNODAL_SWITCH else "simplicial"

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
        if self.mode != "supernodal" and not np.all(self._factor.D() > 0.0):
            # CHOLMOD's simplicial factor is LDL^T, which goes on past negative pivots: A is
            # positive definite iff every pivot d_k > 0 (D() reads them without a copy of L)
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
