"""The ``auto`` linear-solver choice.

    no eliminated group, or Schur not applicable  -> dense (<= 300 columns) or sparse_normal_cholesky
    reduced system <= 200 columns                 -> dense_schur (LAPACK on a small dense S)
    factoring S would cost > 2e10 flops, or its
    factor would need > 1/4 of the free memory     -> iterative_schur (PCG, S never formed)
    (free memory: MemAvailable, or what a memory cgroup limit leaves, whichever is smaller)
    otherwise                                      -> sparse_schur (CHOLMOD on S)

The factor estimate orders S's *block* graph (the camera co-visibility graph: cameras sharing a
point) with CHOLMOD and counts the factor's blocks exactly (see
:func:`sparselm.linalg.schur.factor_estimate.block_factor_nnz`), which is cheap even when the scalar S
would be huge. The 2e10 threshold: dense factors ran at ~32 GFLOP/s here and one PCG iteration of
the implicit Schur product costs about one pass over W, so past ~1 s per factorization PCG wins
(measured: 0.86 s vs 28.3 s per LM iteration on a near-dense 1500-camera problem).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from sparselm.core.layout import Layout
from sparselm.linalg import registry
from sparselm.linalg.schur.factor_estimate import estimate_schur_factor
from sparselm.linalg.schur.structure import schur_applicable
from sparselm.util.system_memory import available_memory

DENSE_MAX_COLUMNS = 300
DENSE_SCHUR_MAX_COLUMNS = 200
ITERATIVE_FLOPS = 2e10


class LinearSolverChoice(NamedTuple):
    """The resolved linear solver, why, and the estimate of S's factor when one was computed
    (:func:`~sparselm.linalg.schur.factor_estimate.block_factor_nnz`'s dict, else None)."""

    name: str
    reason: str
    factor_estimate: Optional[dict] = None


def available_bytes() -> float:
    """Memory this process may still allocate (:func:`sparselm.util.system_memory.available_memory`,
    cgroup limits included); infinite where it cannot be read."""
    found = available_memory()
    return float(found[0]) if found is not None else float("inf")


def choose_linear_solver(layout: Layout, requested: str) -> LinearSolverChoice:
    """Resolve ``requested`` ('auto' or a registered name, see :mod:`sparselm.linalg.registry`)."""
    if requested != "auto":
        registry.get(requested)  # ValueError naming the registered ones
        return LinearSolverChoice(requested, "as requested")
    if layout.n_reduced_columns == layout.n_columns or not schur_applicable(layout):
        if layout.n_columns <= DENSE_MAX_COLUMNS:
            return LinearSolverChoice("dense", f"no Schur elimination; {layout.n_columns} columns <= "
                                               f"{DENSE_MAX_COLUMNS}")
        return LinearSolverChoice("sparse_normal_cholesky", "no Schur elimination")
    if layout.n_reduced_columns <= DENSE_SCHUR_MAX_COLUMNS:
        return LinearSolverChoice("dense_schur", f"reduced system of {layout.n_reduced_columns} columns <= "
                                                 f"{DENSE_SCHUR_MAX_COLUMNS}")
    est = estimate_schur_factor(layout)
    too_big = 8.0 * est["nnz"] > 0.25 * available_bytes()
    if est["flops"] > ITERATIVE_FLOPS or too_big:
        return LinearSolverChoice("iterative_schur", f"factor of S estimated at {est['nnz']:.3g} nonzeros, "
                                                     f"{est['flops']:.3g} flops: too costly to factor each trial", est)
    return LinearSolverChoice("sparse_schur", f"factor of S estimated at {est['nnz']:.3g} nonzeros, "
                                              f"{est['flops']:.3g} flops", est)
