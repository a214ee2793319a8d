"""sparselm: sparse Levenberg-Marquardt for large nonlinear least squares, numba + CHOLMOD.

    problem = sparselm.Problem()
    problem.add_parameter_group("cameras", cameras)
    problem.add_parameter_group("points", points, eliminate=True)
    problem.add_residual_group("obs", BAL_REPROJECTION, [("cameras", ci), ("points", pi)], observations)
    summary = sparselm.solve(problem, verbose=True)
"""
__version__ = "0.1.0"

from sparselm.threads import set_environment_defaults as _set_thread_defaults

_set_thread_defaults()

from sparselm.options import SolverOptions  # noqa: E402
from sparselm.problem import Problem  # noqa: E402
from sparselm.residuals import ResidualType, check_jacobian  # noqa: E402
from sparselm.residuals.function import residual  # noqa: E402
from sparselm import math  # noqa: E402
from sparselm.scipy_api import least_squares  # noqa: E402
from sparselm.solver import solve  # noqa: E402
from sparselm.summary import IterationRecord, Summary  # noqa: E402

__all__ = ["Problem", "ResidualType", "SolverOptions", "Summary", "IterationRecord", "solve", "check_jacobian",
           "least_squares", "residual", "math"]
