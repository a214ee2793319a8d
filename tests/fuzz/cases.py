"""What each fuzz example does inside the isolated worker, and the independent cost it is checked with.

Every function takes plain data (so that it pickles to the worker), builds the input through the
public API, solves, and returns ``{"reported": ..., "independent": ..., "termination": ...}``: the
cost the solver reports for the point it returned and the same cost computed here with numpy from
that point, written without sparselm's kernels. Invalid input raises (the test checks the type and
the message).
"""
from __future__ import annotations

import bz2
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

import sparselm
from sparselm.bal import build_problem, read_bal
from sparselm.residuals import library

#: rho0(z) of each loss (see sparselm.core.loss), for the independent cost 1/2 sum a^2 rho0(s / a^2).
LOSSES = {
    "linear": lambda z: z,
    "huber": lambda z: np.where(z <= 1.0, z, 2.0 * np.sqrt(z) - 1.0),
    "soft_l1": lambda z: 2.0 * (np.sqrt(1.0 + z) - 1.0),
    "cauchy": np.log1p,
    "arctan": np.arctan,
}

SOLVE_OPTIONS = dict(max_iterations=8, threads=1)


def robust_cost(squared_norms: np.ndarray, loss: str, scale: float) -> float:
    """1/2 sum_i a^2 rho0(s_i / a^2) (1/2 sum_i s_i for the linear loss, whatever the scale)."""
    if loss == "linear":
        return float(0.5 * np.sum(squared_norms))
    a2 = scale * scale
    return float(0.5 * np.sum(a2 * LOSSES[loss](squared_norms / a2)))


def bal_predictions(cameras, points, camera_index, point_index) -> np.ndarray:
    """Snavely's projection in numpy (scipy for the rotation): f (1 + k1 r^2 + k2 r^4) p, p = -P_xy / P_z."""
    cam = cameras[camera_index]
    world = Rotation.from_rotvec(cam[:, 0:3]).apply(points[point_index]) + cam[:, 3:6]
    p = -world[:, 0:2] / world[:, 2:3]
    r2 = np.sum(p * p, axis=1)
    return (cam[:, 6] * (1.0 + cam[:, 7] * r2 + cam[:, 8] * r2 * r2))[:, None] * p


def solve_bal_file(data: bytes, compress: bool, folder: str, name: str = "fuzz.txt") -> dict:
    """Write ``data`` to ``folder/name`` (bzip2-compressed first when ``compress``), read it, solve it."""
    path = Path(folder) / name
    path.write_bytes(bz2.compress(data) if compress else data)
    bal = read_bal(path)
    problem = build_problem(bal)
    summary = sparselm.solve(problem, **SOLVE_OPTIONS)
    cameras, points = problem.parameter_groups["cameras"].values, problem.parameter_groups["points"].values
    residuals = bal_predictions(cameras, points, bal.camera_index, bal.point_index) - bal.observations
    return {"reported": summary.final_cost, "independent": robust_cost(np.sum(residuals ** 2, axis=1), "linear", 1.0),
            "termination": summary.termination}


# -- Problem.add_parameter_group / add_residual_group -------------------------------------------------------
#: residual types the Problem fuzz draws from, with numpy residual functions of (slot values..., data).
PROBLEM_TYPES = {
    "prior_2d": (library.PRIOR_2D, lambda x, d: x - d),
    "offset_2d": (library.OFFSET_2D, lambda p, q, d: q - p - d),
    "distance_2d": (library.DISTANCE_2D, lambda p, q, d: np.linalg.norm(p - q, axis=1, keepdims=True) - d),
}


def whitened(residuals: np.ndarray, weighting: dict) -> np.ndarray:
    """A r_i for the weighting as given to add_residual_group (sigma, covariance or information)."""
    if "sigma" in weighting:
        s = np.asarray(weighting["sigma"], dtype=float)
        return residuals / (s if s.ndim == 0 else s[:, None])
    if "covariance" in weighting or "information" in weighting:
        kind = "covariance" if "covariance" in weighting else "information"
        mats = np.broadcast_to(np.asarray(weighting[kind], dtype=float),
                               (residuals.shape[0],) + (residuals.shape[1],) * 2)
        info = np.linalg.inv(mats) if kind == "covariance" else mats
        # |A r|^2 = r^T Sigma^-1 r: return a vector with that norm (its direction does not matter here).
        return np.sqrt(np.maximum(np.einsum("ni,nij,nj->n", residuals, info, residuals), 0.0))[:, None]
    return residuals


def solve_problem_spec(spec: dict) -> dict:
    """Build a Problem from ``spec`` ({"groups": [(name, values, kwargs)], "residuals": [(name, type key,
    [(group, index)], data, kwargs)], "options": {...}}), solve it, and cost the result independently."""
    problem = sparselm.Problem()
    for name, values, kwargs in spec["groups"]:
        problem.add_parameter_group(name, values, **kwargs)
    for name, type_key, blocks, data, kwargs in spec["residuals"]:
        problem.add_residual_group(name, PROBLEM_TYPES[type_key][0], blocks, data, **kwargs)
    summary = sparselm.solve(problem, **dict(SOLVE_OPTIONS, **spec.get("options", {})))
    total = 0.0
    for name, type_key, blocks, data, kwargs in spec["residuals"]:
        slots = [problem.parameter_groups[g].values[np.asarray(i).astype(np.int64)] for g, i in blocks]
        rg = next(r for r in problem.residual_groups if r.name == name)
        r = whitened(PROBLEM_TYPES[type_key][1](*slots, rg.data),
                     {k: v for k, v in kwargs.items() if k in ("sigma", "covariance", "information")})
        loss, scale = kwargs.get("loss") or "linear", float(kwargs.get("loss_scale", 1.0))
        total += robust_cost(np.sum(r * r, axis=1), loss, scale)
    return {"reported": summary.final_cost, "independent": total, "termination": summary.termination}


#: a small problem every accepted option set solves: two points, a chain of offsets, a prior and ranges.
SMALL_SPEC = {"groups": [("a", np.array([[0.0, 0.0], [1.2, -0.3], [2.1, 0.4]]), {"eliminate": True}),
                   ("b", np.array([[0.5, 2.0]]), {})],
        "residuals": [("r0", "offset_2d", [("a", np.array([0, 1])), ("b", np.array([0, 0]))],
                       np.array([[0.4, 2.1], [-0.6, 2.2]]), {}),
                      ("r1", "prior_2d", [("a", np.array([0, 1, 2]))], np.array([[0.1, 0.0], [1.0, 0.0], [2.0, 0.1]]),
                       {"sigma": 0.5}),
                      ("r2", "distance_2d", [("a", np.array([2])), ("b", np.array([0]))], np.array([[2.0]]),
                       {"loss": "huber"})]}



# -- sparselm.least_squares -------------------------------------------------------------------------------------
def curve_residuals(x, t, y):
    """A small nonlinear model for the least_squares fuzz: x0 exp(-x1 t) + x2 + x3 t - y, the parameters
    beyond len(x) taken as 0."""
    a, b, c, d = (list(x[:4]) + [0.0] * 4)[:4]
    return a * np.exp(-b * t) + c + d * t - y


def run_least_squares(x0, t, y, kwargs: dict) -> dict:
    """sparselm.least_squares(curve_residuals, x0, args=(t, y), **kwargs) and its cost recomputed (a scalar
    ``sigma`` divides every residual)."""
    result = sparselm.least_squares(curve_residuals, x0, args=(t, y), **kwargs)
    f = curve_residuals(np.asarray(result.x, dtype=float), t, y) / float(kwargs.get("sigma") or 1.0)
    scale = float(kwargs.get("f_scale", 1.0))
    loss = kwargs.get("loss", "linear")
    return {"reported": float(result.cost), "independent": robust_cost(f * f, loss, scale),
            "termination": int(result.status)}
