"""Linear solvers for the damped normal equations (see :mod:`sparselm.linalg.base`), registered in
:mod:`sparselm.linalg.registry`."""
from sparselm.linalg.base import LinearSolution, LinearSolver, LinearSolverOptions, LinearSolverSpec

__all__ = ["LinearSolution", "LinearSolver", "LinearSolverOptions", "LinearSolverSpec"]
