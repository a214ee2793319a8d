"""``bundle_adjust(model)``: read -> adjust -> write in a few lines, with COLMAP's solver defaults.

    from sparselm.colmap import read_model, write_model, bundle_adjust
    model = read_model("sparse/0")
    adjusted, summary = bundle_adjust(model)          # pycolmap's default options
    write_model(adjusted, "sparse/adjusted")
"""
from __future__ import annotations

from typing import Optional, Tuple

import sparselm
from sparselm.colmap.format import SOLVER_DEFAULTS
from sparselm.colmap.model import ColmapModel
from sparselm.colmap.problem import BundleAdjustmentOptions, build_problem, solution_to_model
from sparselm.lm.options import SolverOptions
from sparselm.lm.summary import Summary

__all__ = ["bundle_adjust", "COLMAP_SOLVER_DEFAULTS"]

#: pycolmap 4.2.1's Ceres solver options for bundle adjustment that sparselm has too: at most 100
#: iterations, gradient tolerance 1e-4, function and parameter tolerances 0 (never stop on them),
#: and the COLMAP format's initial trust-region radius (1e6 rather than Ceres' 1e4, see
#: :data:`sparselm.colmap.format.SOLVER_DEFAULTS`).
COLMAP_SOLVER_DEFAULTS = dict(max_iterations=100, gradient_tolerance=1e-4, function_tolerance=0.0,
                              parameter_tolerance=0.0, **SOLVER_DEFAULTS)


def bundle_adjust(model: ColmapModel, options: Optional[BundleAdjustmentOptions] = None,
                  solver_options: Optional[SolverOptions] = None, **option_kwargs) -> Tuple[ColmapModel, Summary]:
    """Bundle-adjust ``model``; return the adjusted copy and the solver's Summary.

    ``options`` (or keyword arguments named as in BundleAdjustmentOptions) say what to refine;
    ``solver_options`` default to :data:`COLMAP_SOLVER_DEFAULTS` over sparselm's defaults. The input
    model is not changed. The adjusted model holds the best point the solver found, whatever its
    termination (see ``summary.termination``).
    """
    if options is None:
        options = BundleAdjustmentOptions(**option_kwargs)
    elif option_kwargs:
        raise ValueError("give bundle-adjustment options either as BundleAdjustmentOptions or as keywords, not both")
    if solver_options is None:
        solver_options = SolverOptions(**COLMAP_SOLVER_DEFAULTS)
    built = build_problem(model, options)
    summary = sparselm.solve(built.problem, solver_options)
    return solution_to_model(built), summary
