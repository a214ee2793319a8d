"""The ``auto`` linear-solver choice.

    no eliminated group, or Schur not applicable  -> dense (<= 300 columns) or sparse_normal_cholesky
    reduced system <= 200 columns                 -> dense_schur (LAPACK on a small dense S)
    factoring S would cost > 2e10 flops, or its
    factor would need > 1/4 of the free memory     -> iterative_schur (PCG, S never formed)
    otherwise                                      -> sparse_schur (CHOLMOD on S)

The factor estimate orders S's *block* graph (the camera co-visibility graph: cameras sharing a
point) with CHOLMOD and counts the factor's blocks exactly (see
:func:`sparselm.linalg.schur.iterative.block_factor_nnz`), which is cheap even when the scalar S
would be huge. The 2e10 threshold: dense factors ran at ~32 GFLOP/s here and one PCG iteration of
the implicit Schur product costs about one pass over W, so past ~1 s per factorization PCG wins
(measured: 0.86 s vs 28.3 s per LM iteration on a near-dense 1500-camera problem).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import scipy.sparse as sp

from sparselm.core.layout import Layout

DENSE_MAX_COLUMNS = 300
DENSE_SCHUR_MAX_COLUMNS = 200
ITERATIVE_FLOPS = 2e10


def covisibility_blocks(layout: Layout) -> Tuple[np.ndarray, np.ndarray]:
    """(row, col) f-block pairs, row >= col, that share an eliminated block or a residual."""
    n_f = layout.n_reduced_blocks
    n_e = layout.n_blocks - n_f
    rows, cols = [], []
    for rl in layout.residuals:
        e = np.where(rl.block >= n_f, rl.block - n_f, -1).max(axis=1)
        for j in range(rl.block.shape[1]):
            f = rl.block[:, j]
            ok = (f >= 0) & (f < n_f) & (e >= 0)
            rows.append(e[ok])
            cols.append(f[ok])
    incidence = sp.csr_matrix((np.ones(sum(r.size for r in rows)), (np.concatenate(rows), np.concatenate(cols))),
                              shape=(n_e, n_f))
    co = sp.tril(incidence.T @ incidence).tocoo()
    return co.row.astype(np.int64), co.col.astype(np.int64)


def _available_bytes() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


def choose_linear_solver(layout: Layout, requested: str, available: dict) -> Tuple[str, str]:
    """Resolve ``requested`` ('auto' or a name in ``available``); returns (name, reason)."""
    if requested != "auto":
        if requested not in available:
            raise ValueError(f"linear solver {requested!r} is not available; available: {', '.join(sorted(available))}")
        return requested, "as requested"
    from sparselm.linalg.schur.structure import schur_applicable

    if layout.n_reduced_columns == layout.n_columns or not schur_applicable(layout):
        if layout.n_columns <= DENSE_MAX_COLUMNS:
            return "dense", f"no Schur elimination; {layout.n_columns} columns <= {DENSE_MAX_COLUMNS}"
        return "sparse_normal_cholesky", "no Schur elimination"
    if layout.n_reduced_columns <= DENSE_SCHUR_MAX_COLUMNS:
        return "dense_schur", f"reduced system of {layout.n_reduced_columns} columns <= {DENSE_SCHUR_MAX_COLUMNS}"
    from sparselm.linalg.schur.factor_estimate import block_factor_nnz

    rows, cols = covisibility_blocks(layout)
    est = block_factor_nnz(rows, cols, layout.block_size[:layout.n_reduced_blocks])
    layout.schur_factor_estimate = est  # reused by the memory estimate
    too_big = 8.0 * est["nnz"] > 0.25 * _available_bytes()
    if est["flops"] > ITERATIVE_FLOPS or too_big:
        return "iterative_schur", (f"factor of S estimated at {est['nnz']:.3g} nonzeros, {est['flops']:.3g} flops: "
                                   "too costly to factor each trial")
    return "sparse_schur", f"factor of S estimated at {est['nnz']:.3g} nonzeros, {est['flops']:.3g} flops"
