"""The command line for COLMAP model folders: ``sparselm solve MODEL_DIR [-o OUT_DIR] [--report r.json]``
and ``sparselm info MODEL_DIR`` (called by :mod:`sparselm.cli` when its argument is a folder).

``solve`` maps the generic options onto bundle adjustment: ``--fix-intrinsics`` holds every camera
parameter (``refine_focal_length = refine_extra_params = False``), ``--fix-first-camera`` the first
image's pose, ``--loss``/``--loss-scale`` are the robust loss and its scale in pixels (``arctan`` and
``--sigma`` are not COLMAP options and are refused). The output folder is checked before the solve
(it must not exist or be empty, unless ``--force``) and written atomically as a binary model.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

import sparselm
from sparselm.atomic import atomic_write
from sparselm.colmap.io import read_model, write_model
from sparselm.colmap.problem import BundleAdjustmentOptions, build_problem, solution_to_model
from sparselm.colmap.report import format_statistics, model_statistics

__all__ = ["solve_model", "info_model"]


def _clean(value):
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _output_folder(path, input_dir: Path, force: bool):
    """The output folder, refused before the solve when it would clobber something."""
    if path is None:
        return None
    out = Path(path).expanduser()
    if out.exists() and out.resolve() == input_dir.resolve() and not force:
        raise ValueError(f"refusing to write the output over the input model {out} (pass --force to allow it)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ValueError(f"output folder {out} exists and is not empty (pass --force to replace it)")
    if not out.parent.is_dir():
        raise ValueError(f"cannot write the output {out}: the folder {out.parent} does not exist")
    return out


def solve_model(args, options, out=None) -> int:
    """``sparselm solve MODEL_DIR``: bundle-adjust the model with the SolverOptions ``options`` parsed
    from the generic flags; exit status as for BAL files."""
    out = out or sys.stdout
    if args.sigma is not None:
        raise ValueError("--sigma is not an option for COLMAP models (their residuals are in pixels)")
    if args.loss == "arctan":
        raise ValueError("--loss arctan is not a COLMAP loss (use huber, soft_l1 or cauchy)")
    input_dir = Path(args.problem)
    output = _output_folder(args.output, input_dir, args.force)
    report = Path(args.report) if args.report else None
    model = read_model(input_dir)
    ba = BundleAdjustmentOptions(refine_focal_length=not args.fix_intrinsics,
                                 refine_extra_params=not args.fix_intrinsics,
                                 constant_image_ids=[int(model.image_ids[0])] if args.fix_first_camera else (),
                                 loss_function_type="trivial" if args.loss == "linear" else args.loss,
                                 loss_function_scale=args.loss_scale)
    built = build_problem(model, ba)
    before = model_statistics(model)
    if not args.quiet:
        print(f"sparselm {sparselm.__version__}: bundle adjustment of {input_dir}", file=out)
        print(f"  images {model.n_images}, cameras {model.n_cameras}, points {model.n_points}, observations "
              f"{model.n_observations}; {built.n_behind} behind their camera (not in the cost)", file=out)
        print(f"  initial cost {before['cost']:.6e}, RMS reprojection error {before['rms_reprojection_error_px']:.6g} "
              f"px\n", file=out, flush=True)
    options.verbose = not args.quiet
    summary = sparselm.solve(built.problem, options)
    adjusted = solution_to_model(built)
    after = model_statistics(adjusted)
    status = 130 if summary.termination == "interrupted" else (0 if summary.ok else 1)
    if output is not None:
        write_model(adjusted, output, overwrite=args.force, overwrite_input=args.force)
    if report is not None:
        data = {"input": str(input_dir), "output": str(output) if output else None, "format": "colmap",
                "model": {k: before[k] for k in ("images", "cameras", "camera_models", "points", "observations")},
                "initial_rms_px": before["rms_reprojection_error_px"],
                "final_rms_px": after["rms_reprojection_error_px"], "exit_status": status, **summary.to_dict()}
        atomic_write(report, json.dumps(_clean(data), indent=1, allow_nan=False) + "\n")
    if args.quiet:
        print(summary.brief_report(), file=out)
    else:
        print("\n" + summary.full_report(), file=out)
        print(f"RMS reprojection error: {before['rms_reprojection_error_px']:.6g} px -> "
              f"{after['rms_reprojection_error_px']:.6g} px", file=out)
        if output is not None:
            print(f"wrote the adjusted model to {output}", file=out)
        if report is not None:
            print(f"wrote the report to {report}", file=out)
    return status


def info_model(args, out=None) -> int:
    """``sparselm info MODEL_DIR``: the model's statistics as text or JSON."""
    out = out or sys.stdout
    stats = model_statistics(read_model(args.problem))
    if args.json:
        print(json.dumps(_clean({"input": str(args.problem), **stats}), indent=1), file=out)
    else:
        print(format_statistics(str(args.problem), stats), file=out)
    return 0
