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
from typing import ClassVar, Dict, Optional

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
    factorization: str = "supernodal"      # CHOLMOD mode: supernodal, simplicial, auto
    max_cg_iterations: int = 500
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
