"""The linear-solver interface of the LM loop.

Every solver answers, for the current linearisation (whitened, loss-corrected J and r) and a
damping diagonal D given per call,

    (J^T J + diag(D)) step = -J^T r,

and returns a :class:`LinearSolution` with a status instead of raising: a factorization that is
not positive definite, or a step that is not finite, is an answer the LM loop meets with more
damping. Work is split in three tiers: ``__init__`` (once per problem: patterns, orderings,
symbolic analysis), ``linearize`` (once per Jacobian: products of J), ``solve`` (once per damping
trial: add D, factor numerically, solve).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Dict, Optional, Tuple

import numpy as np

from sparselm.core.evaluator import Evaluator
from sparselm.core.layout import Layout
from sparselm.util.timing import PhaseTimer


@dataclass
class LinearSolution:
    """A step, or why there is none. iterations: CG iterations for iterative solvers, else 1.
    exact: the step solves the damped system to rounding error (direct solvers), so the model
    decrease follows from g and D alone (see :mod:`sparselm.lm.minimizer`)."""

    step: Optional[np.ndarray]
    ok: bool
    message: str = ""
    iterations: int = 1
    exact: bool = True


@dataclass
class LinearSolverOptions:
    """Options every linear solver receives (unused ones are ignored by each solver)."""

    ordering: str = "amd"
    factorization: str = "auto"            # CHOLMOD mode: supernodal, simplicial, auto (linalg.cholmod)
    max_cg_iterations: int = 100
    cg_tolerance: float = 1e-6            # forcing term cap (eta) for iterative solvers
    min_cg_iterations: int = 0
    preconditioner: str = "schur_jacobi"
    extra: Dict[str, object] = field(default_factory=dict)


class LinearSolver(ABC):
    """Base class: subclasses set ``name`` and implement linearize() and solve()."""

    name: ClassVar[str] = ""
    #: True when linearize() itself fills evaluator.gradient and evaluator.column_norms
    provides_gradient: ClassVar[bool] = False

    def __init__(self, layout: Layout, evaluator: Evaluator, timer: PhaseTimer, options: LinearSolverOptions):
        self.layout = layout
        self.evaluator = evaluator
        self.timer = timer
        self.options = options

    @abstractmethod
    def linearize(self) -> None:
        """Absorb a new Jacobian (evaluator.jacobians / residuals / gradient)."""

    @abstractmethod
    def solve(self, diagonal: np.ndarray) -> LinearSolution:
        """Solve (J^T J + diag(diagonal)) step = -J^T r."""

    def info(self) -> dict:
        """Sizes and statistics for reports (nnz, factor size, ordering, ...)."""
        return {"name": self.name}

    def _failed(self, message: str) -> LinearSolution:
        return LinearSolution(None, False, message)

    @staticmethod
    def _finite_or_failure(step: np.ndarray, iterations: int = 1) -> LinearSolution:
        if not np.all(np.isfinite(step)):
            return LinearSolution(None, False, "the linear solve produced a non-finite step", iterations)
        return LinearSolution(step, True, "", iterations)


@dataclass(frozen=True)
class StructureCounts:
    """What the model flop counts of a solve's phases follow from (see :mod:`sparselm.profiling.structure`).

    columns        columns of the matrix the solver factors (S for the Schur solvers, else H).
    factor_flops   CHOLMOD's flop count of that factorization (None when not analysed).
    factor_nnz     nonzeros of its Cholesky factor (None when not analysed).
    gradient       flops of J^T r; assembly: of the products of J's blocks (J^T J or V, W, U).
    kf, ke         largest kept and eliminated block sizes; n_cells: (kept, eliminated) block pairs
                   sharing a residual; n_pairs: pairs of such cells per eliminated block; n_e:
                   eliminated blocks (all 0 without elimination).
    """

    columns: int
    factor_flops: Optional[float]
    factor_nnz: Optional[int]
    gradient: float
    assembly: float
    kf: int = 0
    ke: int = 0
    n_cells: int = 0
    n_pairs: int = 0
    n_e: int = 0


@dataclass(frozen=True)
class LinearSolverSpec:
    """What :mod:`sparselm.linalg.registry` knows of a linear solver; declared next to its class.

    name           the option value (``SolverOptions.linear_solver``, ``--linear-solver``).
    solver         the :class:`LinearSolver` subclass used by :func:`sparselm.solve`, or a function of
                   the same arguments returning one (a solver with variants).
    summary        one line for help texts.
    uses_schur     eliminates a group (needs one; the factored matrix is S, not H).
    uses_cholmod   factors with CHOLMOD (ordering and factorization options apply).
    dense_factor   factors a dense matrix with LAPACK.
    memory         memory(ctx) adds the solver's allocations to a
                   :class:`~sparselm.linalg.memory_model.MemoryContext` (bytes, see there).
    model_flops    model_flops(counts) -> {phase: flops per call} from a :class:`StructureCounts`.
    options        the SolverOptions fields the solver reads (beyond the LM loop's own).
    general        the variant for a general sparse Jacobian matrix (:func:`sparselm.least_squares`),
                   or None when the solver needs a Problem's block structure.
    """

    name: str
    solver: Callable
    summary: str
    memory: Callable
    model_flops: Callable[[StructureCounts], Dict[str, float]]
    uses_schur: bool = False
    uses_cholmod: bool = False
    dense_factor: bool = False
    options: Tuple[str, ...] = ()
    general: Optional[type] = None
