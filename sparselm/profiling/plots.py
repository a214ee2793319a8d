"""Plots of a profile: convergence, time per phase, sparsity patterns, reprojection errors.

matplotlib is optional (``pip install sparselm[plots]``) and imported only when a plot is drawn. The
figures are drawn on matplotlib's Agg canvas directly (no pyplot, so no global backend is changed),
rendered to PNG in memory and written with :func:`sparselm.util.atomic.atomic_write`. Sparsity plots bin
the nonzeros into a grid of at most ``SPY_MAX_BINS`` x ``SPY_MAX_BINS`` cells, so no dense matrix
larger than that is ever built, whatever the problem size.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Iterable, List, Optional, Tuple, Union

import numpy as np

from sparselm.core.layout import build_layout
from sparselm.profiling.run import observation_errors, observation_group
from sparselm.profiling.structure import jacobian_blocks
from sparselm.util.atomic import atomic_write

PLOTS = ("convergence", "phases", "sparsity", "reprojection")
SPY_MAX_BINS = 800
#: below this many nonzeros the spy plots place every scalar entry; above, whole blocks.
SPY_SCALAR_MAX_NNZ = 4_000_000
DPI = 100


class PlotError(RuntimeError):
    """Plots cannot be drawn (matplotlib missing)."""


def require_matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError("plots need matplotlib, which is not installed: pip install 'sparselm[plots]' "
                        "(or pip install matplotlib)") from None
    return Figure, FigureCanvasAgg


def _figure(width: float, height: float):
    Figure, FigureCanvasAgg = require_matplotlib()
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return atomic_write(path, buf.getvalue())


def _title(profile) -> str:
    src = os.path.basename(str(profile.source)) if profile is not None else ""
    return src if len(src) <= 60 else src[:57] + "..."


# ---------------------------------------------------------------------------------------------
# Individual plots

def plot_convergence(summary, path: Union[str, os.PathLike], title: str = "") -> Path:
    """Cost and max |gradient| per iteration (log scale); rejected steps marked."""
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    recs = list(summary.iterations)
    it = np.array([r.iteration for r in recs], dtype=float)
    cost = np.array([r.cost for r in recs], dtype=float)
    grad = np.array([r.gradient_max_norm for r in recs], dtype=float)
    ok = np.array([r.step_is_successful for r in recs], dtype=bool)
    pos = lambda a: np.where(np.isfinite(a) & (a > 0), a, np.nan)  # noqa: E731 - log axes need > 0
    ax.plot(it, pos(cost), "o-", color="C0", label="cost", markersize=4)
    if (~ok).any():
        ax.plot(it[~ok], pos(cost)[~ok], "x", color="C3", label="rejected step", markersize=7)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cost  (1/2 sum of squared residuals)", color="C0")
    ax2 = ax.twinx()
    ax2.plot(it, pos(grad), "s--", color="C1", label="max |gradient|", markersize=3)
    ax2.set_yscale("log")
    ax2.set_ylabel("max |gradient|", color="C1")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right", fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    if len(it):
        ax.set_xticks(np.arange(0, it.max() + 1, max(1, int(math.ceil((it.max() + 1) / 12)))))
    fig.suptitle(f"Convergence{': ' + title if title else ''}", fontsize=10)
    return _save(fig, Path(path))


def plot_phases(profile, summary, path: Union[str, os.PathLike], title: str = "") -> Path:
    """Milliseconds per iteration in each phase (horizontal bars, with the share of loop time)."""
    if profile is not None:
        names = list(profile.phases)
        per_iter = [profile.phases[n]["seconds_per_iteration"] * 1e3 for n in names]
        share = [profile.phases[n]["share"] for n in names]
        other = profile.solve["other_seconds"] / max(1, profile.solve["iterations"]) * 1e3
        loop = profile.solve["loop_seconds"]
        names.append("other")
        per_iter.append(other)
        share.append(profile.solve["other_seconds"] / loop if loop > 0 else 0.0)
        n_iter = profile.solve["iterations"]
    else:
        phases = {k: v for k, v in summary.phases.items() if k != "symbolic"}
        n_iter = max(1, summary.n_iterations)
        names = list(phases)
        per_iter = [phases[n]["seconds"] / n_iter * 1e3 for n in names]
        total = sum(per_iter) or 1.0
        share = [p / total for p in per_iter]
    fig = _figure(6.4, 0.9 + 0.32 * len(names))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(names))[::-1]
    colors = [f"C{i % 10}" for i in range(len(names))]
    ax.barh(y, per_iter, color=colors)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8)
    top = max(per_iter) if per_iter else 1.0
    for yi, v, s in zip(y, per_iter, share):
        ax.text(v + 0.01 * top, yi, f"{v:.3g} ms  ({100 * s:.0f}%)", va="center", fontsize=7)
    ax.set_xlim(0, top * 1.35 if top > 0 else 1.0)
    ax.set_xlabel(f"ms per iteration (mean over {n_iter} iterations)")
    ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"Time per phase{': ' + title if title else ''}", fontsize=10)
    return _save(fig, Path(path))


def _binned(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, shape: Tuple[int, int],
            extent_rows: Optional[np.ndarray] = None, extent_cols: Optional[np.ndarray] = None):
    """Counts of nonzeros on a grid of at most SPY_MAX_BINS per side; blocks (r, c, h, w) spread by area."""
    n_rows, n_cols = shape
    br, bc = min(n_rows, SPY_MAX_BINS), min(n_cols, SPY_MAX_BINS)
    grid = np.zeros((br, bc))
    if rows.size:
        ri = np.minimum((rows * br) // max(n_rows, 1), br - 1)
        ci = np.minimum((cols * bc) // max(n_cols, 1), bc - 1)
        grid += np.bincount(ri * bc + ci, weights=weights, minlength=br * bc).reshape(br, bc)
    return grid


def _spy(ax, grid: np.ndarray, shape: Tuple[int, int], title: str, nnz: int) -> None:
    n_rows, n_cols = shape
    exact = grid.shape == (n_rows, n_cols)
    shown = np.where(grid > 0, np.log10(np.maximum(grid, 1.0)) + 1.0, np.nan)
    cmap = "Greys" if exact else "viridis"
    if exact:
        shown = np.where(grid > 0, 1.0, np.nan)
    im = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap=cmap,
                   extent=(-0.5, n_cols - 0.5, n_rows - 0.5, -0.5), vmin=0 if exact else None)
    ax.set_title(f"{title}\n{n_rows:,} x {n_cols:,}, nnz {nnz:,}" +
                 ("" if exact else f"\n(binned {grid.shape[0]}x{grid.shape[1]}; colour: log10 nnz per bin)"),
                 fontsize=8)
    ax.tick_params(labelsize=7)
    if not exact:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cb.ax.tick_params(labelsize=7)


def _jacobian_grid(problem, shape: Tuple[int, int], nnz: int):
    """Binned pattern of J (``nnz`` nonzeros), one residual group at a time; every scalar entry when J
    is small enough, else whole blocks (weighted by their size)."""

    n_rows, n_cols = shape
    grid = np.zeros((min(n_rows, SPY_MAX_BINS), min(n_cols, SPY_MAX_BINS)))
    total = 0
    scalar = nnz <= SPY_SCALAR_MAX_NNZ
    for r0, c0, nr, nc in jacobian_blocks(problem):
        reps = nr * nc
        nnz = int(reps.sum())
        total += nnz
        if scalar:  # every scalar entry: expand each block into its rows x cols
            idx = np.repeat(np.arange(r0.size), reps)
            within = np.arange(nnz) - np.repeat(np.cumsum(reps) - reps, reps)
            rows = r0[idx] + within // nc[idx]
            cols = c0[idx] + within % nc[idx]
            grid += _binned(rows, cols, np.ones(nnz), shape)
        else:
            grid += _binned(r0, c0, reps.astype(float), shape)
    return grid, total


def _matrix_grid(profile):
    """Binned full symmetric pattern of the factored matrix (S or H) of a profile."""
    mat = profile.factored_matrix
    n = mat.shape[0]
    coo = mat.tocoo()
    nnz_full = 2 * coo.nnz - int(np.sum(coo.row == coo.col))
    if coo.nnz <= SPY_SCALAR_MAX_NNZ:
        off = coo.row != coo.col
        rows = np.concatenate([coo.row, coo.col[off]])
        cols = np.concatenate([coo.col, coo.row[off]])
        return _binned(rows, cols, np.ones(rows.size), (n, n)), nnz_full
    # large: place whole blocks from the block pattern
    blk = profile.block_pattern.tocoo()
    sizes, starts = _block_geometry(profile, blk.shape[0])
    return _binned(starts[blk.row], starts[blk.col], (sizes[blk.row] * sizes[blk.col]).astype(float), (n, n)), nnz_full


def _block_geometry(profile, n_blocks: int):
    """(sizes, first column) of the blocks of the factored matrix (kept blocks for S, all for H)."""
    problem = profile.problem_object

    layout = build_layout(problem)
    return layout.block_size[:n_blocks], layout.block_col[:n_blocks]


def plot_sparsity(profile, path: Union[str, os.PathLike], title: str = "") -> Path:
    """Spy plots of J and of the factored matrix (S for the Schur solvers, else H)."""
    fig = _figure(10.0, 4.4)
    sp_ = profile.sparsity
    shape_j = (sp_["jacobian_rows"], sp_["jacobian_columns"])
    grid_j, nnz_j = _jacobian_grid(profile.problem_object, shape_j, sp_["jacobian_nnz"])
    _spy(fig.add_subplot(1, 2, 1), grid_j, shape_j, "J (rows: residuals, columns: free parameters)", nnz_j)
    grid_m, nnz_m = _matrix_grid(profile)
    name = profile.factorization["matrix"]
    what = ("S, reduced matrix" if name == "S" else "H = J^T J") + " (both triangles)"
    n = profile.factored_matrix.shape[0]
    _spy(fig.add_subplot(1, 2, 2), grid_m, (n, n), what, nnz_m)
    fig.suptitle(f"Sparsity{': ' + title if title else ''}", fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_reprojection(before: np.ndarray, after: np.ndarray, path: Union[str, os.PathLike], title: str = "") -> Path:
    """Histogram of pixel reprojection errors before and after the solve (log-spaced bins)."""
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    both = np.concatenate([before, after])
    both = both[np.isfinite(both) & (both > 0)]
    lo = max(float(both.min()) if both.size else 1e-3, 1e-6)
    hi = max(float(both.max()) if both.size else 1.0, lo * 10)
    bins = np.logspace(math.log10(lo), math.log10(hi), 60)
    for data, label, color in ((before, "before", "C3"), (after, "after", "C0")):
        d = data[np.isfinite(data) & (data > 0)]
        med = float(np.median(d)) if d.size else 0.0
        ax.hist(d, bins=bins, histtype="stepfilled", alpha=0.45, color=color, label=f"{label} (median {med:.3g} px)")
    ax.set_xscale("log")
    ax.set_xlabel("reprojection error (px)")
    ax.set_ylabel("observations")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.suptitle(f"Reprojection error{': ' + title if title else ''}", fontsize=10)
    return _save(fig, Path(path))


# ---------------------------------------------------------------------------------------------
# All of them

def write_plots(profile, summary=None, problem=None, directory: Union[str, os.PathLike] = ".",
                which: Iterable[str] = PLOTS, prefix: str = "") -> List[Path]:
    """Write the plots of a profile as PNG files into ``directory`` (created); returns their paths.

    summary and problem default to the profile's own (``profile.summary``, ``profile.problem_object``:
    the problem after the solve). Files: convergence.png, phases.png, sparsity.png and, for
    bundle-adjustment problems, reprojection.png (before vs after); ``prefix`` is prepended to
    each name. Raises PlotError when matplotlib is not installed, ValueError for an unknown plot.
    """
    which = tuple(which)
    unknown = [w for w in which if w not in PLOTS]
    if unknown:
        raise ValueError(f"unknown plot(s) {', '.join(unknown)}; choose from {', '.join(PLOTS)}")
    require_matplotlib()
    summary = summary if summary is not None else getattr(profile, "summary", None)
    problem = problem if problem is not None else getattr(profile, "problem_object", None)
    if summary is None:
        raise ValueError("write_plots needs a Summary (profile.summary is empty)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    title = _title(profile)
    out: List[Path] = []
    if "convergence" in which:
        out.append(plot_convergence(summary, directory / f"{prefix}convergence.png", title))
    if "phases" in which:
        out.append(plot_phases(profile, summary, directory / f"{prefix}phases.png", title))
    if "sparsity" in which and profile is not None and profile.factored_matrix is not None:
        out.append(plot_sparsity(profile, directory / f"{prefix}sparsity.png", title))
    if "reprojection" in which and problem is not None:
        errors = _reprojection_before_after(profile, problem)
        if errors is not None:
            out.append(plot_reprojection(*errors, directory / f"{prefix}reprojection.png", title))
    return out


def _reprojection_before_after(profile, problem):
    """(before, after) per-observation errors (BA: pixels), or None (no residual type measures one, or no
    starting values)."""
    rg = observation_group(problem)
    initial = getattr(profile, "initial_values", None)
    if rg is None or not initial or any(g not in initial for g in rg.groups):
        return None
    return observation_errors(problem, rg, initial), observation_errors(problem, rg, None)
