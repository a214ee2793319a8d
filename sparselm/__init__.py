"""sparselm: sparse Levenberg-Marquardt for large nonlinear least squares, numba + CHOLMOD.

    import sparselm
    from sparselm import BAL_REPROJECTION

    problem = sparselm.Problem()
    problem.add_parameter_group("cameras", cameras)
    problem.add_parameter_group("points", points, eliminate=True)
    problem.add_residual_group("obs", BAL_REPROJECTION, [("cameras", ci), ("points", pi)], observations)
    summary = sparselm.solve(problem, verbose=True)

The public API is what this module exports; the layers behind it are described in
docs/architecture.md.
"""
from sparselm.util.threads import set_environment_defaults as _set_thread_defaults

_set_thread_defaults()

from sparselm.bal.camera import BAL_REPROJECTION  # noqa: E402
from sparselm.core.evaluator import NonFiniteError  # noqa: E402
from sparselm.core.problem import Problem  # noqa: E402
from sparselm.covariance import Covariance, covariance  # noqa: E402  (the function: sparselm.covariance(problem, ...))
from sparselm.lm.memory import InsufficientMemoryError  # noqa: E402
from sparselm.manifolds import Manifold, check_manifold  # noqa: E402
from sparselm.lm.options import SolverOptions  # noqa: E402
from sparselm.lm.solve import solve  # noqa: E402
from sparselm.lm.summary import IterationRecord, Summary  # noqa: E402
from sparselm.residuals import ResidualType, check_jacobian  # noqa: E402
from sparselm.residuals import library as models  # noqa: E402
from sparselm.residuals.function import residual  # noqa: E402
from sparselm import math  # noqa: E402
from sparselm.scipy_api import least_squares  # noqa: E402

__version__ = "0.1.0"
__all__ = ["covariance", "Covariance", "Problem", "ResidualType", "SolverOptions", "Summary", "IterationRecord",
           "solve", "check_jacobian", "least_squares", "NonFiniteError", "InsufficientMemoryError", "BAL_REPROJECTION",
           "models", "Manifold", "check_manifold", "residual", "math"]
