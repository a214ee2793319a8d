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
    normal matrix        lower(J^T J) values (twice), row indices and the per-target contribution lists
    schur: blocks        V, V^-1 (n_e ke x ke blocks), W (one kf x ke block per cell)
    schur: accumulators  the per-chunk private copies of S's blocks and of U's (see
                         :mod:`sparselm.linalg.schur.direct`: one chunk per thread, capped by PRIVATE_S_BYTES)
    schur: structure     cell pairs (for each eliminated block, every pair of its cells) and the
                         temporaries of the pattern build
    S / normal values    lower(S) values (twice) and row indices
    cholesky factor      CHOLMOD's copy of the matrix and its factor: ``factor_nnz`` when given; for
                         sparse_schur the dense triangle of S when small, else the block-graph estimate
                         of :mod:`sparselm.linalg.auto` (needs the layout); otherwise the nonzeros of
                         the matrix itself (a lower bound: the fill-in is not known before analysis)
    dense matrices       the dense solvers' n x n copies (and the dense Jacobian for ``dense``)

Sizes of index sets that depend on which blocks coincide (distinct camera pairs, distinct cells)
are counted exactly when big (one O(cell pairs) pass, O(cells) memory) and otherwise bounded from
above by the number of instances producing them and by the dense size.

:func:`check_memory` compares the total with what the machine has: ``MemAvailable`` of
/proc/meminfo, and the limit of the process's memory cgroup (v1 or v2) when one is set, minus its
current use (not counting reclaimable page cache). If the total exceeds it,
:class:`InsufficientMemoryError` (a MemoryError) says how much is needed, for what, and how much
is available. Set ``SPARSELM_NO_MEMORY_CHECK=1`` to skip the check (an estimate can be wrong).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numba
import numpy as np

from sparselm.core.problem import Problem
from sparselm.util.system_memory import available_memory
from sparselm.util.units import format_bytes

F8 = 8  # bytes per float64 / int64
ENV_SKIP = "SPARSELM_NO_MEMORY_CHECK"
_DEFAULT_PRIVATE_S_BYTES = 512 * 2**20  # as sparselm.linalg.schur.PRIVATE_S_BYTES

SCHUR_SOLVERS = ("sparse_schur", "dense_schur", "iterative_schur")
KNOWN_SOLVERS = ("dense", "sparse_normal_cholesky") + SCHUR_SOLVERS


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

    ``available`` in bytes; None reads it from the system (:func:`available_memory`). Returns the
    available figure used, or None when it is unknown or the check is switched off with
    ``SPARSELM_NO_MEMORY_CHECK=1``.
    """
    if os.environ.get(ENV_SKIP, "").strip() not in ("", "0"):
        return None
    source = ""
    if available is None:
        found = available_memory()
        if found is None:
            return None
        available, source = found
    if estimate.total > available:
        raise InsufficientMemoryError(estimate, available, source)
    return int(available)


# -- the estimate ----------------------------------------------------------------------------------

def _threads() -> int:
    try:
        import numba

        return int(numba.get_num_threads())
    except Exception:  # pragma: no cover - numba always present in practice
        return os.cpu_count() or 1


def _private_s_bytes() -> int:
    try:
        from sparselm.linalg.schur import direct

        return int(getattr(direct, "PRIVATE_S_BYTES", _DEFAULT_PRIVATE_S_BYTES))
    except Exception:  # pragma: no cover
        return _DEFAULT_PRIVATE_S_BYTES


def _lower_dense(n: int) -> int:
    return n * (n + 1) // 2


class _Counts:
    """Counts of one problem, free blocks only (constant blocks get no columns)."""

    def __init__(self, problem: Problem):
        groups = list(problem.parameter_groups.values())
        self.free = {g.name: ~g.constant for g in groups}
        self.n_free = {g.name: int(self.free[g.name].sum()) for g in groups}
        self.size = {g.name: g.block_size for g in groups}
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
        self.diag_lower = sum(self.n_free[n] * _lower_dense(self.size[n]) for n in self.n_free)
        self.diag_lower_f = sum(self.n_free[n] * _lower_dense(self.size[n]) for n in self.n_free
                                if not self.eliminate[n])


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
        from sparselm.linalg import SOLVERS
        from sparselm.linalg.auto import choose_linear_solver
        from sparselm.core.layout import build_layout

        layout = layout if layout is not None else build_layout(problem)
        name, _ = choose_linear_solver(layout, "auto", SOLVERS)
    if name not in KNOWN_SOLVERS:
        raise ValueError(f"estimate_memory: unknown linear solver {name!r}; known: {', '.join(KNOWN_SOLVERS)}")
    threads = _threads() if threads is None else max(1, int(threads))
    c = _Counts(problem)
    items: Dict[str, int] = {}
    notes: List[str] = []

    def add(label: str, n_bytes: float) -> None:
        items[label] = items.get(label, 0) + int(n_bytes)

    # -- evaluator, minimizer, layout ------------------------------------------------------------
    jac = res = lay = 0
    n_rows = 0
    for rg in problem.residual_groups:
        n, m = rg.n_instances, rg.residual_size
        k = sum(rg.residual_type.block_sizes)
        s = rg.residual_type.n_slots
        n_rows += n * m
        jac += n * m * k * F8
        res += 3 * n * m * F8
        sqrt_info = rg.sqrt_information
        sqrt_bytes = sqrt_info.size * F8 if isinstance(sqrt_info, np.ndarray) else 0
        # order, index, data, sqrt_information copies, block ids, use lists (instance, slot), permutation
        lay += (n + n * s + rg.data.size + n * s + 2 * n * s + n) * F8 + sqrt_bytes
        if rg.residual_type.jacobian_kernel is None:
            res += 2 * n * m * F8  # numeric differences: two extra residual evaluations
    add("jacobian", jac)
    add("residuals", res)
    add("parameters and vectors", 2 * c.n_parameters * F8 + 8 * c.n_columns * F8)
    if layout is None:
        add("layout", lay + 3 * c.n_blocks * F8)

    # -- the linear solver ---------------------------------------------------------------------------
    if name == "dense":
        add("dense jacobian", n_rows * c.n_columns * F8 + 3 * jac)
        add("dense matrices", 4 * c.n_columns * c.n_columns * F8)
    elif name == "sparse_normal_cholesky":
        entries = 0  # slot pairs (a, b) with block_a >= block_b: the contributions to lower(J^T J)
        offdiag = 0  # off-diagonal lower(J^T J) entries, one k_a x k_b block per instance at most
        for rg in problem.residual_groups:
            sizes = rg.residual_type.block_sizes
            s = len(sizes)
            entries += rg.n_instances * s * (s + 1) // 2
            offdiag += rg.n_instances * sum(sizes[a] * sizes[b] for a in range(s) for b in range(a))
        nnz = min(c.diag_lower + offdiag, _lower_dense(c.n_columns))
        add("normal matrix", 3 * nnz * F8 + c.n_columns * F8)
        add("normal structure", 3 * entries * F8 + 4 * entries * F8)  # lists + build temporaries
        _factor(add, notes, nnz, factor_nnz, "lower(J^T J)")
    else:
        _schur(add, notes, problem, c, name, threads, factor_nnz, layout)
    return MemoryEstimate(name, items, notes)


def _factor(add, notes, nnz: int, factor_nnz: Optional[int], what: str) -> None:
    """CHOLMOD's copy of the matrix (values and int32 indices) and its factor's values."""
    if factor_nnz is not None:
        add("cholesky factor", int(factor_nnz) * F8 + nnz * (F8 + 4))
    else:
        add("cholesky factor", nnz * F8 + nnz * (F8 + 4))
        notes.append(f"the Cholesky factor is counted as at least the nonzeros of {what} ({nnz}); "
                     f"its fill-in is known only after the symbolic analysis")


def _schur_factor_nnz(layout, n_r: int) -> Optional[int]:
    """Nonzeros of the factor of S: an estimate attached to the layout (``layout.schur_factor_estimate``,
    e.g. by the 'auto' choice), the dense triangle when that is small, else the block-graph estimate
    of :mod:`sparselm.linalg.auto` (CHOLMOD's ordering of the camera co-visibility graph, exact block
    count); None when none is available."""
    attached = getattr(layout, "schur_factor_estimate", None) if layout is not None else None
    if isinstance(attached, dict) and "nnz" in attached:
        return int(attached["nnz"])
    if _lower_dense(n_r) * F8 <= _EXACT_PAIRS_ABOVE:
        return _lower_dense(n_r)
    if layout is None:
        return None
    try:
        from sparselm.linalg.auto import covisibility_blocks
        from sparselm.linalg.schur.factor_estimate import block_factor_nnz

        rows, cols = covisibility_blocks(layout)
        return int(block_factor_nnz(rows, cols, layout.block_size[:layout.n_reduced_blocks])["nnz"])
    except Exception:  # pragma: no cover - an estimate must never stop a solve
        return None


def _schur(add, notes, problem: Problem, c: _Counts, name: str, threads: int, factor_nnz: Optional[int],
           layout) -> None:
    n_f, n_e, kf, ke, n_r = c.n_f, c.n_e, c.kf, c.ke, c.n_reduced_columns
    # free block ids: f-blocks (non-eliminated groups) and e-blocks (eliminated) numbered separately
    f_base, e_base, nf_, ne_ = {}, {}, 0, 0
    for g in problem.parameter_groups.values():
        if c.eliminate[g.name]:
            e_base[g.name], ne_ = ne_, ne_ + c.n_free[g.name]
        else:
            f_base[g.name], nf_ = nf_, nf_ + c.n_free[g.name]
    local = {g.name: np.cumsum(~g.constant) - 1 for g in problem.parameter_groups.values()}
    cells = np.zeros(n_e, dtype=np.int64)  # per e-block: its (instance, free f-slot) uses, an upper bound of its cells
    cell_e, cell_f = [], []
    u_pairs = u_entries = 0  # f-f blocks of instances touching two f-blocks (none in BA)
    for rg in problem.residual_groups:
        f_slots = [j for j, g in enumerate(rg.groups) if not c.eliminate[g]]
        e_slots = [j for j, g in enumerate(rg.groups) if c.eliminate[g]]
        n = rg.n_instances
        u_pairs += n * len(f_slots) * (len(f_slots) - 1) // 2
        u_entries += n * len(f_slots) * (len(f_slots) + 1) // 2
        if not e_slots or not f_slots or n_e == 0:
            continue
        e_group = problem.parameter_groups[rg.groups[e_slots[0]]]
        e_idx = rg.index[:, e_slots[0]]
        e_free = ~e_group.constant[e_idx]
        e_id = (e_base[e_group.name] + local[e_group.name][e_idx]).astype(np.int32 if n_e < 2**31 else np.int64)
        for jf in f_slots:
            f_group = problem.parameter_groups[rg.groups[jf]]
            f_idx = rg.index[:, jf]
            ok = e_free & ~f_group.constant[f_idx]
            cells += np.bincount(e_id[ok], minlength=n_e)
            cell_e.append(e_id[ok])
            cell_f.append((f_base[f_group.name] + local[f_group.name][f_idx[ok]]).astype(e_id.dtype))
    n_cells = int(cells.sum())
    n_pairs = int(np.sum(cells * (cells + 1) // 2))
    dense_targets = _lower_dense(n_f)
    bound = n_f + int(np.sum(cells * (cells - 1) // 2)) + u_pairs
    if min(bound, dense_targets) * kf * kf * F8 <= _EXACT_PAIRS_ABOVE or not cell_e:
        n_targets = min(bound, dense_targets)
        exact = False
    else:  # count the distinct f-block pairs that share an e-block (O(pairs) time, O(cells) memory)
        e_all = np.concatenate(cell_e)
        f_all = np.concatenate(cell_f)
        del cell_e[:], cell_f[:]
        e_ptr, e_to_f = _csr(e_all, f_all, n_e)
        f_ptr, f_to_e = _csr(f_all, e_all, n_f)
        del e_all, f_all
        shared = int(_distinct_lower_pairs(f_ptr, f_to_e, e_ptr, e_to_f, max(1, min(threads, 64))))
        n_targets = min(n_f + shared + u_pairs, dense_targets)
        exact = u_pairs == 0
    nnz_s = min(c.diag_lower_f + (n_targets - n_f) * kf * kf, _lower_dense(n_r))
    per_chunk = max(n_targets * kf * kf * F8, 1)
    n_chunks = max(1, min(threads, _private_s_bytes() // per_chunk))
    max_cells = int(cells.max(initial=0))
    n_u = min(n_f + u_pairs, dense_targets)  # U's own blocks (BA: the camera diagonal)

    add("schur: point blocks", (2 * n_e * ke * ke + 2 * n_e * ke) * F8)
    add("schur: cell blocks", n_cells * kf * ke * F8 + 4 * n_cells * F8)
    add("schur: accumulators", n_chunks * (per_chunk + n_u * kf * kf * F8) + 3 * n_chunks * n_r * F8
        + n_chunks * max_cells * ke * kf * F8)
    add("schur: structure", 6 * n_pairs * F8 + 2 * n_e * F8 + 3 * u_entries * F8)
    add("S values", 3 * nnz_s * F8 + n_r * F8)
    notes.append(f"{n_chunks} private S accumulator(s) of {format_bytes(per_chunk)} for {threads} thread(s); "
                 f"{n_pairs} cell pairs; S has {'' if exact else 'at most '}{n_targets} blocks")
    if name == "sparse_schur":
        _factor(add, notes, nnz_s, factor_nnz if factor_nnz is not None else _schur_factor_nnz(layout, n_r), "S")
    elif name == "dense_schur":
        add("dense matrices", 2 * n_r * n_r * F8)
    else:  # iterative_schur (implicit, the default): preconditioner blocks and per-thread copies, CG vectors,
        # U's blocks as a symmetric CSR (values, column indices, source positions)
        pc_threads = max(1, min(threads, n_e))
        add("iterative solver", (pc_threads + 1) * n_f * kf * kf * F8 + 2 * pc_threads * n_r * F8
            + 8 * n_r * F8 + n_e * ke * F8 + 2 * n_u * kf * kf * 3 * F8)


#: below this many bytes for one copy of S's blocks the dense bound is used instead of an exact count
_EXACT_PAIRS_ABOVE = 64 * 2**20


@numba.njit(cache=True)
def _csr(keys, values, n_keys):
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
def _distinct_lower_pairs(f_ptr, f_to_e, e_ptr, e_to_f, n_chunks):
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
