"""The structure a solve works on, counted from the block incidence alone: J, the normal matrix
H = J^T J, the reduced camera matrix S of the Schur complement and the co-visibility graph of the
kept blocks (two are adjacent when they share an eliminated block); CHOLMOD's analysis of the
factored matrix; and the ingredients of the model flops of the phases (each linear solver's ``model_flops`` in
:mod:`sparselm.linalg.registry` turns them into counts, see :mod:`sparselm.linalg.flops`).
"""
from __future__ import annotations

import math
import time
from typing import Any, Dict, Optional

import numpy as np
import scipy.sparse as sp

from sparselm.core.covisibility import covisibility
from sparselm.core.layout import build_layout
from sparselm.core.problem import Problem
from sparselm.linalg.cholmod import CholmodFactor


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


def scalar_lower(blk: sp.spmatrix, col0: np.ndarray, sizes: np.ndarray) -> sp.csc_matrix:
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


def structure_counts(problem: Problem, layout) -> Dict[str, Any]:
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
        c = cells.tocoo()                            # shared e-blocks per pair of f-blocks:
        shared = covisibility(c.row, c.col, n_f, layout.n_blocks - n_f).astype(np.int64)
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

def analyse_factor(lower: sp.csc_matrix, ordering: str, mode: str, repeats: int) -> Dict[str, Any]:
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
    supernodal = factor.method() == "supernodal"  # "auto": CHOLMOD's rule, recomputed (sparselm.linalg.cholmod)
    return {"ordering": ordering, "ok": True, "nnz_L": nnz_l,
            "fill_ratio": nnz_l / max(1, lower.nnz), "flops": flops,
            "analysis_seconds": float(analysis), "factorization_seconds": float(best),
            "supernodal": bool(supernodal)}


def jacobian_blocks(problem: Problem, layout=None):
    """Per residual group, (first row, first column, rows, columns) of each nonzero block of J (for spy
    plots); a generator, so that only one group's arrays exist at a time."""
    if layout is None:
        layout = build_layout(problem)
    row = 0
    for rg, rl in zip(problem.residual_groups, layout.residuals):
        m = rg.residual_size
        inst, slot = np.nonzero(rl.block >= 0)
        b = rl.block[inst, slot]
        yield (row + inst.astype(np.int64) * m, layout.block_col[b].astype(np.int64),
               np.full(inst.size, m, dtype=np.int64), layout.block_size[b].astype(np.int64))
        row += rg.n_instances * m
