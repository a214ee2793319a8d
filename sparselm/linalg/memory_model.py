"""The memory model of the linear solvers: counts of a problem and the helpers each solver's
``memory(ctx)`` function (declared in its :class:`~sparselm.linalg.base.LinearSolverSpec`) uses to
add what it allocates, in bytes, to a :class:`MemoryContext`. :func:`sparselm.lm.memory.estimate_memory`
adds the evaluator's and minimiser's arrays and compares the total with the machine's memory.

Counts are of free blocks only (constant blocks get no columns). Sizes of index sets that depend on
which blocks coincide (distinct kept-block pairs, distinct cells) are counted exactly when big (one
O(cell pairs) pass, O(cells) memory) and otherwise bounded from above by the number of instances
producing them and by the dense size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numba
import numpy as np

from sparselm.core.layout import Layout
from sparselm.core.problem import Problem

F8 = 8  # bytes per float64 / int64
#: below this many bytes for one copy of S's blocks the dense bound is used instead of an exact count
EXACT_PAIRS_ABOVE = 64 * 2**20


def lower_dense(n: int) -> int:
    """Entries of the lower triangle (diagonal included) of an n x n matrix."""
    return n * (n + 1) // 2


class ProblemCounts:
    """Counts of one problem, free blocks only (constant blocks get no columns; a block has as many
    columns as its manifold's tangent size); n_rows: residual rows; jacobian_bytes: the Jacobian
    blocks' values (tangent ones, plus the ambient buffer of slots the evaluator chains with a
    plus-Jacobian)."""

    def __init__(self, problem: Problem):
        groups = list(problem.parameter_groups.values())
        self.free = {g.name: ~g.constant for g in groups}
        self.n_free = {g.name: int(self.free[g.name].sum()) for g in groups}
        self.size = {g.name: g.tangent_size for g in groups}  # columns per free block
        self.eliminate = {g.name: bool(g.eliminate) for g in groups}
        self.n_columns = sum(self.n_free[n] * self.size[n] for n in self.n_free)
        self.n_reduced_columns = sum(self.n_free[n] * self.size[n] for n in self.n_free if not self.eliminate[n])
        self.n_blocks = sum(self.n_free.values())
        self.n_f = sum(self.n_free[n] for n in self.n_free if not self.eliminate[n])
        self.n_e = self.n_blocks - self.n_f
        self.n_parameters = problem.n_parameters
        f_sizes = [self.size[n] for n in self.n_free if not self.eliminate[n] and self.n_free[n]]
        e_sizes = [self.size[n] for n in self.n_free if self.eliminate[n] and self.n_free[n]]
        self.kf = max(f_sizes, default=0)
        self.ke = max(e_sizes, default=0)
        self.diag_lower = sum(self.n_free[n] * lower_dense(self.size[n]) for n in self.n_free)
        self.diag_lower_f = sum(self.n_free[n] * lower_dense(self.size[n]) for n in self.n_free
                                if not self.eliminate[n])
        self.n_rows = sum(rg.n_instances * rg.residual_size for rg in problem.residual_groups)
        self.jacobian_bytes = sum(rg.n_instances * rg.residual_size * self.jacobian_width(problem, rg) * F8
                                  for rg in problem.residual_groups)

    def jacobian_width(self, problem: Problem, rg) -> int:
        """Columns of residual group ``rg``'s Jacobian arrays: tangent sizes plus ambient buffers."""
        width = 0
        for j, name in enumerate(rg.groups):
            group = problem.parameter_groups[name]
            width += self.size[name]
            if not group.manifold.euclidean and rg.residual_type.slot_manifold(j) is None:
                width += group.block_size
        return width


@dataclass
class MemoryContext:
    """What a solver's memory function reads (problem, counts, threads, layout when built, the
    factor's nonzeros when known) and writes (``items``: label -> bytes, ``notes``)."""

    problem: Problem
    counts: ProblemCounts
    threads: int
    layout: Optional[Layout] = None
    factor_nnz: Optional[int] = None
    items: Dict[str, int] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def add(self, label: str, n_bytes: float) -> None:
        """Add ``n_bytes`` to the item ``label``."""
        self.items[label] = self.items.get(label, 0) + int(n_bytes)


def factor_items(ctx: "MemoryContext", nnz: int, factor_nnz: Optional[int], what: str) -> None:
    """CHOLMOD's copy of the matrix (values and int32 indices) and its factor's values."""
    if factor_nnz is not None:
        ctx.add("cholesky factor", int(factor_nnz) * F8 + nnz * (F8 + 4))
    else:
        ctx.add("cholesky factor", nnz * F8 + nnz * (F8 + 4))
        ctx.notes.append(f"the Cholesky factor is counted as at least the nonzeros of {what} ({nnz}); "
                     f"its fill-in is known only after the symbolic analysis")


@numba.njit(cache=True)
def csr_by_key(keys, values, n_keys):
    """Counting sort of ``values`` by ``keys`` in [0, n_keys): (ptr, sorted values)."""
    ptr = np.zeros(n_keys + 1, dtype=np.int64)
    for i in range(keys.shape[0]):
        ptr[keys[i] + 1] += 1
    for k in range(n_keys):
        ptr[k + 1] += ptr[k]
    cursor = ptr[:-1].copy()
    out = np.empty(values.shape[0], dtype=values.dtype)
    for i in range(keys.shape[0]):
        k = keys[i]
        out[cursor[k]] = values[i]
        cursor[k] += 1
    return ptr, out


@numba.njit(parallel=True, cache=True)
def distinct_lower_pairs(f_ptr, f_to_e, e_ptr, e_to_f, n_chunks):
    """Number of distinct pairs (a, b), b < a, of f-blocks that share an e-block (marker per chunk)."""
    n_f = f_ptr.shape[0] - 1
    counts = np.zeros(n_chunks, dtype=np.int64)
    marks = np.full((n_chunks, max(n_f, 1)), -1, dtype=np.int64)
    step = (n_f + n_chunks - 1) // n_chunks
    for t in numba.prange(n_chunks):
        mark = marks[t]
        total = 0
        for a in range(t * step, min(n_f, (t + 1) * step)):
            for q in range(f_ptr[a], f_ptr[a + 1]):
                e = f_to_e[q]
                for r in range(e_ptr[e], e_ptr[e + 1]):
                    b = e_to_f[r]
                    if b < a and mark[b] != a:
                        mark[b] = a
                        total += 1
        counts[t] = total
    return counts.sum()
