"""The ``auto`` linear-solver choice.

    no eliminated group, or Schur not applicable  -> dense (<= 300 columns) or sparse_normal_cholesky
    reduced system <= 200 columns                 -> dense_schur (LAPACK on a small dense S)
    factoring S would cost > 2e10 flops, or its
    factor would need > 1/4 of the free memory,
    or a lower bound of sparse_schur's memory
    (Jacobian, W, the cell pairs) > 1/2 of it      -> iterative_schur (PCG, S never formed)
    (free memory: MemAvailable, or what a memory cgroup limit leaves, whichever is smaller)
    S's factor >= 90% dense and <= 2000 columns    -> dense_schur (every camera pair shares points, as in
                                                      small SfM models: LAPACK on the dense S beats
                                                      CHOLMOD's supernodes, 7.5 vs 31 ms per factorization
                                                      on a 736-column S, 2 loaded cores)
    otherwise                                      -> sparse_schur (CHOLMOD on S)

The memory rule is tested first: it reads one index column, while the factor estimate builds the
co-visibility graph (11 s of a 15 s set-up at 2.9 x 10^7 observations); a choice made by it carries
no factor estimate.

The factor estimate orders S's *block* graph (the camera co-visibility graph: cameras sharing a
point) with CHOLMOD and counts the factor's blocks exactly (see
:func:`sparselm.linalg.schur.factor_estimate.block_factor_nnz`), which is cheap even when the scalar S
would be huge. The 2e10 threshold: dense factors ran at ~32 GFLOP/s here and one PCG iteration of
the implicit Schur product costs about one pass over W, so past ~1 s per factorization PCG wins
(measured: 0.86 s vs 28.3 s per LM iteration on a near-dense 1500-camera problem). The memory rule
needs the problem (track lengths) and is skipped without one: sparse_schur keeps W (kf x ke doubles
per observation), the Jacobian and, per eliminated block with t observations, t (t + 1) / 2 cell pairs
(six 8-byte entries each while S's pattern is built); iterative_schur for bundle adjustment keeps the
Jacobian and about 4 bytes more per observation (measured ~370 bytes per observation in all, against
~750 for sparse_schur).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from sparselm.core.layout import Layout
from sparselm.linalg import registry
from sparselm.linalg.schur import direct
from sparselm.linalg.schur.factor_estimate import estimate_schur_factor
from sparselm.linalg.schur.structure import schur_applicable
from sparselm.util.system_memory import available_memory

DENSE_MAX_COLUMNS = 300
DENSE_SCHUR_MAX_COLUMNS = 200
ITERATIVE_FLOPS = 2e10
DENSE_FILL = 0.9


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


def sparse_schur_bytes_lower_bound(problem) -> float:
    """Bytes sparse_schur needs at least: the Jacobian, W (one kf x ke block per observation of an
    eliminated block) and the cell pairs of S's pattern build (6 x 8 bytes per pair)."""
    import numpy as np

    eliminated = {g.name: g for g in problem.parameter_groups.values() if g.eliminate}
    kf = max((g.block_size for g in problem.parameter_groups.values() if not g.eliminate), default=0)
    total = 0.0
    for rg in problem.residual_groups:
        total += rg.n_instances * rg.residual_size * sum(rg.residual_type.block_sizes) * 8.0
        for j, name in enumerate(rg.groups):
            if name in eliminated:
                track = np.bincount(rg.index[:, j], minlength=eliminated[name].n_blocks).astype(np.float64)
                total += rg.n_instances * kf * eliminated[name].block_size * 8.0 + 48.0 * float(
                    np.sum(track * (track + 1) / 2))
    return total


def choose_linear_solver(layout: Layout, requested: str, problem=None,
                         available: Optional[float] = None) -> LinearSolverChoice:
    """Resolve ``requested`` ('auto' or a registered name, see :mod:`sparselm.linalg.registry`).
    ``problem`` enables the memory rule; ``available`` (bytes) overrides :func:`available_bytes`."""
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
    free = available_bytes() if available is None else float(available)
    if problem is not None:  # first: it reads one index column, the factor estimate builds the co-visibility graph
        need = sparse_schur_bytes_lower_bound(problem)
        if need > 0.5 * free:
            return LinearSolverChoice("iterative_schur", f"sparse_schur would need more than {need / 2**30:.1f} GiB, "
                                                         f"over half of the {free / 2**30:.1f} GiB free")
    est = estimate_schur_factor(layout)
    too_big = 8.0 * est["nnz"] > 0.25 * free
    if est["flops"] > ITERATIVE_FLOPS or too_big:
        return LinearSolverChoice("iterative_schur", f"factor of S estimated at {est['nnz']:.3g} nonzeros, "
                                                     f"{est['flops']:.3g} flops: too costly to factor each trial", est)
    n = layout.n_reduced_columns
    if n <= direct.DENSE_SCHUR_MAX_COLUMNS and est["nnz"] >= DENSE_FILL * n * (n + 1) / 2:
        return LinearSolverChoice("dense_schur", f"factor of S estimated at {est['nnz']:.3g} nonzeros, "
                                                 f">= {DENSE_FILL:g} of dense, {n} columns", est)
    return LinearSolverChoice("sparse_schur", f"factor of S estimated at {est['nnz']:.3g} nonzeros, "
                                              f"{est['flops']:.3g} flops", est)
