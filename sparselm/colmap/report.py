"""Statistics of a COLMAP model for ``sparselm info``: sizes, cameras per model, observations per
image, track lengths, reprojection error (COLMAP's cost) and the image co-visibility graph."""
from __future__ import annotations

from collections import Counter
from typing import List

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from sparselm.colmap.camera_models import CAMERA_MODELS
from sparselm.colmap.model import ColmapModel
from sparselm.colmap.reprojection import observation_errors
from sparselm.core.covisibility import covisibility

__all__ = ["model_statistics", "statistics_lines"]


def _spread(values) -> dict:
    values = np.asarray(values)
    if values.size == 0:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def model_statistics(model: ColmapModel) -> dict:
    """A JSON-ready dict: images, cameras (per COLMAP model), points, observations, observations per
    image, track lengths, the cost 1/2 sum |r|^2 over observations in front of their cameras with the
    RMS/median/max reprojection error in pixels, observations behind their camera, and the
    co-visibility graph (images sharing a point: edges, degree, connected components)."""
    image_row, point_row, _ = model.observations()
    errors, in_front = observation_errors(model)
    used = errors[in_front]
    covis = covisibility(image_row, point_row, model.n_images, model.n_points).tocoo()
    off = covis.row != covis.col
    n_components, _ = connected_components(sp.csr_matrix((np.ones(int(off.sum())), (covis.row[off], covis.col[off])),
                                                         shape=(model.n_images, model.n_images)), directed=False)
    models = Counter(CAMERA_MODELS[int(m)].name for m in model.camera_model_ids)
    return {
        "images": model.n_images, "cameras": model.n_cameras, "camera_models": dict(models),
        "points": model.n_points, "observations": model.n_observations,
        "rigs": None if model.rigs is None else len(model.rigs.rig_ids),
        "observations_per_image": _spread(np.bincount(image_row, minlength=model.n_images)),
        "track_length": _spread(np.diff(model.track_offsets)),
        "cost": float(0.5 * np.dot(used, used)),
        "rms_reprojection_error_px": float(np.sqrt(np.mean(used ** 2))) if used.size else 0.0,
        "median_reprojection_error_px": float(np.median(used)) if used.size else 0.0,
        "max_reprojection_error_px": float(used.max()) if used.size else 0.0,
        "observations_behind_camera": int((~in_front).sum()),
        "covisibility": {"edges": int(off.sum()) // 2, "possible_edges": model.n_images * (model.n_images - 1) // 2,
                         "degree": _spread(np.bincount(covis.row[off], minlength=model.n_images)),
                         "connected_components": int(n_components)},
    }


def statistics_lines(s: dict) -> List[str]:
    """The lines ``sparselm info`` prints for :func:`model_statistics` (after the input line)."""
    def spread(d):
        return f"min {d['min']:g}, median {d['median']:g}, max {d['max']:g}"

    c = s["covisibility"]
    lines = ["  format                    COLMAP model",
             f"  images                    {s['images']}",
             f"  cameras                   {s['cameras']} ("
             + ", ".join(f"{n} {name}" for name, n in sorted(s["camera_models"].items())) + ")",
             f"  points                    {s['points']}",
             f"  observations              {s['observations']}",
             f"  observations per image    {spread(s['observations_per_image'])}",
             f"  track length (per point)  {spread(s['track_length'])}",
             f"  co-visibility graph       {c['edges']} edges of {c['possible_edges']} possible (images sharing a "
             f"point); degree {spread(c['degree'])}; {c['connected_components']} connected component"
             f"{'s' if c['connected_components'] != 1 else ''}",
             f"  cost (1/2 sum r^2)        {s['cost']:.6e}",
             f"  reprojection error        RMS {s['rms_reprojection_error_px']:.6g} px, median "
             f"{s['median_reprojection_error_px']:.6g} px, max {s['max_reprojection_error_px']:.6g} px"]
    if s["observations_behind_camera"]:
        lines.append(f"  behind their camera       {s['observations_behind_camera']} observations (not in the cost)")
    if s["rigs"] is not None:
        lines.append(f"  rigs                      {s['rigs']} (one camera each)")
    return lines
