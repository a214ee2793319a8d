"""The result of :func:`sparselm.profiling.run.profile`: the :class:`Profile` dataclass and its JSON
contract (:data:`JSON_SCHEMA`, checked by :func:`schema_errors`)."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import scipy.sparse as sp

from sparselm.core.problem import Problem
from sparselm.profiling.report import format_report

PROFILE_SCHEMA_VERSION = 1


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
        return format_report(self)


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
