"""Where a solve spends its time and memory, and why: ``profile(problem) -> Profile``.

A profile solves the problem once (``iterations`` LM iterations at most) and reports, next to the
solver's own :class:`~sparselm.summary.Summary`:

* problem sizes and sparsity: nnz of J, of lower(H) (the normal matrix J^T J) and, when a group is
  eliminated, of lower(S) (the reduced camera matrix of the Schur complement);
* the Cholesky factor of the matrix the solver factors (S for the Schur solvers, H otherwise), as
  CHOLMOD's analysis gives it for the solver's ordering: nnz(L), fill-in nnz(L)/nnz(lower), flops,
  supernodal or simplicial, ordering + symbolic analysis time, numeric factorization time; and the
  same for each ordering in ``orderings`` (a comparison; the best is the one with the least fill);
* for bundle-adjustment-like problems, the co-visibility graph of the kept blocks (cameras): two
  cameras are adjacent when they see a common point;
* time per phase per iteration from the Summary, with model flop counts where the work is known
  from the structure alone, and the JIT cost measured separately;
* peak memory and the size of the big arrays; the BLAS library CHOLMOD uses, thread counts.

Honesty notes, repeated in the report:

* The orderings and factor statistics are computed on a matrix with the exact sparsity pattern of
  lower(S) (or lower(H)) and diagonally dominant values (so it is positive definite). CHOLMOD's
  ordering, symbolic analysis, nnz(L) and flop count depend on the pattern only, and so does the
  work of a numeric factorization, so these numbers are those of the solver's own matrix.
* "jit" is the extra time of a first one-iteration solve over an identical second one, in this
  process: numba compiling the kernels when its on-disk cache is cold, or loading them from the
  cache when it is warm (``jit.disk_cache_warm_before`` says which). ``cold_jit=True`` also times
  a tiny bundle-adjustment solve in a fresh Python with an empty numba cache: the true compile time.
* Model flops count multiply-adds as 2 flops and follow the math (e.g. one kf x kf update of S per
  pair of cameras that share a point), not the exact instruction stream of the kernels.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp

from sparselm import diagnostics
from sparselm.problem import Problem

PROFILE_SCHEMA_VERSION = 1
DEFAULT_ITERATIONS = 10
DEFAULT_ORDERINGS = ("amd", "metis", "nesdis", "natural")
#: phases in the order they occur in an iteration; others found in a Summary follow them.
PHASE_ORDER = ("residual", "jacobian", "gradient", "assembly", "schur_complement", "elimination", "preconditioner",
               "factorization", "solve", "cg", "back_substitution")
SCHUR_SOLVERS = ("sparse_schur", "dense_schur", "iterative_schur")
CHOLMOD_SOLVERS = ("sparse_schur", "sparse_normal_cholesky")
DENSE_FACTOR_SOLVERS = ("dense", "dense_schur")
#: the natural ordering is not compared on matrices with more columns (its fill is unbounded: up to a
#: dense factor, n^3/3 flops); it is still used when asked for as the solver's ordering.
NATURAL_MAX_COLUMNS = 2500


# ---------------------------------------------------------------------------------------------
# The result

def _json(metadata: bool = True):
    return {"json": metadata}


@dataclass
class Profile:
    """The outcome of :func:`profile`. All serialised figures are finite ints, floats, strs or bools.

    Sections (dicts; see :meth:`report` for their meaning): problem, sparsity, factorization,
    orderings (one dict per ordering), covisibility (None when no group is eliminated), solve,
    phases ({phase: {seconds, calls, seconds_per_iteration, seconds_per_call, share}}),
    flop_estimates ({phase: {flops_per_call, flops, gflop_per_s}} for the phases whose work is
    known from the structure), jit, memory, reprojection (BA problems, else None), blas, threads,
    environment, warnings. The last fields (summary, the problem, matrices) are for plots and
    tests and are not serialised.
    """

    source: str
    problem: Dict[str, Any]
    sparsity: Dict[str, Any]
    factorization: Dict[str, Any]
    orderings: List[Dict[str, Any]]
    best_ordering: str
    fastest_ordering: str
    covisibility: Optional[Dict[str, Any]]
    solve: Dict[str, Any]
    phases: Dict[str, Dict[str, Any]]
    flop_estimates: Dict[str, Dict[str, Any]]
    time_dominant_phase: str
    flop_dominant_phase: str
    jit: Dict[str, Any]
    memory: Dict[str, Any]
    reprojection: Optional[Dict[str, Any]]
    blas: Dict[str, Any]
    threads: Dict[str, Any]
    environment: Dict[str, Any]
    warnings: List[str]
    # not serialised
    summary: Any = field(default=None, repr=False, compare=False, metadata=_json(False))
    problem_object: Optional[Problem] = field(default=None, repr=False, compare=False, metadata=_json(False))
    initial_values: Optional[Dict[str, np.ndarray]] = field(default=None, repr=False, compare=False,
                                                            metadata=_json(False))
    factored_matrix: Optional[sp.csc_matrix] = field(default=None, repr=False, compare=False, metadata=_json(False))
    block_pattern: Optional[sp.csr_matrix] = field(default=None, repr=False, compare=False, metadata=_json(False))

    @property
    def reduced_matrix(self) -> Optional[sp.csc_matrix]:
        """lower(S) (pattern-exact, positive-definite values) when a Schur solver was used, else None."""
        return self.factored_matrix if self.factorization.get("matrix") == "S" else None

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able data (the serialised fields)."""
        out: Dict[str, Any] = {"schema_version": PROFILE_SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            if f.metadata.get("json", True):
                out[f.name] = _plain(getattr(self, f.name))
        return out

    def to_json(self, **kwargs) -> str:
        """JSON text of :meth:`to_dict` (``allow_nan=False``: every number is finite)."""
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    def report(self) -> str:
        """A text report people can read (tables of sizes, sparsity, orderings, phases)."""
        return _report(self)


def _plain(v):
    """numpy scalars and arrays to Python; tuples to lists; non-finite floats to None."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        x = float(v)
        return x if math.isfinite(x) else None
    if v is None or isinstance(v, str):
        return v
    return str(v)


# ---------------------------------------------------------------------------------------------
# The JSON contract

_STATS = {"min": float, "median": float, "mean": float, "max": float}
_ERRORS = {"mean": float, "median": float, "rms": float, "p90": float, "max": float}
_ORDERING = {"ordering": str, "ok": bool, "available": bool, "note": str,
             "?nnz_L": int, "?fill_ratio": float, "?flops": float, "?analysis_seconds": float,
             "?factorization_seconds": float, "?supernodal": bool}
#: key -> type, nested dict (a section), [item schema] (a list), {"*": schema} (a dict of any keys),
#: ("optional-or-None", schema). Keys starting with "?" may be absent.
JSON_SCHEMA: Dict[str, Any] = {
    "schema_version": int, "source": str,
    "problem": {"parameter_groups": {"*": {"blocks": int, "block_size": int, "constant_blocks": int,
                                           "eliminate": bool}},
                "residual_groups": {"*": {"blocks": int, "residual_size": int, "type": str, "loss": str}},
                "parameter_blocks": int, "residual_blocks": int, "parameters": int, "free_parameters": int,
                "residuals": int},
    "sparsity": {"jacobian_rows": int, "jacobian_columns": int, "jacobian_nnz": int, "jacobian_density": float,
                 "normal_columns": int, "normal_nnz_lower": int, "normal_blocks": int, "normal_density": float,
                 "?reduced_columns": int, "?reduced_blocks": int, "?reduced_nnz_lower": int,
                 "?reduced_density": float, "?eliminated_blocks": int},
    "factorization": {"matrix": str, "columns": int, "nnz_lower": int, "ordering": str, "mode": str, "solver": str,
                      "solver_uses_cholmod": bool, "ok": bool, "nnz_L": int, "fill_ratio": float, "flops": float,
                      "analysis_seconds": float, "factorization_seconds": float, "supernodal": bool,
                      "?solver_factor_nnz": int, "?solver_analysis_seconds": float},
    "orderings": [_ORDERING],
    "best_ordering": str, "fastest_ordering": str,
    "covisibility": (None, {"kept_group": str, "eliminated_group": str, "vertices": int, "edges": int,
                            "edge_density": float, "degree": _STATS, "shared_eliminated_per_edge": _STATS,
                            "kept_per_eliminated": _STATS, "residuals_per_kept": _STATS, "cells": int,
                            "cell_pairs": int, "isolated_vertices": int}),
    "solve": {"linear_solver": str, "termination": str, "message": str, "iterations": int, "max_iterations": int,
              "successful_steps": int, "unsuccessful_steps": int, "linear_solver_iterations": int,
              "initial_cost": float, "final_cost": float,
              "final_gradient_max_norm": float, "total_seconds": float, "setup_seconds": float,
              "symbolic_seconds": float, "loop_seconds": float, "other_seconds": float,
              "seconds_per_iteration": float, "wall_seconds": float},
    "phases": {"*": {"seconds": float, "calls": int, "seconds_per_iteration": float, "seconds_per_call": float,
                     "share": float}},
    "flop_estimates": {"*": {"flops_per_call": float, "flops": float, "gflop_per_s": float}},
    "time_dominant_phase": str, "flop_dominant_phase": str,
    "jit": {"measured": bool, "?what": str, "?first_call_overhead_seconds": float, "?first_solve_seconds": float,
            "?warm_solve_seconds": float, "?kernels_compiled_before": bool, "?disk_cache_warm_before": bool,
            "?disk_cache_kernels_warm_before": int, "?disk_cache_kernels": int,
            "?phase_overhead_seconds": {"*": float},
            "?cold": {"ok": bool, "?message": str, "?linear_solver": str, "?compile_seconds": float,
                      "?first_solve_seconds": float, "?warm_solve_seconds": float, "?import_seconds": float,
                      "?process_seconds": float}},
    "memory": {"peak_rss_bytes": int, "rss_at_start_bytes": int, "rss_before_solve_bytes": int,
               "rss_after_solve_bytes": int, "jacobian_values_bytes": int, "residual_values_bytes": int,
               "matrix": str, "matrix_values_bytes": int, "factor_values_bytes": int, "?dense_matrix_bytes": int},
    "reprojection": (None, {"residual_group": str, "observations": int, "before": _ERRORS, "after": _ERRORS}),
    "blas": {"cholmod_blas": str, "cholmod_blas_kind": str, "cholmod_blas_config": str, "numpy_blas": str,
             "numpy_blas_version": str, "reference_blas": bool, "summary": str},
    "threads": {"numba_threads": int, "numba_max_threads": int, "numba_threading_layer": str,
                "OPENBLAS_NUM_THREADS": str, "OMP_NUM_THREADS": str, "MKL_NUM_THREADS": str,
                "NUMBA_NUM_THREADS": str, "NUMBA_THREADING_LAYER": str, "cholmod_blas_threads": int,
                "solver_threads": int},
    "environment": {"versions": {"*": str},
                    "cpu": {"count": int, "usable": int, "model": str, "machine": str, "system": str},
                    "numba_cache": {"warm": bool, "kernels": int, "kernels_warm": int, "cache_dirs": [str]}},
    "warnings": [str],
}


def schema_errors(data: Any, schema: Any = None, path: str = "") -> List[str]:
    """Where ``data`` (a :meth:`Profile.to_dict`, or its JSON read back) breaks :data:`JSON_SCHEMA`:
    missing or unexpected keys, wrong types (bool is not int; int is not float), non-finite floats."""
    schema = JSON_SCHEMA if schema is None else schema
    where = path or "profile"
    if isinstance(schema, tuple):  # (None, schema): null allowed
        return [] if data is None else schema_errors(data, schema[1], path)
    if isinstance(schema, list):
        if not isinstance(data, list):
            return [f"{where}: expected a list, got {type(data).__name__}"]
        return [e for i, x in enumerate(data) for e in schema_errors(x, schema[0], f"{where}[{i}]")]
    if isinstance(schema, dict):
        if not isinstance(data, dict):
            return [f"{where}: expected an object, got {type(data).__name__}"]
        if set(schema) == {"*"}:
            return [e for k, x in data.items() for e in schema_errors(x, schema["*"], f"{where}.{k}")]
        errors = []
        known = {k.lstrip("?") for k in schema}
        for key, sub in schema.items():
            name = key.lstrip("?")
            if name not in data:
                if not key.startswith("?"):
                    errors.append(f"{where}.{name}: missing")
                continue
            errors += schema_errors(data[name], sub, f"{where}.{name}")
        errors += [f"{where}.{k}: unexpected key" for k in data if k not in known]
        return errors
    if schema is float:
        if not isinstance(data, float):
            return [f"{where}: expected a float, got {type(data).__name__} {data!r}"]
        return [] if math.isfinite(data) else [f"{where}: not finite ({data})"]
    if schema is int:
        ok = isinstance(data, int) and not isinstance(data, bool)
        return [] if ok else [f"{where}: expected an int, got {type(data).__name__} {data!r}"]
    if not isinstance(data, schema):
        return [f"{where}: expected {schema.__name__}, got {type(data).__name__} {data!r}"]
    return []


# ---------------------------------------------------------------------------------------------
# Loading

def load_problem(problem_or_path=None) -> Tuple[Problem, str]:
    """(Problem, description) from a Problem, a BALProblem, a BAL file or registry name, or None
    (the built-in synthetic problem ``sparselm.bal.synthetic.default_problem()``)."""
    from sparselm.bal.io import BALProblem, read_bal

    if isinstance(problem_or_path, Problem):
        return problem_or_path, "Problem"
    if problem_or_path is None:
        from sparselm.bal.synthetic import default_problem

        bal = default_problem()
        return build_ba_problem(bal), bal.source
    if isinstance(problem_or_path, BALProblem):
        return build_ba_problem(problem_or_path), problem_or_path.source or "BALProblem"
    if isinstance(problem_or_path, (str, os.PathLike)):
        from sparselm.bal.registry import resolve

        path = resolve(problem_or_path)
        return build_ba_problem(read_bal(path)), str(path)
    raise TypeError(f"profile: expected a Problem, a BALProblem, a path or a BAL problem name, "
                    f"got {type(problem_or_path).__name__}")


def build_ba_problem(bal) -> Problem:
    """The bundle-adjustment Problem of a BALProblem (``sparselm.bal.problem.build_problem``)."""
    try:
        from sparselm.bal.problem import build_problem
    except ImportError:  # pragma: no cover - only while that module is being written
        from sparselm.bal.camera import BAL_REPROJECTION

        problem = Problem()
        problem.add_parameter_group("cameras", bal.cameras)
        problem.add_parameter_group("points", bal.points, eliminate=True)
        problem.add_residual_group("observations", BAL_REPROJECTION,
                                   [("cameras", bal.camera_index), ("points", bal.point_index)], bal.observations)
        return problem
    return build_problem(bal)


# ---------------------------------------------------------------------------------------------
# Structure: J, H, S and the co-visibility graph, from the block incidence

def _incidence(problem: Problem, layout):
    """Free-block x instance incidence (CSR, counts) over all residual groups, and per-group info."""
    rows, cols = [], []
    offset = 0
    for rl in layout.residuals:
        inst, slot = np.nonzero(rl.block >= 0)
        rows.append(rl.block[inst, slot])
        cols.append(inst + offset)
        offset += rl.block.shape[0]
    r = np.concatenate(rows).astype(np.int64)
    c = np.concatenate(cols).astype(np.int64)
    m = sp.csr_matrix((np.ones(r.size, dtype=np.int64), (r, c)), shape=(layout.n_blocks, offset))
    m.sum_duplicates()
    return m


def _schur_split(problem: Problem, layout) -> Optional[int]:
    """Number of kept (f) blocks when Schur elimination applies (some eliminated blocks, all of one
    size, every residual block touching at most one), else None."""
    n_f = layout.n_reduced_blocks
    if n_f == layout.n_blocks or n_f == 0:
        return None
    if np.unique(layout.block_size[n_f:]).size != 1:
        return None
    for rl in layout.residuals:
        if ((rl.block >= n_f).sum(axis=1) > 1).any():
            return None
    return n_f


def _lower_nnz(blk: sp.spmatrix, sizes: np.ndarray) -> int:
    """Scalar nonzeros of the lower triangle of a symmetric block pattern (diagonal blocks full)."""
    coo = sp.coo_matrix(blk)
    r, c = coo.row, coo.col
    off = r > c
    diag_sizes = sizes
    return int(np.sum(sizes[r[off]] * sizes[c[off]]) + np.sum(diag_sizes * (diag_sizes + 1) // 2))


def _scalar_lower(blk: sp.spmatrix, col0: np.ndarray, sizes: np.ndarray) -> sp.csc_matrix:
    """lower-triangle CSC scalar pattern of a symmetric block pattern, with diagonally dominant values."""
    n_cols = int(col0[-1] + sizes[-1]) if sizes.size else 0
    n_b = sizes.size
    expand = sp.csr_matrix((np.ones(n_cols), (np.repeat(np.arange(n_b), sizes),
                                              np.arange(n_cols))), shape=(n_b, n_cols))
    pattern = sp.csr_matrix(blk, dtype=np.float64, copy=True)
    pattern.data[:] = 1.0
    pattern = (pattern + sp.eye(n_b, format="csr")).tocsr()
    pattern.data[:] = 1.0
    full = (expand.T @ pattern @ expand).tocoo()
    lower = full.row >= full.col
    rows, cols = full.row[lower], full.col[lower]
    rng = np.random.default_rng(0)
    vals = rng.uniform(-1.0, 1.0, rows.size)
    vals[rows == cols] = 0.0
    absrow = np.bincount(rows, np.abs(vals), minlength=n_cols) + np.bincount(cols, np.abs(vals), minlength=n_cols)
    vals[rows == cols] = absrow[rows[rows == cols]] + 1.0
    mat = sp.csc_matrix((vals, (rows, cols)), shape=(n_cols, n_cols))
    mat.sort_indices()
    return mat


def _stats(x: np.ndarray) -> Dict[str, float]:
    if x.size == 0:
        return {"min": 0.0, "median": 0.0, "mean": 0.0, "max": 0.0}
    return {"min": float(np.min(x)), "median": float(np.median(x)), "mean": float(np.mean(x)),
            "max": float(np.max(x))}


def _structure(problem: Problem, layout) -> Dict[str, Any]:
    """Counts of J, H, S, the co-visibility graph and the per-phase model flops' ingredients."""
    inc = _incidence(problem, layout)
    sizes = layout.block_size
    n_rows = sum(r.n_instances * r.residual_size for r in problem.residual_groups)
    nnz_j = 0
    flops_assembly = 0.0
    flops_gradient = 0.0
    jac_bytes = res_bytes = 0
    for rg, rl in zip(problem.residual_groups, layout.residuals):
        m = rg.residual_size
        free = rl.block >= 0
        k = rl.slot_size[None, :] * free
        nnz_j += int(m * k.sum())
        flops_gradient += 4.0 * m * float(k.sum())
        n_slots = rl.block.shape[1]
        for a in range(n_slots):
            for b in range(a + 1):
                both = free[:, a] & free[:, b]
                flops_assembly += 2.0 * m * rl.slot_size[a] * rl.slot_size[b] * float(both.sum())
        jac_bytes += rg.n_instances * m * rl.jacobian_width * 8
        res_bytes += rg.n_instances * m * 8
    h_blk = (inc @ inc.T).tocsr()
    out: Dict[str, Any] = {
        "jacobian_rows": int(n_rows), "jacobian_columns": int(layout.n_columns), "jacobian_nnz": int(nnz_j),
        "jacobian_density": float(nnz_j) / max(1.0, float(n_rows) * float(layout.n_columns)),
        "normal_columns": int(layout.n_columns), "normal_nnz_lower": _lower_nnz(h_blk, sizes),
        "normal_blocks": int(layout.n_blocks),
    }
    n = float(layout.n_columns)
    out["normal_density"] = out["normal_nnz_lower"] / max(1.0, n * (n + 1) / 2)
    extra = {"h_blk": h_blk, "flops_assembly": flops_assembly, "flops_gradient": flops_gradient,
             "jacobian_bytes": jac_bytes, "residual_bytes": res_bytes, "n_f": None}
    n_f = _schur_split(problem, layout)
    if n_f is not None:
        mf, me = inc[:n_f], inc[n_f:]
        cells = (mf @ me.T).tocsr()
        cells.data[:] = 1
        shared = (cells @ cells.T).tocsr()           # shared e-blocks per pair of f-blocks
        u_blk = (mf @ mf.T).tocsr()                  # f-f blocks from residuals without e-block
        s_blk = (shared + u_blk).tocsr()
        s_blk.sum_duplicates()
        f_sizes = sizes[:n_f]
        s_cols = int(layout.n_reduced_columns)
        out["reduced_columns"] = s_cols
        out["reduced_blocks"] = int(n_f)
        out["reduced_nnz_lower"] = _lower_nnz(s_blk, f_sizes)
        out["reduced_density"] = out["reduced_nnz_lower"] / max(1.0, s_cols * (s_cols + 1) / 2)
        out["eliminated_blocks"] = int(layout.n_blocks - n_f)
        cells_per_e = np.asarray(cells.sum(axis=0)).ravel()
        n_cells = int(cells.nnz)
        n_pairs = int(np.sum(cells_per_e * (cells_per_e + 1) // 2))
        # co-visibility graph of the f-blocks
        adj = s_blk.tocoo()
        off = adj.row != adj.col
        degree = np.bincount(adj.row[off], minlength=n_f)
        sh = shared.tocoo()
        sh_off = sh.row < sh.col
        group_f = layout.group_order[0] if layout.group_order else "kept"
        e_groups = [g for g in layout.group_order if problem.parameter_groups[g].eliminate]
        obs_per_f = np.asarray(inc[:n_f].sum(axis=1)).ravel()
        extra.update(n_f=n_f, s_blk=s_blk, n_cells=n_cells, n_pairs=n_pairs, kf=int(f_sizes.max()),
                     ke=int(sizes[n_f]), n_e=int(layout.n_blocks - n_f))
        out_cov = {
            "kept_group": group_f, "eliminated_group": ",".join(e_groups),
            "vertices": int(n_f), "edges": int(off.sum() // 2),
            "edge_density": float(off.sum() // 2) / max(1.0, n_f * (n_f - 1) / 2),
            "degree": _stats(degree.astype(float)),
            "shared_eliminated_per_edge": _stats(sh.data[sh_off].astype(float)),
            "kept_per_eliminated": _stats(cells_per_e.astype(float)),
            "residuals_per_kept": _stats(obs_per_f.astype(float)),
            "cells": n_cells, "cell_pairs": n_pairs,
            "isolated_vertices": int(np.sum(degree == 0)),
        }
        extra["covisibility"] = out_cov
    return {"sparsity": out, "extra": extra}


# ---------------------------------------------------------------------------------------------
# CHOLMOD analysis of the factored matrix

def _analyse(lower: sp.csc_matrix, ordering: str, mode: str, repeats: int) -> Dict[str, Any]:
    from sparselm.linalg.cholmod import CholmodFactor

    factor, analysis = None, math.inf
    for _ in range(max(1, repeats)):  # best of: the first analysis in a process pays for page faults
        factor = CholmodFactor(lower, ordering, mode)
        analysis = min(analysis, factor.analysis_seconds)
    best = math.inf
    ok = True
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        ok = factor.factorize(lower)
        best = min(best, time.perf_counter() - t0)
    if not ok:  # cannot happen for a diagonally dominant matrix; reported rather than raised
        return {"ordering": ordering, "ok": False, "analysis_seconds": float(analysis)}
    counts = factor.column_counts()
    nnz_l = int(counts.sum())
    flops = float(np.sum(counts.astype(np.float64) ** 2))
    supernodal = mode == "supernodal"
    if mode == "auto":  # CHOLMOD's rule: supernodal when fl / lnz >= supernodal_switch (40)
        exact = CholmodFactor(lower, ordering, "simplicial")
        exact.factorize(lower)
        c = exact.column_counts().astype(np.float64)
        supernodal = bool(np.sum(c ** 2) >= 40.0 * np.sum(c))
    return {"ordering": ordering, "ok": True, "nnz_L": nnz_l,
            "fill_ratio": nnz_l / max(1, lower.nnz), "flops": flops,
            "analysis_seconds": float(analysis), "factorization_seconds": float(best),
            "supernodal": bool(supernodal)}


# ---------------------------------------------------------------------------------------------
# Memory and timing helpers

def _status_bytes(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (VmHWM, else getrusage)."""
    hwm = _status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * (1 if sys.platform == "darwin" else 1024)


def rss_bytes() -> int:
    """Current resident set size of this process (VmRSS, else the peak)."""
    v = _status_bytes("VmRSS")
    return v if v is not None else peak_rss_bytes()


def _reset_values(problem: Problem, values: Dict[str, np.ndarray]) -> None:
    for name, g in problem.parameter_groups.items():
        g.values[...] = values[name]


def _kernels_compiled(problem: Problem) -> bool:
    """True when this process has already compiled the problem's residual kernels."""
    for rg in problem.residual_groups:
        for k in (rg.residual_type.residual_kernel, rg.residual_type.jacobian_kernel):
            if k is not None and getattr(k, "signatures", None):
                return True
    return False


_COLD_JIT_SCRIPT = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import sparselm
    from sparselm.bal.synthetic import synthetic_problem
    from sparselm.profile import build_ba_problem
    t_import = time.perf_counter() - t0
    times = []
    for _ in range(2):
        problem = build_ba_problem(synthetic_problem(4, 40, seed=1).initial)
        t = time.perf_counter()
        sparselm.solve(problem, linear_solver=sys.argv[1], max_iterations=2)
        times.append(time.perf_counter() - t)
    print(json.dumps({"import_seconds": t_import, "first": times[0], "second": times[1]}))
""")


def measure_cold_jit(linear_solver: str, timeout: float = 600.0) -> Dict[str, Any]:
    """Compile time of the BA kernels from an empty numba cache, in a fresh Python process.

    Runs a 2-iteration solve of a tiny synthetic BA problem twice with NUMBA_CACHE_DIR pointing at
    an empty folder; the first minus the second is what numba spent compiling.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sparselm-cold-jit-") as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=tmp)
        if linear_solver == "dense_schur":
            solver = "dense_schur"
        elif linear_solver in ("sparse_schur", "iterative_schur", "sparse_normal_cholesky", "dense"):
            solver = linear_solver
        else:
            solver = "auto"
        t0 = time.perf_counter()
        try:
            out = subprocess.run([sys.executable, "-c", _COLD_JIT_SCRIPT, solver], capture_output=True, text=True,
                                 env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"ok": False, "message": f"timed out after {timeout:.0f} s"}
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["?"]
            return {"ok": False, "message": f"subprocess failed: {tail[0]}"}
        d = json.loads(out.stdout.strip().splitlines()[-1])
        return {"ok": True, "linear_solver": solver, "compile_seconds": max(0.0, d["first"] - d["second"]),
                "first_solve_seconds": d["first"], "warm_solve_seconds": d["second"],
                "import_seconds": d["import_seconds"], "process_seconds": wall}


# ---------------------------------------------------------------------------------------------
# profile()

def profile(problem_or_path=None, linear_solver: str = "auto", iterations: int = DEFAULT_ITERATIONS,
            orderings: Sequence[str] = DEFAULT_ORDERINGS, *, jit: bool = True, cold_jit: bool = False,
            factorization_repeats: int = 3, **options) -> Profile:
    """Solve ``problem_or_path`` for at most ``iterations`` LM iterations and profile it.

    problem_or_path  a Problem (solved in place), a BALProblem, a BAL file path or registry name
                     (``sparselm.bal.registry.resolve``), or None for the built-in synthetic problem.
    linear_solver    as in :class:`~sparselm.SolverOptions` ('auto' resolves as solve() does).
    orderings        CHOLMOD orderings to compare on the factored matrix (unavailable ones skipped).
    jit              measure the first-call (JIT) overhead with two extra one-iteration solves.
    cold_jit         also time compiling the kernels from an empty numba cache, in a subprocess.
    options          other SolverOptions (ordering, factorization, threads, tolerances, ...).
    """
    import sparselm
    from sparselm.linalg.cholmod import available_orderings
    from sparselm.options import SolverOptions
    from sparselm.structure import build_layout

    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    options = dict(options)
    options.setdefault("verbose", False)
    SolverOptions.from_kwargs(linear_solver=linear_solver, max_iterations=iterations, **options)  # validate early
    problem, source = load_problem(problem_or_path)
    warnings: List[str] = []
    rss_start = rss_bytes()

    cache_before = diagnostics.numba_cache_status()
    compiled_before = _kernels_compiled(problem)

    layout = build_layout(problem)
    struct = _structure(problem, layout)
    sparsity, extra = struct["sparsity"], struct["extra"]
    initial = {name: g.values.copy() for name, g in problem.parameter_groups.items()}

    # JIT: a one-iteration solve twice; the difference is compile/cache-load cost.
    jit_info: Dict[str, Any] = {"measured": False}
    if jit:
        runs = []
        for _ in range(2):
            _reset_values(problem, initial)
            t0 = time.perf_counter()
            s = sparselm.solve(problem, linear_solver=linear_solver, max_iterations=1, **options)
            runs.append((time.perf_counter() - t0, s))
        (t_first, s_first), (t_second, s_second) = runs
        phase_excess = {}
        for name, ph in s_first.phases.items():
            warm = s_second.phases.get(name, {"seconds": 0.0})["seconds"]
            phase_excess[name] = max(0.0, ph["seconds"] - warm)
        n_cached, n_kernels = int(cache_before.get("kernels_warm", 0)), int(cache_before.get("kernels", 0))
        if compiled_before:
            what = ("little left to compile: the problem's residual kernels were already compiled in this "
                    "process (what remains is other kernels' first calls)")
        elif n_kernels and n_cached == n_kernels:
            what = "numba loading the kernels from its disk cache (every module-level kernel was cached)"
        elif n_cached:
            what = (f"numba loading {n_cached} cached kernels from disk and compiling the rest "
                    f"({n_kernels - n_cached} module-level kernels were not cached)")
        else:
            what = "numba compiling the kernels (its disk cache was cold)"
        jit_info = {
            "measured": True,
            "what": "extra time of a first 1-iteration solve over a second identical one in this process: " + what,
            "first_call_overhead_seconds": max(0.0, t_first - t_second),
            "first_solve_seconds": t_first, "warm_solve_seconds": t_second,
            "kernels_compiled_before": bool(compiled_before),
            "disk_cache_warm_before": bool(cache_before.get("warm", False)),
            "disk_cache_kernels_warm_before": int(cache_before.get("kernels_warm", 0)),
            "disk_cache_kernels": int(cache_before.get("kernels", 0)),
            "phase_overhead_seconds": phase_excess,
        }

    # The profiled solve.
    _reset_values(problem, initial)
    rss_before = rss_bytes()
    t0 = time.perf_counter()
    summary = sparselm.solve(problem, linear_solver=linear_solver, max_iterations=iterations, **options)
    wall = time.perf_counter() - t0
    rss_after = rss_bytes()
    solver_name = str(summary.options_used.get("linear_solver", linear_solver))
    info = dict(summary.linear_solver or {})
    blas = diagnostics.blas_info()  # after the solve: it sets BLAS threads at run time (threads.configure)
    warnings += blas.get("warnings", [])
    if not summary.ok:
        warnings.append(f"the solve ended with {summary.termination}: {summary.message}")
    if cold_jit:  # after the solve: it needs the solver 'auto' resolved to, and must not overlap it
        cold = measure_cold_jit(solver_name)
        jit_info["cold"] = cold
        if not cold.get("ok"):
            warnings.append(f"cold JIT measurement failed: {cold.get('message')}")

    # The factored matrix and its CHOLMOD analysis (solver's ordering), then the ordering comparison.
    schur = solver_name in SCHUR_SOLVERS and extra["n_f"] is not None
    if schur:
        n_f = extra["n_f"]
        matrix_name = "S"
        blk = extra["s_blk"]
        lower = _scalar_lower(blk, layout.block_col[:n_f], layout.block_size[:n_f])
        nnz_lower = sparsity["reduced_nnz_lower"]
    else:
        matrix_name = "H"
        blk = extra["h_blk"]
        lower = _scalar_lower(blk, layout.block_col, layout.block_size)
        nnz_lower = sparsity["normal_nnz_lower"]
    if lower.nnz != nnz_lower:  # both counted from the block pattern: a bug if they differ
        warnings.append(f"internal: nnz(lower {matrix_name}) {lower.nnz} != {nnz_lower}")
    solver_nnz_key = "nnz_lower_S" if schur else "nnz_lower"
    if solver_nnz_key in info and int(info[solver_nnz_key]) != lower.nnz:
        warnings.append(f"the solver reports nnz(lower {matrix_name}) = {info[solver_nnz_key]}, the profile counts "
                        f"{lower.nnz}")
    ordering = str(options.get("ordering", "amd"))
    mode = str(options.get("factorization", "supernodal"))
    available = available_orderings()
    _analyse(lower, ordering, mode, 1)  # warm-up: the first factorization in a process pays for page faults
    main = _analyse(lower, ordering, mode, factorization_repeats)
    factorization = {"matrix": matrix_name, "columns": int(lower.shape[0]), "nnz_lower": int(lower.nnz),
                     "ordering": ordering, "mode": mode, "solver": solver_name,
                     "solver_uses_cholmod": solver_name in CHOLMOD_SOLVERS, **{k: v for k, v in main.items()
                                                                                if k != "ordering"}}
    if "factor_nnz" in info:
        factorization["solver_factor_nnz"] = int(info["factor_nnz"])
        if int(info["factor_nnz"]) != main.get("nnz_L"):
            warnings.append(f"nnz(L) of the solver's factor ({info['factor_nnz']}) differs from the profile's "
                            f"analysis ({main.get('nnz_L')})")
    if "analysis_seconds" in info:
        factorization["solver_analysis_seconds"] = float(info["analysis_seconds"])
    comparison = []
    for o in orderings:
        if o not in available:
            comparison.append({"ordering": o, "ok": False, "available": False,
                               "note": "not available in this CHOLMOD build"})
            continue
        if o == "natural" and o != ordering and lower.shape[0] > NATURAL_MAX_COLUMNS:
            comparison.append({"ordering": o, "ok": False, "available": True,
                               "note": f"skipped: more than {NATURAL_MAX_COLUMNS} columns, and without a "
                                       f"fill-reducing ordering the factor can be dense"})
            continue
        d = main if o == ordering else _analyse(lower, o, mode, factorization_repeats)
        comparison.append(dict(d, ordering=o, available=True, note="" if d.get("ok") else "factorization failed"))
    good = [d for d in comparison if d.get("ok")]
    # least fill; on a tie the ordering in use, then the faster factorization
    best = min(good, key=lambda d: (d["nnz_L"], d["ordering"] != ordering, d["factorization_seconds"]))["ordering"] \
        if good else ordering
    fastest = min(good, key=lambda d: d["factorization_seconds"])["ordering"] if good else ordering
    if good and best != ordering:
        ratio = main["nnz_L"] / next(d for d in good if d["ordering"] == best)["nnz_L"] if main.get("ok") else 1.0
        if ratio > 1.05:
            warnings.append(f"ordering {best!r} gives {ratio:.2f}x less fill than {ordering!r} on lower({matrix_name})")

    # Phases per iteration and model flops.
    n_iter = max(1, summary.n_iterations)
    phases: Dict[str, Dict[str, Any]] = {}
    names = [p for p in PHASE_ORDER if p in summary.phases] + \
            [p for p in summary.phases if p not in PHASE_ORDER and p != "symbolic"]
    loop_time = max(0.0, summary.total_time_s - summary.setup_time_s)
    for name in names:
        ph = summary.phases[name]
        phases[name] = {"seconds": float(ph["seconds"]), "calls": int(ph["calls"]),
                        "seconds_per_iteration": float(ph["seconds"]) / n_iter,
                        "seconds_per_call": float(ph["seconds"]) / max(1, int(ph["calls"])),
                        "share": float(ph["seconds"]) / loop_time if loop_time > 0 else 0.0}
    other = max(0.0, loop_time - sum(p["seconds"] for p in phases.values()))
    flops = _model_flops(solver_name, schur, extra, main, lower)
    flop_estimates = {}
    for name, per_call in flops.items():
        if name in phases:
            total = per_call * phases[name]["calls"]
            sec = phases[name]["seconds"]
            flop_estimates[name] = {"flops_per_call": float(per_call), "flops": float(total),
                                    "gflop_per_s": float(total / sec / 1e9) if sec > 0 else 0.0}
    time_dominant = max(phases, key=lambda p: phases[p]["seconds"]) if phases else "none"
    flop_dominant = max(flop_estimates, key=lambda p: flop_estimates[p]["flops"]) if flop_estimates else "none"

    records = summary.iterations
    if not jit and not compiled_before:
        warnings.append("jit=False and the kernels were not compiled in this process yet: the phase times "
                        "include numba's first-call (compile or cache-load) cost")
    solve_info = {
        "linear_solver": solver_name, "termination": summary.termination, "message": summary.message,
        "iterations": int(summary.n_iterations), "max_iterations": int(iterations),
        "successful_steps": int(summary.successful_steps), "unsuccessful_steps": int(summary.unsuccessful_steps),
        "linear_solver_iterations": int(sum(r.linear_solver_iterations for r in records)),
        "initial_cost": float(summary.initial_cost) if math.isfinite(summary.initial_cost) else 0.0,
        "final_cost": float(summary.final_cost) if math.isfinite(summary.final_cost) else 0.0,
        "final_gradient_max_norm": float(records[-1].gradient_max_norm) if records else 0.0,
        "total_seconds": float(summary.total_time_s), "setup_seconds": float(summary.setup_time_s),
        "symbolic_seconds": float(summary.phases.get("symbolic", {}).get("seconds", 0.0)),
        "loop_seconds": float(loop_time), "other_seconds": float(other),
        "seconds_per_iteration": float(loop_time / n_iter), "wall_seconds": float(wall),
    }

    # Memory.
    memory = {
        "peak_rss_bytes": int(peak_rss_bytes()), "rss_at_start_bytes": int(rss_start),
        "rss_before_solve_bytes": int(rss_before), "rss_after_solve_bytes": int(rss_after),
        "jacobian_values_bytes": int(extra["jacobian_bytes"]), "residual_values_bytes": int(extra["residual_bytes"]),
        "matrix": matrix_name, "matrix_values_bytes": int(nnz_lower * 8),
        "factor_values_bytes": int(main.get("nnz_L", 0) * 8),
    }
    if solver_name in DENSE_FACTOR_SOLVERS:
        memory["dense_matrix_bytes"] = int(lower.shape[0]) ** 2 * 8

    # Reprojection errors (BA problems).
    reprojection = None
    ba = _ba_groups(problem)
    if ba is not None:
        before = _reprojection_errors(problem, ba, initial)
        after = _reprojection_errors(problem, ba, None)
        reprojection = {"residual_group": ba[0].name, "observations": int(before.size),
                        "before": _error_stats(before), "after": _error_stats(after)}

    threads_info = {k: ("" if v is None else v) for k, v in diagnostics.thread_info().items()}  # "": unset
    chol = blas.get("cholmod") or {}
    threads_info["cholmod_blas_threads"] = int(chol.get("threads", 0) or 0)
    threads_info["solver_threads"] = int(summary.options_used.get("threads") or threads_info["numba_threads"])
    blas_out = {"cholmod_blas": str(chol.get("blas") or "unknown"),
                "cholmod_blas_kind": str(chol.get("kind", "unknown")),
                "cholmod_blas_config": str(chol.get("config") or ""),
                "numpy_blas": str((blas.get("numpy") or {}).get("name", "unknown")),
                "numpy_blas_version": str((blas.get("numpy") or {}).get("version", "unknown")),
                "reference_blas": chol.get("kind") == "reference", "summary": diagnostics.blas_summary(blas)}
    environment = {"versions": {k: (v if v is not None else "not installed")
                                for k, v in diagnostics.versions().items()},
                   "cpu": diagnostics.cpu_info(),
                   "numba_cache": {k: v for k, v in cache_before.items()
                                   if k in ("warm", "kernels", "kernels_warm", "cache_dirs")}}
    problem_info = _problem_sizes(problem, layout)
    return Profile(
        source=str(source), problem=problem_info, sparsity=sparsity, factorization=factorization,
        orderings=comparison, best_ordering=best, fastest_ordering=fastest,
        covisibility=extra.get("covisibility"), solve=solve_info, phases=phases, flop_estimates=flop_estimates,
        time_dominant_phase=time_dominant, flop_dominant_phase=flop_dominant, jit=jit_info, memory=memory,
        reprojection=reprojection, blas=blas_out, threads=threads_info, environment=environment,
        warnings=warnings, summary=summary, problem_object=problem, initial_values=initial,
        factored_matrix=lower, block_pattern=blk.tocsr())


def _problem_sizes(problem: Problem, layout) -> Dict[str, Any]:
    sizes = problem.sizes()
    return {
        "parameter_groups": {name: {"blocks": int(g["blocks"]), "block_size": int(g["block_size"]),
                                    "constant_blocks": int(g["constant_blocks"]), "eliminate": bool(g["eliminate"])}
                             for name, g in sizes["parameter_groups"].items()},
        "residual_groups": {name: {"blocks": int(r["blocks"]), "residual_size": int(r["residual_size"]),
                                   "type": str(r["type"]), "loss": str(r["loss"])}
                            for name, r in sizes["residual_groups"].items()},
        "parameter_blocks": int(sum(g.n_blocks for g in problem.parameter_groups.values())),
        "residual_blocks": int(sum(r.n_instances for r in problem.residual_groups)),
        "parameters": int(sizes["parameters"]), "free_parameters": int(layout.n_columns),
        "residuals": int(sizes["residuals"]),
    }


def jacobian_blocks(problem: Problem, layout=None):
    """Per residual group, (first row, first column, rows, columns) of each nonzero block of J (for spy
    plots); a generator, so that only one group's arrays exist at a time."""
    if layout is None:
        from sparselm.structure import build_layout

        layout = build_layout(problem)
    row = 0
    for rg, rl in zip(problem.residual_groups, layout.residuals):
        m = rg.residual_size
        inst, slot = np.nonzero(rl.block >= 0)
        b = rl.block[inst, slot]
        yield (row + inst.astype(np.int64) * m, layout.block_col[b].astype(np.int64),
               np.full(inst.size, m, dtype=np.int64), layout.block_size[b].astype(np.int64))
        row += rg.n_instances * m


def _model_flops(solver: str, schur: bool, extra: Dict[str, Any], main: Dict[str, Any],
                 lower: sp.csc_matrix) -> Dict[str, float]:
    """Model flops per call of the phases whose work follows from the structure."""
    out = {"gradient": extra["flops_gradient"]}
    n = float(lower.shape[0])
    if solver in DENSE_FACTOR_SOLVERS:
        out["factorization"] = n ** 3 / 3.0
        out["solve"] = 2.0 * n * n
    elif solver in CHOLMOD_SOLVERS and main.get("ok"):
        out["factorization"] = float(main["flops"])
        out["solve"] = 4.0 * float(main["nnz_L"])
    if schur:
        kf, ke = float(extra["kf"]), float(extra["ke"])
        cells, pairs, n_e = float(extra["n_cells"]), float(extra["n_pairs"]), float(extra["n_e"])
        out["assembly"] = extra["flops_assembly"]
        # V^-1 (Cholesky + inverse), Y = W V^-1 per cell, S -= Y W^T per pair, rhs per cell
        out["schur_complement"] = n_e * (ke ** 3 / 3.0 + ke ** 3) + cells * 2.0 * kf * ke * ke \
            + pairs * 2.0 * kf * kf * ke + cells * 2.0 * kf * ke
        out["back_substitution"] = cells * 2.0 * kf * ke + n_e * 2.0 * ke * ke
    elif solver in ("sparse_normal_cholesky", "dense"):
        out["assembly"] = extra["flops_assembly"]
    return out


# ---------------------------------------------------------------------------------------------
# Bundle adjustment extras

def _ba_groups(problem: Problem):
    """(residual group, cameras group name, points group name) of a BAL reprojection group, or None."""
    for rg in problem.residual_groups:
        if rg.residual_type.name == "bal_reprojection":
            return rg, rg.groups[0], rg.groups[1]
    return None


def _reprojection_errors(problem: Problem, ba, values: Optional[Dict[str, np.ndarray]]) -> np.ndarray:
    """Pixel reprojection error of every observation, at ``values`` (None: the problem's current)."""
    from sparselm.bal.camera import project

    rg, cam, pts = ba
    cams = problem.parameter_groups[cam].values if values is None else values[cam]
    points = problem.parameter_groups[pts].values if values is None else values[pts]
    pred = project(np.ascontiguousarray(cams), np.ascontiguousarray(points),
                   np.ascontiguousarray(rg.index[:, 0]), np.ascontiguousarray(rg.index[:, 1]))
    return np.hypot(pred[:, 0] - rg.data[:, 0], pred[:, 1] - rg.data[:, 1])


def reprojection_errors(profile_: Profile, which: str = "after") -> Optional[np.ndarray]:
    """Pixel errors of a profiled BA problem ``before`` or ``after`` the solve (None if not BA)."""
    problem = profile_.problem_object
    ba = _ba_groups(problem) if problem is not None else None
    if ba is None:
        return None
    return _reprojection_errors(problem, ba, profile_.initial_values if which == "before" else None)


def _error_stats(e: np.ndarray) -> Dict[str, float]:
    e = e[np.isfinite(e)]
    if e.size == 0:
        return {"mean": 0.0, "median": 0.0, "rms": 0.0, "p90": 0.0, "max": 0.0}
    return {"mean": float(e.mean()), "median": float(np.median(e)), "rms": float(np.sqrt(np.mean(e * e))),
            "p90": float(np.percentile(e, 90)), "max": float(e.max())}


# ---------------------------------------------------------------------------------------------
# Text report

def _si(n: float) -> str:
    """1234567 -> '1.23M'."""
    n = float(n)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}" if n != int(n) else f"{int(n)}"


def _bytes(n: float) -> str:
    n = float(n)
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _ms(s: float) -> str:
    return f"{s * 1e3:.3f}" if s < 0.1 else f"{s * 1e3:.1f}"


def _report(p: Profile) -> str:
    L: List[str] = [f"sparselm profile: {p.source}", ""]
    pr, sp_, fa = p.problem, p.sparsity, p.factorization
    L.append("Problem")
    for name, g in pr["parameter_groups"].items():
        tags = [f"{g['constant_blocks']} constant"] if g["constant_blocks"] else []
        tags += ["eliminated"] if g["eliminate"] else []
        L.append(f"  parameter group {name:<14} {g['blocks']:>10,} blocks of {g['block_size']}"
                 + (f"  ({', '.join(tags)})" if tags else ""))
    for name, r in pr["residual_groups"].items():
        L.append(f"  residual group  {name:<14} {r['blocks']:>10,} blocks of {r['residual_size']}  ({r['type']}, "
                 f"loss {r['loss']})")
    L.append(f"  parameters {pr['parameters']:,} (free {pr['free_parameters']:,}), residuals {pr['residuals']:,}")
    L += ["", f"{'Sparsity':<24} {'rows':>10}   {'cols':<9} {'nnz':>12}   density"]
    L.append(f"  {'J':<22} {sp_['jacobian_rows']:>10,} x {sp_['jacobian_columns']:<9,} "
             f"{sp_['jacobian_nnz']:>12,}   {sp_['jacobian_density']:.2e}")
    L.append(f"  {'lower(H), H = J^T J':<22} {sp_['normal_columns']:>10,} x {sp_['normal_columns']:<9,} "
             f"{sp_['normal_nnz_lower']:>12,}   {sp_['normal_density']:.2e}")
    if "reduced_columns" in sp_:
        L.append(f"  {'lower(S), reduced':<22} {sp_['reduced_columns']:>10,} x {sp_['reduced_columns']:<9,} "
                 f"{sp_['reduced_nnz_lower']:>12,}   {sp_['reduced_density']:.2e}")
    if fa.get("ok"):
        label = f"L of {fa['matrix']} (CHOLMOD)"
        L.append(f"  {label:<22} {fa['columns']:>10,} x {fa['columns']:<9,} {fa['nnz_L']:>12,}   "
                 f"fill nnz(L)/nnz(lower {fa['matrix']}) = {fa['fill_ratio']:.2f}")
        L.append(f"  CHOLMOD {'supernodal' if fa['supernodal'] else 'simplicial'} (asked: {fa['mode']}), ordering "
                 f"{fa['ordering']}: {_si(fa['flops'])} flop; ordering + symbolic analysis "
                 f"{_ms(fa['analysis_seconds'])} ms, numeric factorization {_ms(fa['factorization_seconds'])} ms")
        if not fa["solver_uses_cholmod"]:
            L.append(f"  (the solver, {fa['solver']}, does not use CHOLMOD: this is what a sparse factorization of "
                     f"lower({fa['matrix']}) costs)")
        elif "solver_factor_nnz" in fa:
            L.append(f"  the solver's own factor: nnz(L) {fa['solver_factor_nnz']:,}"
                     + (f", ordering + symbolic analysis {_ms(fa['solver_analysis_seconds'])} ms"
                        if "solver_analysis_seconds" in fa else ""))
    cv = p.covisibility
    if cv:
        d, sh = cv["degree"], cv["shared_eliminated_per_edge"]
        tr, ob = cv["kept_per_eliminated"], cv["residuals_per_kept"]
        kept, elim = cv["kept_group"], cv["eliminated_group"]
        L += ["", f"Co-visibility graph of {kept} (two are adjacent when they share a block of {elim})"]
        L.append(f"  {cv['vertices']:,} vertices, {cv['edges']:,} edges (density {cv['edge_density']:.3f}), "
                 f"{cv['isolated_vertices']} isolated")
        for label, st, fmt in ((f"degree (adjacent {kept})", d, ".1f"), (f"{elim} shared per edge", sh, ".1f"),
                               (f"{kept} per {elim} block", tr, ".2f"),
                               (f"residual blocks per {kept} block", ob, ".1f")):
            L.append(f"  {label:<34} min {st['min']:>8.0f}   median {st['median']:>8.0f}   mean {st['mean']:>9{fmt}}"
                     f"   max {st['max']:>8.0f}")
        L.append(f"  Schur: {cv['cells']:,} ({kept}, {elim}) cells, {cv['cell_pairs']:,} cell pairs (S block updates)")
    L += ["", f"Orderings on lower({fa['matrix']}) (CHOLMOD {fa['mode']}; pattern-exact values, best of "
          f"repeated runs)",
          f"  {'ordering':<10} {'nnz(L)':>11} {'fill':>6} {'flop':>11} {'analysis ms':>13} {'factor ms':>11}"]
    for d in p.orderings:
        if not d.get("ok"):
            L.append(f"  {d['ordering']:<10} {d.get('note') or 'failed'}")
            continue
        mark = " <- best (least fill)" if d["ordering"] == p.best_ordering else ""
        mark += " <- fastest" if d["ordering"] == p.fastest_ordering and d["ordering"] != p.best_ordering else ""
        mark += " (used)" if d["ordering"] == fa["ordering"] else ""
        L.append(f"  {d['ordering']:<10} {d['nnz_L']:>11,} {d['fill_ratio']:>6.2f} {_si(d['flops']):>11} "
                 f"{_ms(d['analysis_seconds']):>13} {_ms(d['factorization_seconds']):>11}{mark}")
    s = p.solve
    cg = f", {s['linear_solver_iterations']} CG iterations" if s["linear_solver"] == "iterative_schur" else ""
    L += ["", f"Solve: {s['linear_solver']}, {s['iterations']} iterations ({s['successful_steps']} successful{cg}), "
              f"cost {s['initial_cost']:.6e} -> {s['final_cost']:.6e}, {s['termination'].upper()}"]
    head = f"Time per phase ({s['iterations']} iterations)"
    L.append(f"{head:<42} {'total s':>10} {'calls':>7} {'ms/iter':>9} {'share':>7} {'model flop/call':>17} "
             f"{'GFLOP/s':>9}")
    for name, ph in p.phases.items():
        fe = p.flop_estimates.get(name)
        fl = f"{_si(fe['flops_per_call']):>17} {fe['gflop_per_s']:>9.2f}" if fe else f"{'':>17} {'':>9}"
        L.append(f"  {name:<40} {ph['seconds']:>10.4f} {ph['calls']:>7} {_ms(ph['seconds_per_iteration']):>9} "
                 f"{100 * ph['share']:>6.1f}% {fl}")
    L.append(f"  {'other (LM loop, step, bookkeeping)':<40} {s['other_seconds']:>10.4f} {'':>7} "
             f"{_ms(s['other_seconds'] / max(1, s['iterations'])):>9} "
             f"{100 * s['other_seconds'] / s['loop_seconds'] if s['loop_seconds'] > 0 else 0:>6.1f}%")
    L.append(f"  {'iterations (sum of the above)':<40} {s['loop_seconds']:>10.4f} {'':>7} "
             f"{_ms(s['seconds_per_iteration']):>9}")
    L.append(f"  {'setup (structure, symbolic analysis)':<40} {s['setup_seconds']:>10.4f}")
    L.append(f"  {'total':<40} {s['total_seconds']:>10.4f}")
    L.append(f"  most time: {p.time_dominant_phase}; most model flops: {p.flop_dominant_phase}")
    j = p.jit
    L += ["", "JIT"]
    if j.get("measured"):
        L.append(f"  first-call overhead {j['first_call_overhead_seconds']:.3f} s "
                 f"(first 1-iteration solve {j['first_solve_seconds']:.3f} s, second {j['warm_solve_seconds']:.3f} s)")
        L.append(f"  what it is: {j['what']}")
        top = sorted(j["phase_overhead_seconds"].items(), key=lambda kv: -kv[1])[:4]
        if top:
            L.append("  by phase: " + ", ".join(f"{k} {v:.3f} s" for k, v in top if v > 0)
                     + " (symbolic: structure and analysis, done once per solve)")
        L.append(f"  numba disk cache before: {j['disk_cache_kernels_warm_before']}/{j['disk_cache_kernels']} kernels "
                 f"cached for this CPU")
    else:
        L.append("  not measured (jit=False)")
    if "cold" in j:
        c = j["cold"]
        if c.get("ok"):
            L.append(f"  cold compile (fresh process, empty NUMBA_CACHE_DIR, tiny BA problem, {c['linear_solver']}): "
                     f"{c['compile_seconds']:.1f} s; import sparselm {c['import_seconds']:.2f} s")
        else:
            L.append(f"  cold compile: {c.get('message')}")
    m = p.memory
    L += ["", "Memory",
          f"  peak RSS {_bytes(m['peak_rss_bytes'])} (process); RSS {_bytes(m['rss_before_solve_bytes'])} before the "
          f"solve, {_bytes(m['rss_after_solve_bytes'])} after",
          f"  Jacobian values {_bytes(m['jacobian_values_bytes'])}, residuals {_bytes(m['residual_values_bytes'])}, "
          f"lower({m['matrix']}) values {_bytes(m['matrix_values_bytes'])}, L values {_bytes(m['factor_values_bytes'])}"
          + (f", dense {m['matrix']} {_bytes(m['dense_matrix_bytes'])}" if "dense_matrix_bytes" in m else "")]
    if p.reprojection:
        b, a = p.reprojection["before"], p.reprojection["after"]
        head = f"Reprojection error (px, {p.reprojection['observations']:,} observations)"
        L += ["", f"{head:<50} {'mean':>10} {'median':>10} {'rms':>10} {'p90':>10} {'max':>10}"]
        for label, e in (("before", b), ("after", a)):
            L.append(f"  {label:<48} {e['mean']:>10.4g} {e['median']:>10.4g} {e['rms']:>10.4g} {e['p90']:>10.4g} "
                     f"{e['max']:>10.4g}")
    t = p.threads
    cpu = p.environment["cpu"]
    L += ["", "Machine and threads",
          f"  CPU {cpu['model']}, {cpu['count']} logical CPUs; numba {t['numba_threads']} threads "
          f"({t['numba_threading_layer']}); CHOLMOD BLAS threads {t['cholmod_blas_threads']}",
          f"  BLAS under CHOLMOD: {p.blas['summary']}",
          f"  numpy BLAS: {p.blas['numpy_blas']} {p.blas['numpy_blas_version']}"]
    v = p.environment["versions"]
    L.append("  " + ", ".join(f"{k} {v[k]}" for k in ("python", "numpy", "scipy", "numba", "scikit-sparse",
                                                      "suitesparse", "sparselm") if k in v))
    if p.warnings:
        L += ["", "Warnings"] + [f"  WARNING: {w}" for w in p.warnings]
    return "\n".join(line.rstrip() for line in L)
