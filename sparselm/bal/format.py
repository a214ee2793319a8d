"""The BAL format as the command line sees it (registered in :mod:`sparselm.formats`).

Reading and writing are :mod:`sparselm.bal.io`; the Problem is :func:`sparselm.bal.problem.build_problem`.
This module adds what ``sparselm info`` prints (sizes, observations per camera and per point,
the camera co-visibility graph: cameras sharing at least one point, the initial cost and
reprojection error) and the RMS reprojection error ``sparselm solve`` reports.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from sparselm.bal.io import BALProblem, read_bal, write_bal
from sparselm.bal.problem import build_problem, reprojection_errors, solution_to_bal
from sparselm.core.covisibility import covisibility
from sparselm.core.problem import Problem

FILE_KIND = "BAL file"
ERROR_LABEL = "reprojection error"  # what rms_error measures
ERROR_UNIT = "px"


def detect(path: Path) -> bool:
    """Any regular file: BAL files have no signature, so BAL is the fallback format."""
    return Path(path).is_file()


def read(path: Path) -> BALProblem:
    """The BALProblem of a BAL file (plain text or .bz2)."""
    return read_bal(path)


def build(bal: BALProblem, *, fix_first: bool = False, fix_intrinsics: bool = False, sigma=None, loss=None,
          loss_scale: float = 1.0) -> Problem:
    """The bundle-adjustment Problem (``fix_first``: hold camera 0 constant; ``sigma`` in pixels)."""
    return build_problem(bal, fix_cameras=[0] if fix_first else (), fix_intrinsics=fix_intrinsics, sigma=sigma,
                         loss=loss, loss_scale=loss_scale)


def sizes(bal: BALProblem) -> Dict[str, int]:
    """Cameras, points and observations."""
    return {"cameras": bal.n_cameras, "points": bal.n_points, "observations": bal.n_observations}


def write_solution(problem: Problem, bal: BALProblem, path: Path, overwrite_input: bool = False) -> Path:
    """Write the optimised cameras and points of ``problem`` with the observations of ``bal`` (atomic)."""
    return write_bal(solution_to_bal(problem, bal), path, overwrite_input=overwrite_input)


def rms(errors: np.ndarray) -> float:
    """Root mean square of per-observation errors (0 for none)."""
    return float(np.sqrt(np.mean(errors * errors))) if errors.size else 0.0


def rms_error(problem: Problem) -> float:
    """RMS reprojection error (pixels, unweighted) of a bundle-adjustment Problem at its current values."""
    return rms(reprojection_errors(problem))


def _min_median_max(counts: np.ndarray) -> dict:
    if counts.size == 0:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": int(counts.min()), "median": float(np.median(counts)), "max": int(counts.max())}


def statistics(bal: BALProblem) -> dict:
    """Sizes, per-camera and per-point observation counts, co-visibility graph, initial cost (vectorised)."""
    nc, npt, nobs = bal.n_cameras, bal.n_points, bal.n_observations
    per_camera = np.bincount(bal.camera_index, minlength=nc)
    per_point = np.bincount(bal.point_index, minlength=npt)
    covis = covisibility(bal.camera_index, bal.point_index, nc, npt).tocoo()  # a point seen twice counts once
    off = covis.row != covis.col
    degree = np.bincount(covis.row[off], minlength=nc)
    n_components, _ = connected_components(sp.csr_matrix((np.ones(int(off.sum())), (covis.row[off], covis.col[off])),
                                                         shape=(nc, nc)), directed=False)
    errors = reprojection_errors(bal)
    return {
        "cameras": nc, "points": npt, "observations": nobs,
        "parameters": 9 * nc + 3 * npt, "residuals": 2 * nobs,
        "observations_per_camera": _min_median_max(per_camera),
        "cameras_without_observations": int(np.count_nonzero(per_camera == 0)),
        "track_length": _min_median_max(per_point),
        "points_seen_once_or_never": int(np.count_nonzero(per_point < 2)),
        "covisibility": {"edges": int(off.sum()) // 2, "possible_edges": nc * (nc - 1) // 2,
                         "degree": _min_median_max(degree), "connected_components": int(n_components)},
        "initial_cost": float(0.5 * np.dot(errors, errors)),
        "rms_reprojection_error_px": rms(errors),
        "median_reprojection_error_px": float(np.median(errors)) if errors.size else 0.0,
        "max_reprojection_error_px": float(errors.max()) if errors.size else 0.0,
    }


def statistics_lines(stats: dict) -> List[str]:
    """The text of ``sparselm info`` for :func:`statistics` (after its 'input' line)."""

    def mmm(d):
        return f"min {d['min']}, median {d['median']:g}, max {d['max']}"

    c = stats["covisibility"]
    lines = [
        f"  cameras                   {stats['cameras']}",
        f"  points                    {stats['points']}",
        f"  observations              {stats['observations']}",
        f"  parameters                {stats['parameters']} (9 per camera, 3 per point)",
        f"  residuals                 {stats['residuals']} (2 per observation)",
        f"  observations per camera   {mmm(stats['observations_per_camera'])}"
        + (f"  ({stats['cameras_without_observations']} cameras without any)"
           if stats["cameras_without_observations"] else ""),
        f"  track length (per point)  {mmm(stats['track_length'])}"
        + (f"  ({stats['points_seen_once_or_never']} points seen by fewer than 2 observations)"
           if stats["points_seen_once_or_never"] else ""),
        f"  co-visibility graph       {c['edges']} edges of {c['possible_edges']} possible "
        f"(cameras sharing a point); degree {mmm(c['degree'])}; {c['connected_components']} connected "
        f"component{'s' if c['connected_components'] != 1 else ''}",
        f"  initial cost              {stats['initial_cost']:.6e}",
        f"  RMS reprojection error    {stats['rms_reprojection_error_px']:.6g} px "
        f"(median {stats['median_reprojection_error_px']:.6g} px, max {stats['max_reprojection_error_px']:.6g} px)",
    ]
    return lines

