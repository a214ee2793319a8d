"""The one module that talks to CHOLMOD (scikit-sparse 0.4 API).

A :class:`CholmodFactor` is analysed once for a fixed sparsity pattern (fill-reducing ordering
and, for the supernodal method, the supernodes), then numerically refactorised in place for each
new set of values. A matrix that is not positive definite is reported as ``False`` from
:meth:`factorize`, never as an exception, so the LM loop can answer it with more damping.
Only the lower triangle of the CSC matrix given is read.

Simplicial or supernodal. ``mode="auto"`` decides from the factor's shape before any numeric work:
the simplicial analysis gives the ordering, :func:`sparselm.linalg.symbolic.factor_statistics` the
column counts c_k of L under it, and the factorization is supernodal only when the flops per entry
of L, sum c_k^2 / sum c_k, reach :data:`SUPERNODAL_MIN_FLOPS_PER_NNZ` (80). CHOLMOD's own switch is
40; measured on an Intel Xeon with one BLAS thread (benchmarks/bench_factorization_mode.py, results
in benchmarks/results/factorization_mode.md) the full normal matrices of BAL problems (3x3 point
blocks, 41-53 flops per entry) factor 10-38% faster simplicially, the 2-D pose graph intel (17) 2x,
parking-garage (52) equally fast, while from ~95 on (smallGrid3D, problem-49's J^T J at 133,
sphere2500 at 253, the Schur complements S of bundle adjustment at 96-294) supernodal is as fast or
up to 6x faster.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse as sp

from sparselm.linalg.symbolic import FactorStatistics, factor_statistics

ORDERINGS = ("amd", "metis", "nesdis", "natural", "colamd", "best", "default")
MODES = ("supernodal", "simplicial", "auto")

#: ``mode="auto"`` factors supernodally when sum c_k^2 / sum c_k (c_k: entries of column k of L) is at least this
SUPERNODAL_MIN_FLOPS_PER_NNZ = 80.0


def _cholmod():
    from sksparse import cholmod  # imported lazily: the import loads the system BLAS

    return cholmod


class CholmodFactor:
    """Symbolic analysis once, numeric factorization per call, solves with the current factor.

    ``mode`` is the method used ("supernodal" or "simplicial"; "auto" resolved as the module says),
    ``requested_mode`` the one asked for; ``statistics`` (:class:`FactorStatistics`) is set when
    "auto" had to count the factor, else None.
    """

    def __init__(self, lower: sp.csc_matrix, ordering: str = "amd", mode: str = "supernodal"):
        if ordering not in ORDERINGS:
            raise ValueError(f"unknown ordering {ordering!r}; choose one of {', '.join(ORDERINGS)}")
        if mode not in MODES:
            raise ValueError(f"unknown factorization {mode!r}; choose one of {', '.join(MODES)}")
        cholmod = _cholmod()
        self.ordering = ordering
        self.requested_mode = mode
        self.statistics: FactorStatistics | None = None
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cholmod.CholmodTypeConversionWarning)
            if mode == "auto":
                self._factor = cholmod.analyze(lower, mode="simplicial", ordering_method=ordering)
                self.statistics = factor_statistics(lower.indptr, lower.indices, self._factor.P())
                mode = "supernodal" if self.statistics.flops_per_nnz >= SUPERNODAL_MIN_FLOPS_PER_NNZ else "simplicial"
                if mode == "supernodal":  # the same (deterministic) ordering, now with supernodes
                    self._factor = cholmod.analyze(lower, mode=mode, ordering_method=ordering)
            else:
                self._factor = cholmod.analyze(lower, mode=mode, ordering_method=ordering)
        self.mode = mode
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
        if self.mode == "simplicial" and not np.all(self._factor.D() > 0.0):
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
