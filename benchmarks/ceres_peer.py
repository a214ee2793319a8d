"""Ceres Solver peer for the BAL benchmarks, through the ``pycolmap`` wheel.

``pycolmap`` (4.2.1: Ceres 2.2.0 with SuiteSparse) is *only* a benchmark tool: it is listed in the
``bench`` extra and must never be imported by the ``sparselm`` package itself.  This module imports
it lazily inside :func:`solve_with_ceres`, so the loader can be used without it.

How a BAL problem is fed to COLMAP
----------------------------------
BAL's camera looks down -z: with ``P = R(w) X + t`` it predicts ``p = -P_xy / P_z`` and
``x = f (1 + k1 |p|^2 + k2 |p|^4) p``, residual ``x - observation``.  COLMAP's ``RADIAL`` camera
model (params ``f, cx, cy, k1, k2``) divides by ``+P_z``.  Turning each pose by Rx(pi)
(``R' = diag(1,-1,-1) R``, ``t' = diag(1,-1,-1) t``) gives ``P' = (P_x, -P_y, -P_z)``, so COLMAP's
prediction is ``(x_BAL, -y_BAL)``; negating each observation's y then gives residuals
``(r_x, -r_y)``, i.e. exactly the same cost.  ``cx = cy = 0`` and are held constant
(``refine_principal_point=False`` -> a Ceres SubsetManifold over the camera block); ``f, k1, k2``
are free (``refine_focal_length`` and ``refine_extra_params``); every image has its own camera and
its own trivial rig/frame, all poses and points are free, no gauge is fixed, trivial loss.

Differences from Ceres' ``bundle_adjuster`` example that remain (same cost function, different
path): COLMAP parameterises the rotation as a unit quaternion (EigenQuaternionManifold, 3 dof) plus
a separate translation block, where the example uses angle-axis in one 9-parameter block; and
COLMAP's reprojection functor returns a zero residual for a point with ``P'_z`` <= eps (behind the
camera).  On the dubrovnik/trafalgar "-pre" files no observation is behind its camera so the costs
agree with Ceres' published figures; on the ladybug files some are, so pycolmap minimises a slightly
different function there (compare ``initial_cost`` with ``bal_initial_cost``).

What is measured
----------------
* ``setup_time_s``: building the ``pycolmap.Reconstruction`` (Python loops) and the Ceres problem
  (``create_default_ceres_bundle_adjuster``: AddResidualBlock etc.). Not part of the solve time.
* ``total_time_s``: wall time (``time.perf_counter``) around ``adjuster.solve()`` only, i.e. what
  Ceres calls preprocessor + minimizer + postprocessor time (``ceres_total_time_s`` is Ceres' own
  figure for the same thing).
* ``iterations``: pycolmap exposes no iteration callbacks and no ``summary.iterations`` list, so the
  per-iteration records are parsed from Ceres' own progress log (``logging_type =
  PER_MINIMIZER_ITERATION``, ``minimizer_progress_to_stdout = True``), captured by redirecting the
  process's file descriptor 1 during the solve.  ``time_s`` is Ceres' ``cumulative_time_in_seconds``
  (measured from the start of ``Solve``: it includes Ceres' preprocessing, so iteration 0's time is
  preprocessing + the first evaluation) and ``cost`` is printed with 7 significant digits (``%e``);
  ``initial_cost``/``final_cost`` come from the solver summary at full precision.  Iteration 0 is
  the initial evaluation, so ``num_iterations`` (LM iterations) is one less than Ceres' "Minimizer
  iterations" (``ceres_minimizer_iterations``), which counts iteration 0 as a successful step.
"""

from __future__ import annotations

import argparse
import bz2
import ctypes
import gzip
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["load_bal_arrays", "solve_with_ceres", "bal_cost", "main"]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _load_bal_local(path):
    """Minimal BAL reader: plain, .bz2 or .gz text -> numpy arrays."""
    path = str(path)
    opener = bz2.open if path.endswith(".bz2") else gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as fh:
        tokens = fh.read().split()
    nc, npt, nobs = (int(v) for v in tokens[:3])
    need = 3 + 4 * nobs + 9 * nc + 3 * npt
    if len(tokens) < need:
        raise ValueError(f"{path}: expected {need} tokens, found {len(tokens)}")
    obs = np.array(tokens[3 : 3 + 4 * nobs], dtype=np.float64).reshape(nobs, 4)
    pos = 3 + 4 * nobs
    cameras = np.array(tokens[pos : pos + 9 * nc], dtype=np.float64).reshape(nc, 9)
    pos += 9 * nc
    points = np.array(tokens[pos : pos + 3 * npt], dtype=np.float64).reshape(npt, 3)
    camera_index = obs[:, 0].astype(np.int64)
    point_index = obs[:, 1].astype(np.int64)
    observations = np.ascontiguousarray(obs[:, 2:4])
    return cameras, points, camera_index, point_index, observations


def _from_sparselm(path):
    """Use ``sparselm.bal.io.read_bal`` when it exists; None when it does not or looks different."""
    try:
        from sparselm.bal.io import read_bal  # type: ignore
    except Exception:
        return None
    try:
        res = read_bal(path)
    except Exception:
        return None
    names = ("cameras", "points", "camera_index", "point_index", "observations")
    if all(hasattr(res, n) for n in names):
        vals = [getattr(res, n) for n in names]
    elif isinstance(res, dict) and all(n in res for n in names):
        vals = [res[n] for n in names]
    elif isinstance(res, tuple) and len(res) == 5:
        vals = list(res)
    else:
        return None
    cameras, points, ci, pi, obs = (np.asarray(v) for v in vals)
    if cameras.ndim != 2 or cameras.shape[1] != 9 or points.ndim != 2 or points.shape[1] != 3:
        return None
    if obs.shape != (ci.shape[0], 2) or pi.shape != ci.shape:
        return None
    return (
        np.asarray(cameras, np.float64),
        np.asarray(points, np.float64),
        np.asarray(ci, np.int64),
        np.asarray(pi, np.int64),
        np.asarray(obs, np.float64),
    )


def load_bal_arrays(path):
    """Read a BAL file (plain or bz2).

    Returns ``(cameras (nc, 9), points (np, 3), camera_index (n,), point_index (n,),
    observations (n, 2))``. Uses ``sparselm.bal.io.read_bal`` when available, else a local reader.
    """
    got = _from_sparselm(path)
    return got if got is not None else _load_bal_local(path)


# --------------------------------------------------------------------------------------------
# Reference cost (numpy, BAL convention) for checking the conversion
# --------------------------------------------------------------------------------------------


def _rotate(w, X):
    """Rodrigues rotation of rows X by angle-axis rows w."""
    theta = np.linalg.norm(w, axis=1, keepdims=True)
    small = theta[:, 0] < 1e-12
    safe = np.where(theta > 0, theta, 1.0)
    k = w / safe
    c, s = np.cos(theta), np.sin(theta)
    kx = np.cross(k, X)
    kd = np.sum(k * X, axis=1, keepdims=True)
    out = X * c + kx * s + k * kd * (1 - c)
    if np.any(small):
        out[small] = X[small] + np.cross(w[small], X[small])
    return out


def _angle_axis_to_matrix(w):
    return np.stack([_rotate(w[None, :], e[None, :])[0] for e in np.eye(3)], axis=1)


def bal_cost(cameras, points, camera_index, point_index, observations):
    """0.5 * sum of squared BAL reprojection residuals (numpy reference)."""
    cam = cameras[camera_index]
    P = _rotate(cam[:, :3], points[point_index]) + cam[:, 3:6]
    p = -P[:, :2] / P[:, 2:3]
    r2 = np.sum(p * p, axis=1, keepdims=True)
    pred = cam[:, 6:7] * (1.0 + cam[:, 7:8] * r2 + cam[:, 8:9] * r2 * r2) * p
    res = pred - observations
    return 0.5 * float(np.sum(res * res)), int(np.sum(P[:, 2] > 0))


# --------------------------------------------------------------------------------------------
# Capturing Ceres' progress log
# --------------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None)


class _CaptureFd1:
    """Redirect the process's fd 1 (C/C++ stdout) into a temporary file."""

    def __enter__(self):
        sys.stdout.flush()
        _libc.fflush(None)
        self._tmp = tempfile.TemporaryFile(mode="w+b")
        self._saved = os.dup(1)
        os.dup2(self._tmp.fileno(), 1)
        return self

    def __exit__(self, *exc):
        _libc.fflush(None)
        os.dup2(self._saved, 1)
        os.close(self._saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode("utf-8", "replace")
        self._tmp.close()
        return False


_NUM = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|inf|nan)"
_ITER_RE = re.compile(
    r"^\s*(\d+)\s+"
    + r"\s+".join([f"({_NUM})"] * 6)
    + r"\s+(\d+)\s+"
    + rf"({_NUM})\s+({_NUM})\s*$"
)


def _parse_progress(text):
    """Parse Ceres' trust-region LoggingCallback lines:
    iter cost cost_change |gradient| |step| tr_ratio tr_radius ls_iter iter_time total_time."""
    rows = []
    for line in text.splitlines():
        m = _ITER_RE.match(line)
        if not m:
            continue
        g = m.groups()
        rows.append(
            {
                "iteration": int(g[0]),
                "cost": float(g[1]),
                "cost_change": float(g[2]),
                "gradient_max_norm": float(g[3]),
                "step_norm": float(g[4]),
                "tr_ratio": float(g[5]),
                "tr_radius": float(g[6]),
                "linear_solver_iterations": int(g[7]),
                "iteration_time_s": float(g[8]),
                "time_s": float(g[9]),
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# The solve
# --------------------------------------------------------------------------------------------


def _build_reconstruction(pycolmap, cameras, points, camera_index, point_index, observations):
    """BAL arrays -> pycolmap.Reconstruction (pose turned by Rx(pi), observation y negated)."""
    nc = cameras.shape[0]
    flip = np.array([1.0, -1.0, -1.0])
    rec = pycolmap.Reconstruction()
    order = np.argsort(camera_index, kind="stable")
    counts = np.bincount(camera_index, minlength=nc)
    starts = np.concatenate([[0], np.cumsum(counts)])
    local_idx = np.empty(camera_index.shape[0], dtype=np.int64)
    for c in range(nc):
        sel = order[starts[c] : starts[c + 1]]
        local_idx[sel] = np.arange(sel.shape[0])
        f, k1, k2 = cameras[c, 6:9]
        cam_id = c + 1
        camera = pycolmap.Camera(
            model="RADIAL",
            width=1,
            height=1,
            params=[float(f), 0.0, 0.0, float(k1), float(k2)],
            camera_id=cam_id,
        )
        rec.add_camera_with_trivial_rig(camera)
        kp = observations[sel].copy()
        kp[:, 1] *= -1.0
        image = pycolmap.Image(name=f"cam{c}", keypoints=kp, camera_id=cam_id, image_id=cam_id)
        R = flip[:, None] * _angle_axis_to_matrix(cameras[c, :3])
        t = flip * cameras[c, 3:6]
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(pycolmap.Rotation3d(R), t))
    # tracks: observations grouped by point
    porder = np.argsort(point_index, kind="stable")
    pcounts = np.bincount(point_index, minlength=points.shape[0])
    pstarts = np.concatenate([[0], np.cumsum(pcounts)])
    img_ids = (camera_index + 1).tolist()
    loc = local_idx.tolist()
    porder_l = porder.tolist()
    pstarts_l = pstarts.tolist()
    for j in range(points.shape[0]):
        track = pycolmap.Track()
        for k in porder_l[pstarts_l[j] : pstarts_l[j + 1]]:
            track.add_element(img_ids[k], loc[k])
        rec.add_point3D(points[j], track)
    return rec


def solve_with_ceres(
    cameras,
    points,
    camera_index,
    point_index,
    observations,
    max_iterations=50,
    threads=2,
    function_tolerance=1e-16,
    gradient_tolerance=1e-10,
    parameter_tolerance=1e-8,
    linear_solver="SPARSE_SCHUR",
    capture_progress=True,
):
    """Solve a BAL problem with Ceres 2.2 (pycolmap's CeresBundleAdjuster), LM, no loss.

    Options (as Ceres' ``bundle_adjuster`` example, function tolerance 1e-16 so it stops on the
    parameter tolerance or the iteration limit): trust-region Levenberg-Marquardt, initial radius
    1e4, ``linear_solver`` (SPARSE_SCHUR, SuiteSparse), ``threads`` threads (pycolmap's
    ``min_num_residuals_for_cpu_multi_threading`` set to 0 so it is honoured, solver type
    auto-selection off), jacobi scaling, ``max_iterations``.

    Returns a dict with: ``initial_cost``, ``final_cost`` (0.5 * sum r^2, from Ceres' summary),
    ``bal_initial_cost`` (numpy reference in BAL's own camera model), ``behind_camera`` (BAL
    observations with the point behind the camera; COLMAP zeroes their residual), ``iterations``
    (list of {iteration, cost, time_s (cumulative from the start of Solve), ...}),
    ``num_iterations`` (LM iterations after iteration 0), ``ceres_minimizer_iterations`` (Ceres'
    count, iteration 0 included), ``total_time_s`` (wall time of the
    solve only), ``setup_time_s``, ``ceres_total_time_s``, ``preprocessor_time_s``,
    ``minimizer_time_s``, ``linear_solver_time_s``, ``termination`` (type and message),
    ``ceres_version``, ``pycolmap_version``, ``threads`` (given / used), ``linear_solver_used``,
    problem sizes, and ``full_report`` (Ceres' FullReport text).  See the module docstring for
    exactly what each time measures.
    """
    import pycolmap  # benchmark-only dependency
    from pycolmap import pyceres

    cameras = np.ascontiguousarray(cameras, dtype=np.float64)
    points = np.ascontiguousarray(points, dtype=np.float64)
    camera_index = np.asarray(camera_index, dtype=np.int64)
    point_index = np.asarray(point_index, dtype=np.int64)
    observations = np.ascontiguousarray(observations, dtype=np.float64)
    bal_initial, behind = bal_cost(cameras, points, camera_index, point_index, observations)

    t0 = time.perf_counter()
    rec = _build_reconstruction(pycolmap, cameras, points, camera_index, point_index, observations)

    opts = pycolmap.BundleAdjustmentOptions()
    opts.backend = pycolmap.BundleAdjustmentBackend.CERES
    opts.refine_focal_length = True
    opts.refine_principal_point = False
    opts.refine_extra_params = True
    opts.refine_rig_from_world = True
    opts.refine_sensor_from_rig = False  # trivial rigs: sensor_from_rig is identity
    opts.refine_points3D = True
    opts.min_track_length = 0
    opts.print_summary = False
    c = opts.ceres
    c.loss_function_type = pycolmap.LossFunctionType.TRIVIAL
    c.use_gpu = False
    c.auto_select_solver_type = False
    c.min_num_residuals_for_cpu_multi_threading = 0
    so = c.solver_options
    so.minimizer_type = pyceres.MinimizerType.TRUST_REGION
    so.trust_region_strategy_type = pyceres.TrustRegionStrategyType.LEVENBERG_MARQUARDT
    so.linear_solver_type = getattr(pyceres.LinearSolverType, linear_solver)
    so.sparse_linear_algebra_library_type = pyceres.SparseLinearAlgebraLibraryType.SUITE_SPARSE
    so.preconditioner_type = pyceres.PreconditionerType.JACOBI
    so.num_threads = int(threads)
    so.max_num_iterations = int(max_iterations)
    so.function_tolerance = float(function_tolerance)
    so.gradient_tolerance = float(gradient_tolerance)
    so.parameter_tolerance = float(parameter_tolerance)
    so.initial_trust_region_radius = 1e4
    so.use_nonmonotonic_steps = False
    so.use_inner_iterations = False
    so.jacobi_scaling = True
    so.max_solver_time_in_seconds = 1e9
    if capture_progress:
        so.logging_type = pyceres.LoggingType.PER_MINIMIZER_ITERATION
        so.minimizer_progress_to_stdout = True
    else:
        so.logging_type = pyceres.LoggingType.SILENT
        so.minimizer_progress_to_stdout = False

    config = pycolmap.BundleAdjustmentConfig()
    for image_id in rec.reg_image_ids():
        config.add_image(image_id)
    adjuster = pycolmap.create_default_ceres_bundle_adjuster(opts, config, rec)
    setup_time = time.perf_counter() - t0

    if capture_progress:
        with _CaptureFd1() as cap:
            t1 = time.perf_counter()
            summary = adjuster.solve()
            solve_time = time.perf_counter() - t1
        log = cap.text
    else:
        t1 = time.perf_counter()
        summary = adjuster.solve()
        solve_time = time.perf_counter() - t1
        log = ""

    cs = summary.ceres_summary
    iterations = _parse_progress(log)
    return {
        "solver": "ceres (pycolmap)",
        "initial_cost": float(cs.initial_cost),
        "final_cost": float(cs.final_cost),
        "bal_initial_cost": bal_initial,
        "behind_camera": behind,
        "iterations": iterations,
        "num_iterations": (
            iterations[-1]["iteration"]
            if iterations
            else int(cs.num_successful_steps + cs.num_unsuccessful_steps) - 1
        ),
        "ceres_minimizer_iterations": int(cs.num_successful_steps + cs.num_unsuccessful_steps),
        "num_successful_steps": int(cs.num_successful_steps),
        "num_unsuccessful_steps": int(cs.num_unsuccessful_steps),
        "total_time_s": solve_time,
        "setup_time_s": setup_time,
        "ceres_total_time_s": float(cs.total_time_in_seconds),
        "preprocessor_time_s": float(cs.preprocessor_time_in_seconds),
        "minimizer_time_s": float(cs.minimizer_time_in_seconds),
        "linear_solver_time_s": float(cs.linear_solver_time_in_seconds),
        "termination": {"type": str(cs.termination_type).split(".")[-1], "message": cs.message},
        "ceres_version": pycolmap.__ceres_version__,
        "pycolmap_version": pycolmap.__version__,
        "threads": int(threads),
        "threads_used": int(cs.num_threads_used),
        "linear_solver_used": str(cs.linear_solver_type_used).split(".")[-1],
        "schur_structure": cs.schur_structure_used,
        "num_cameras": int(cameras.shape[0]),
        "num_points": int(points.shape[0]),
        "num_observations": int(observations.shape[0]),
        "num_residuals": int(cs.num_residuals),
        "num_parameters": int(cs.num_parameters),
        "num_effective_parameters": int(cs.num_effective_parameters),
        "options": {
            "max_iterations": int(max_iterations),
            "function_tolerance": float(function_tolerance),
            "gradient_tolerance": float(gradient_tolerance),
            "parameter_tolerance": float(parameter_tolerance),
            "linear_solver": linear_solver,
            "loss": "trivial",
        },
        "full_report": cs.FullReport(),
    }


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _print_result(path, res, out=sys.stdout):
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"{Path(path).name}: {res['num_cameras']} cameras, {res['num_points']} points, "
      f"{res['num_observations']} observations")
    p(f"Ceres {res['ceres_version']} (pycolmap {res['pycolmap_version']}), "
      f"{res['linear_solver_used']}, threads {res['threads']} (used {res['threads_used']})")
    if res["behind_camera"]:
        p(f"note: {res['behind_camera']} observations are behind their camera; COLMAP zeroes them "
          f"(BAL initial cost {res['bal_initial_cost']:.6e})")
    p(f"{'iter':>4} {'cost':>14} {'cost_change':>12} {'tr_ratio':>10} "
      f"{'iter_time':>10} {'total_time':>10}")
    for r in res["iterations"]:
        p(f"{r['iteration']:>4} {r['cost']:>14.6e} {r['cost_change']:>12.3e} "
          f"{r['tr_ratio']:>10.2e} {r['iteration_time_s']:>10.3f} {r['time_s']:>10.3f}")
    p(f"initial cost {res['initial_cost']:.6e}   final cost {res['final_cost']:.6e}   "
      f"LM iterations {res['num_iterations']} (Ceres: {res['ceres_minimizer_iterations']} "
      f"incl. iteration 0, {res['num_unsuccessful_steps']} unsuccessful)")
    p(f"solve {res['total_time_s']:.3f} s wall (Ceres total {res['ceres_total_time_s']:.3f} s, "
      f"linear solver {res['linear_solver_time_s']:.3f} s), setup {res['setup_time_s']:.3f} s")
    p(f"termination: {res['termination']['type']}: {res['termination']['message']}")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Solve a BAL file with Ceres (via pycolmap).")
    ap.add_argument("file")
    ap.add_argument("--max-iterations", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--function-tolerance", type=float, default=1e-16)
    ap.add_argument("--linear-solver", default="SPARSE_SCHUR")
    ap.add_argument("--repeat", type=int, default=1, help="solve N times, report the median time")
    ap.add_argument("--json", help="write the result (of the median-time run) as JSON")
    args = ap.parse_args(argv)

    arrays = load_bal_arrays(args.file)
    results = []
    for _ in range(max(1, args.repeat)):
        results.append(
            solve_with_ceres(
                *arrays,
                max_iterations=args.max_iterations,
                threads=args.threads,
                function_tolerance=args.function_tolerance,
                linear_solver=args.linear_solver,
            )
        )
    times = sorted(r["total_time_s"] for r in results)
    med = float(np.median(times))
    res = min(results, key=lambda r: abs(r["total_time_s"] - med))
    res = dict(res, solve_times_s=[r["total_time_s"] for r in results], median_time_s=med)
    _print_result(args.file, res)
    if len(results) > 1:
        print("solve times: " + ", ".join(f"{t:.3f}" for t in res["solve_times_s"])
              + f" s; median {med:.3f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({k: v for k, v in res.items()}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
