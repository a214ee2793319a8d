"""Linear solvers for the damped normal equations; see :mod:`sparselm.linalg.base`."""
from sparselm.linalg.base import LinearSolution, LinearSolver, LinearSolverOptions
from sparselm.linalg.dense import DenseNormalCholesky
from sparselm.linalg.sparse_normal import SparseNormalCholesky
from sparselm.linalg.schur.direct import DenseSchur, SparseSchur
from sparselm.linalg.schur.iterative import IterativeSchur

SOLVERS = {cls.name: cls for cls in (DenseNormalCholesky, SparseNormalCholesky, DenseSchur, SparseSchur,
                                     IterativeSchur)}

__all__ = ["LinearSolution", "LinearSolver", "LinearSolverOptions", "SOLVERS"]
