"""Estimate the memory a solve will allocate, before allocating it, and refuse clearly if it cannot fit.

A problem too big for the machine should end with a message naming the numbers, not with the
process killed by the kernel's out-of-memory killer half-way through the setup. The estimate is
computed from counts only (instances, slots, block sizes, and per eliminated block the number of
residual blocks touching it: one ``bincount``), so it is cheap next to what it estimates:

    jacobian             per residual group n * m * K doubles (K = sum of its block sizes)
    residuals            three (n, m) arrays per group (current, trial, J * step)
    parameters/vectors   two copies of the parameters (best and trial point), a few column vectors
    layout               the per-group permuted index/data copies and block-use lists (only when no
                         layout is given: a layout that exists is already counted by the system)
    the linear solver    what its ``memory`` function of the registry adds (see each solver's module,
                         :mod:`sparselm.linalg.memory_model` and :mod:`sparselm.linalg.schur.memory`):
                         normal matrix or Schur blocks, accumulators and structure, S's values, the
                         Cholesky factor (CHOLMOD's copy of the matrix and its factor: ``factor_nnz``
                         when given, e.g. the ``auto`` choice's estimate; otherwise a lower bound or
                         an estimate, as its notes say), the dense solvers' n x n copies

:func:`check_memory` compares the total with what the machine has: ``MemAvailable`` of
/proc/meminfo, and the limit of the process's memory cgroup (v1 or v2) when one is set, minus its
current use (not counting reclaimable page cache). If the total exceeds it,
:class:`InsufficientMemoryError` (a MemoryError) says how much is needed, for what, and how much
is available. Set ``SPARSELM_NO_MEMORY_CHECK=1`` to skip the check (an estimate can be wrong).
Estimates below :data:`CHECK_MIN_BYTES` are not compared with the system's figures: reading them
(/proc/meminfo and the cgroup's files) took 0.1-0.2 ms, 5% of a small COLMAP model's whole solve, and
a machine without that much memory available cannot serve the interpreter's own next allocations.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numba
import numpy as np

from sparselm.core.layout import build_layout
from sparselm.core.problem import Problem
from sparselm.linalg import registry
from sparselm.linalg.auto import choose_linear_solver
from sparselm.linalg.memory_model import F8, MemoryContext, ProblemCounts
from sparselm.util.system_memory import available_memory
from sparselm.util.units import format_bytes

ENV_SKIP = "SPARSELM_NO_MEMORY_CHECK"
#: estimates below this many bytes are not compared with the system's available memory (module docstring)
CHECK_MIN_BYTES = 64 * 2**20


@dataclass
class MemoryEstimate:
    """Bytes a solve will allocate, per item (label -> bytes, largest first) and in total.

    ``linear_solver`` is the solver the estimate is for; ``notes`` say what is bounded or
    assumed (e.g. that the factor is a lower bound because no symbolic analysis was given).
    """

    linear_solver: str
    items: Dict[str, int]
    notes: List[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return int(sum(self.items.values()))

    def describe(self, max_items: int = 5) -> str:
        """'about 31.2 GiB (jacobian 12.1 GiB, schur: accumulators 8.00 GiB, ...)'."""
        ranked = sorted(((v, k) for k, v in self.items.items() if v > 0), reverse=True)
        shown = [f"{k} {format_bytes(v)}" for v, k in ranked[:max_items]]
        rest = sum(v for v, _ in ranked[max_items:])
        if rest:
            shown.append(f"other {format_bytes(rest)}")
        return f"about {format_bytes(self.total)} ({', '.join(shown)})"

    def to_dict(self) -> dict:
        return {"linear_solver": self.linear_solver, "total_bytes": self.total, "items": dict(self.items),
                "notes": list(self.notes)}


class InsufficientMemoryError(MemoryError):
    """The estimated memory of a solve exceeds what is available; nothing big was allocated.

    ``estimate`` (a :class:`MemoryEstimate`), ``available`` (bytes) and ``source`` (where the
    available figure comes from) are attributes; the message names all three.
    """

    def __init__(self, estimate: MemoryEstimate, available: int, source: str = ""):
        self.estimate = estimate
        self.available = int(available)
        self.source = source
        where = f" ({source})" if source else ""
        super().__init__(f"not enough memory for linear solver {estimate.linear_solver!r}: this problem needs "
                         f"{estimate.describe()}; {format_bytes(available)} available{where}. "
                         f"{_advice(estimate)}or set {ENV_SKIP}=1 to try anyway")


def _advice(estimate: MemoryEstimate) -> str:
    """What would need less memory, judged by the biggest items of the estimate."""
    total = max(estimate.total, 1)
    share = {k: v / total for k, v in estimate.items.items()}
    tips = ["Use a machine with more memory"]
    if share.get("schur: accumulators", 0.0) >= 0.2:
        tips.append("use fewer threads (each keeps a private copy of S)")
    if estimate.linear_solver != "iterative_schur" and (share.get("cholesky factor", 0.0) + share.get(
            "dense matrices", 0.0) + share.get("dense jacobian", 0.0)) >= 0.2:
        tips.append("use linear_solver='iterative_schur' (no factorization; needs an eliminated group)")
    return ", ".join(tips) + ", "


def check_memory(estimate: MemoryEstimate, available: Optional[int] = None) -> Optional[int]:
    """Raise :class:`InsufficientMemoryError` if ``estimate.total`` exceeds the memory available.

    ``available`` in bytes; None reads it from the system (:func:`available_memory`) unless the estimate
    is below :data:`CHECK_MIN_BYTES`. Returns the available figure used, or None when it is unknown,
    not read, or the check is switched off with ``SPARSELM_NO_MEMORY_CHECK=1``.
    """
    if os.environ.get(ENV_SKIP, "").strip() not in ("", "0"):
        return None
    source = ""
    if available is None:
        if estimate.total < CHECK_MIN_BYTES:
            return None
        found = available_memory()
        if found is None:
            return None
        available, source = found
    if estimate.total > available:
        raise InsufficientMemoryError(estimate, available, source)
    return int(available)


# -- the estimate ----------------------------------------------------------------------------------

def estimate_memory(problem: Problem, linear_solver_name: str, layout=None, *, threads: Optional[int] = None,
                    factor_nnz: Optional[int] = None) -> MemoryEstimate:
    """Estimate the bytes :func:`sparselm.solve` will allocate for ``problem`` with this linear solver.

    layout       the problem's :class:`~sparselm.core.layout.Layout` if already built (then it is not
                 counted, and 'auto' is resolved with it; without one, 'auto' builds one).
    threads      numba threads the solve will use (default: numba's current setting); the Schur
                 solvers keep one private accumulator of S per thread, up to a byte cap.
    factor_nnz   nonzeros of the Cholesky factor from a symbolic analysis, when known.

    Cheap: reads counts and does one bincount per residual group over its eliminated-block index.
    """
    name = linear_solver_name
    if name == "auto":
        layout = layout if layout is not None else build_layout(problem)
        choice = choose_linear_solver(layout, "auto", problem)
        name = choice.name
        if factor_nnz is None and choice.factor_estimate:
            factor_nnz = int(choice.factor_estimate["nnz"])
    spec = registry.get(name)
    threads = int(numba.get_num_threads()) if threads is None else max(1, int(threads))
    c = ProblemCounts(problem)
    ctx = MemoryContext(problem, c, threads, layout, factor_nnz)

    # -- evaluator, minimizer, layout ------------------------------------------------------------
    res = lay = 0
    for rg in problem.residual_groups:
        n, m = rg.n_instances, rg.residual_size
        s = rg.residual_type.n_slots
        sqrt_info = rg.sqrt_information
        sqrt_bytes = sqrt_info.size * F8 if isinstance(sqrt_info, np.ndarray) else 0
        matrix_weight = isinstance(sqrt_info, np.ndarray) and sqrt_info.ndim == 3
        res += (3 if matrix_weight else 2) * n * m * F8  # residuals, trial residuals, whitening scratch
        # order, index, data, sqrt_information copies, block ids, use lists (instance, slot), permutation
        lay += (n + n * s + rg.data.size + n * s + 2 * n * s + n) * F8 + sqrt_bytes
        if rg.residual_type.jacobian_kernel is None:
            res += 2 * n * m * F8  # numeric differences: two extra residual evaluations
    ctx.add("jacobian", c.jacobian_bytes)
    ctx.add("residuals", res)
    ctx.add("parameters and vectors", 2 * c.n_parameters * F8 + 8 * c.n_columns * F8)
    if layout is None:
        ctx.add("layout", lay + 3 * c.n_blocks * F8)
    spec.memory(ctx)  # the linear solver's own (see its module)
    return MemoryEstimate(name, ctx.items, ctx.notes)


