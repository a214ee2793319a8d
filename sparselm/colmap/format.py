"""The COLMAP model folder as the command line sees it (registered in :mod:`sparselm.formats`).

``sparselm solve MODEL_DIR [-o OUT_DIR] [--report r.json]`` bundle-adjusts the model with pycolmap's
default options (the command line's own solver flags apply); ``--fix-intrinsics`` holds every
camera parameter, ``--fix-first-camera`` the first image's pose, ``--loss``/``--loss-scale`` are the
robust loss (huber, soft_l1, cauchy) and its scale in pixels; ``--sigma`` and ``--loss arctan`` are
not COLMAP options and are refused. ``-o`` names a folder that must not exist yet; the adjusted model
is written there atomically (binary). ``sparselm info MODEL_DIR`` prints
:func:`sparselm.colmap.report.model_statistics`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from sparselm.colmap.io import is_model_folder, read_model, write_model
from sparselm.colmap.model import ColmapModel
from sparselm.colmap.problem import BundleAdjustmentOptions, ColmapProblem, build_problem, solution_to_model
from sparselm.colmap.report import model_statistics, statistics_lines  # noqa: F401  (format interface)
from sparselm.colmap.reprojection import in_front_mask
from sparselm.core.problem import Problem

FILE_KIND = "COLMAP model folder"
ERROR_LABEL = "reprojection error"
ERROR_UNIT = "px"
#: ``sparselm solve`` options for COLMAP models: LM's initial radius 1e6 (damping 1e-6 diag(J^T J))
#: instead of 1e4. COLMAP models come out of incremental SfM near a minimum, and the smaller first
#: damping reached pycolmap's final cost in 45 iterations instead of 70 on sfm-92 and in as many or
#: fewer on the synthetic models (benchmarks/results/colmap.md).
SOLVER_DEFAULTS = {"initial_trust_region_radius": 1e6}
_LOSSES = {None: "trivial", "linear": "trivial", "huber": "huber", "soft_l1": "soft_l1", "cauchy": "cauchy"}


@dataclass
class ColmapInput:
    """A model read by the command line, and the problem built from it (set by :func:`build`)."""

    model: ColmapModel
    built: Optional[ColmapProblem] = None


def detect(path: Path) -> bool:
    """A folder holding cameras/images/points3D files."""
    return is_model_folder(path)


def read(path: Path) -> ColmapInput:
    """The validated model in the folder ``path``."""
    return ColmapInput(read_model(path))


def build(data: ColmapInput, *, fix_first: bool = False, fix_intrinsics: bool = False, sigma=None, loss=None,
          loss_scale: float = 1.0) -> Problem:
    """The bundle-adjustment Problem of the model (see the module docstring for the flags)."""
    if sigma is not None:
        raise ValueError("--sigma is not an option for COLMAP models (their residuals are in pixels)")
    if loss not in _LOSSES:
        raise ValueError(f"--loss {loss} is not a COLMAP loss (use huber, soft_l1 or cauchy)")
    model = data.model
    options = BundleAdjustmentOptions(refine_focal_length=not fix_intrinsics, refine_extra_params=not fix_intrinsics,
                                      constant_image_ids=[int(model.image_ids[0])] if fix_first else (),
                                      loss_function_type=_LOSSES[loss], loss_function_scale=loss_scale)
    data.built = build_problem(model, options)
    return data.built.problem


def sizes(data: ColmapInput) -> Dict[str, int]:
    """Images, cameras, points and observations."""
    m = data.model
    return {"images": m.n_images, "cameras": m.n_cameras, "points": m.n_points, "observations": m.n_observations}


def statistics(data: ColmapInput) -> dict:
    """What ``sparselm info --json`` prints (see :func:`sparselm.colmap.report.model_statistics`)."""
    return model_statistics(data.model)


def write_solution(problem: Problem, data: ColmapInput, path: Path, overwrite_input: bool = False) -> Path:
    """Write the adjusted model (the values of ``problem``) as a binary model folder, atomically."""
    if data.built is None or data.built.problem is not problem:
        raise ValueError("write_solution: the problem was not built from this model by build()")
    return write_model(solution_to_model(data.built), path, overwrite=overwrite_input,
                       overwrite_input=overwrite_input)


def rms_error(problem: Problem) -> float:
    """RMS reprojection error (pixels) over the observations in front of their cameras, at the
    problem's current values."""
    squared: List[np.ndarray] = []
    for group in problem.residual_groups:
        params = tuple(problem.parameter_groups[g].values for g in group.groups)
        residuals = np.empty((group.n_instances, 2))
        group.residual_type.residual_kernel(params, group.index, group.data, residuals)
        # slot 0 holds the pose (q, t) in its first 7 columns (both layouts), the last slot the point
        front = in_front_mask(params[0][:, :7], params[-1], group.index[:, 0], group.index[:, -1])
        squared.append(np.sum(residuals[front] ** 2, axis=1))
    errors = np.concatenate(squared) if squared else np.zeros(0)
    return float(np.sqrt(np.mean(errors))) if errors.size else 0.0
