"""Solver options, validated up front; defaults follow Ceres Solver's.

Ceres defaults (solver.h): function_tolerance 1e-6, gradient_tolerance 1e-10, parameter_tolerance
1e-8, max_num_iterations 50, initial_trust_region_radius 1e4, max 1e16, min 1e-32,
min_relative_decrease 1e-3, min/max_lm_diagonal 1e-6/1e32, max_num_consecutive_invalid_steps 5.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional

DAMPINGS = ("marquardt", "levenberg", "gauss_newton")
LINEAR_SOLVERS = ("auto", "dense", "sparse_normal_cholesky", "dense_schur", "sparse_schur", "iterative_schur")


@dataclass
class SolverOptions:
    """Options of :func:`sparselm.solve`. Times in seconds; tolerances are relative.

    damping          'marquardt' (lambda * clamp(diag(J^T J))), 'levenberg' (lambda * I) or
                     'gauss_newton' (no damping: every decreasing step is taken).
    linear_solver    one of LINEAR_SOLVERS; 'auto' picks by problem shape (see sparselm.linalg.auto).
    preconditioner, schur_variant, cg_termination, min/max_cg_iterations, cg_tolerance
                     iterative_schur: 'schur_jacobi' or 'jacobi'; 'implicit' (S never formed) or
                     'explicit'; stop CG on the residual (|r| <= cg_tolerance |b|) or, as Ceres'
                     LM, on the 'quadratic' model's relative decrease.
    threads          numba worker threads (None: all cores).
    jacobi_scaling   scale the damping as Ceres' column (Jacobi) scaling does (see
                     :mod:`sparselm.lm.strategy`); off by default since Marquardt damping is already
                     invariant to the scale of the parameters.
    callbacks        called with each IterationRecord; return True to stop the solve.
    """

    max_iterations: int = 50
    max_time_s: float = 1e9
    function_tolerance: float = 1e-6
    gradient_tolerance: float = 1e-10
    parameter_tolerance: float = 1e-8
    initial_trust_region_radius: float = 1e4
    max_trust_region_radius: float = 1e16
    min_trust_region_radius: float = 1e-32
    min_relative_decrease: float = 1e-3
    min_diagonal: float = 1e-6
    max_diagonal: float = 1e32
    max_consecutive_invalid_steps: int = 5
    damping: str = "marquardt"
    jacobi_scaling: bool = False
    linear_solver: str = "auto"
    ordering: str = "amd"
    factorization: str = "supernodal"
    preconditioner: str = "schur_jacobi"
    schur_variant: str = "implicit"
    cg_termination: str = "residual"
    min_cg_iterations: int = 0
    max_cg_iterations: int = 500
    cg_tolerance: float = 1e-1
    threads: Optional[int] = None
    verbose: bool = False
    callbacks: List[Callable] = field(default_factory=list)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first option that is out of range."""
        positive = ("max_time_s", "initial_trust_region_radius", "max_trust_region_radius", "min_trust_region_radius",
                    "min_diagonal", "max_diagonal", "cg_tolerance")
        non_negative = ("function_tolerance", "gradient_tolerance", "parameter_tolerance", "min_relative_decrease")
        for name in positive + non_negative:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                raise ValueError(f"option {name}: expected a number, got {v!r}")
            if (name in positive and v <= 0) or v < 0:
                raise ValueError(f"option {name}: must be {'positive' if name in positive else 'non-negative'}, got {v}")
        for name in ("max_iterations", "max_consecutive_invalid_steps", "max_cg_iterations", "min_cg_iterations"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"option {name}: expected a non-negative integer, got {v!r}")
        if self.damping not in DAMPINGS:
            raise ValueError(f"option damping: unknown {self.damping!r}; choose one of {', '.join(DAMPINGS)}")
        if self.linear_solver not in LINEAR_SOLVERS:
            raise ValueError(f"option linear_solver: unknown {self.linear_solver!r}; "
                             f"choose one of {', '.join(LINEAR_SOLVERS)}")
        from sparselm.linalg.cholmod import MODES, ORDERINGS  # no scikit-sparse import at this point

        if self.ordering not in ORDERINGS:
            raise ValueError(f"option ordering: unknown {self.ordering!r}; choose one of {', '.join(ORDERINGS)}")
        if self.factorization not in MODES:
            raise ValueError(f"option factorization: unknown {self.factorization!r}; choose one of {', '.join(MODES)}")
        for name, allowed in (("preconditioner", ("schur_jacobi", "jacobi")),
                              ("schur_variant", ("implicit", "explicit")),
                              ("cg_termination", ("residual", "quadratic"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"option {name}: unknown {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        if self.min_diagonal > self.max_diagonal:
            raise ValueError("option min_diagonal must not exceed max_diagonal")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"option threads: expected a positive integer or None, got {self.threads!r}")
        if not all(callable(c) for c in self.callbacks):
            raise ValueError("option callbacks: every entry must be callable")

    @classmethod
    def from_kwargs(cls, **kwargs) -> "SolverOptions":
        """Build options from keyword arguments; an unknown name is a ValueError listing the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)}; known options: {', '.join(sorted(known))}")
        return cls(**kwargs)

    def to_dict(self) -> dict:
        """Plain-data form for reports (callbacks summarised by count)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "callbacks"}
        d["callbacks"] = len(self.callbacks)
        return d
