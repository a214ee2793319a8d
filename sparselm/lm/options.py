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

from sparselm.linalg import registry
from sparselm.linalg.cholmod import MODES, ORDERINGS

DAMPINGS = ("marquardt", "levenberg", "gauss_newton")
#: 'auto' and the linear solvers registered at import (:func:`option_choices` reads the registry now)
LINEAR_SOLVERS = ("auto",) + registry.names()
#: the allowed values of the options that take a name (linear_solver: see :func:`option_choices`)
CHOICES = {"damping": DAMPINGS, "linear_solver": LINEAR_SOLVERS, "ordering": ORDERINGS, "factorization": MODES,
           "preconditioner": ("schur_jacobi", "jacobi"), "schur_variant": ("implicit", "explicit"),
           "cg_termination": ("quadratic", "residual")}


def option_choices(name: str):
    """The allowed values of option ``name`` (linear_solver: 'auto' and the registered solvers), or
    None for an option that does not take a name."""
    if name == "linear_solver":
        return ("auto",) + registry.names()
    return CHOICES.get(name)


def _doc(text: str) -> dict:
    """Field metadata: the option's help text (read by the command line and :func:`option_help`)."""
    return {"help": text}


@dataclass
class SolverOptions:
    """Options of :func:`sparselm.solve`. Times in seconds; tolerances are relative.

    Each field's meaning is its help text (``option_help(name)``; the command line shows the same
    text and reads the defaults from here). The damping and the radius rule are derived in
    :mod:`sparselm.lm.strategy`; the linear solvers and the options each reads are in
    :mod:`sparselm.linalg.registry`; 'auto' picks by problem shape (:mod:`sparselm.linalg.auto`).
    """

    max_iterations: int = field(default=50, metadata=_doc(
        "iteration limit"))
    max_time_s: float = field(default=1e9, metadata=_doc(
        "time limit in seconds, counted from the start of solve()"))
    function_tolerance: float = field(default=1e-6, metadata=_doc(
        "stop when |cost change| <= X * cost"))
    gradient_tolerance: float = field(default=1e-10, metadata=_doc(
        "stop when max |gradient| <= X"))
    parameter_tolerance: float = field(default=1e-8, metadata=_doc(
        "stop when |step| <= X * (|x| + X)"))
    initial_trust_region_radius: float = field(default=1e4, metadata=_doc(
        "initial radius mu of the damped system (J^T J + D / mu) step = -J^T r"))
    max_trust_region_radius: float = field(default=1e16, metadata=_doc(
        "largest radius mu (smallest damping)"))
    min_trust_region_radius: float = field(default=1e-32, metadata=_doc(
        "stop (convergence) when mu falls below it"))
    min_relative_decrease: float = field(default=1e-3, metadata=_doc(
        "accept a step when actual / predicted decrease > X"))
    min_diagonal: float = field(default=1e-6, metadata=_doc(
        "Marquardt damping D = clamp(diag(J^T J), min_diagonal, max_diagonal)"))
    max_diagonal: float = field(default=1e32, metadata=_doc(
        "upper clamp of the Marquardt damping diagonal"))
    max_consecutive_invalid_steps: int = field(default=5, metadata=_doc(
        "fail after more than N steps in a row whose linear solve failed or whose model did not decrease"))
    damping: str = field(default="marquardt", metadata=_doc(
        "LM damping: marquardt (scaled by diag(J^T J)), levenberg (identity) or gauss_newton"))
    jacobi_scaling: bool = field(default=False, metadata=_doc(
        "scale the damping as Ceres' column (Jacobi) scaling does (see sparselm.lm.strategy)"))
    linear_solver: str = field(default="auto", metadata=_doc(
        "linear solver for the damped normal equations; 'auto' picks a Schur solver for BA"))
    ordering: str = field(default="amd", metadata=_doc(
        "CHOLMOD fill-reducing ordering"))
    factorization: str = field(default="auto", metadata=_doc(
        "CHOLMOD factorization method (auto: supernodal only for dense-column factors, by their flops per entry)"))
    preconditioner: str = field(default="schur_jacobi", metadata=_doc(
        "iterative_schur: block preconditioner, S_ii (schur_jacobi) or U_ii + D_i (jacobi)"))
    schur_variant: str = field(default="implicit", metadata=_doc(
        "iterative_schur: S never formed (implicit) or formed (explicit)"))
    cg_termination: str = field(default="quadratic", metadata=_doc(
        "iterative_schur: stop CG on the quadratic model's relative decrease (quadratic, Ceres' LM rule) "
        "or when |r| <= cg_tolerance |b| (residual)"))
    min_cg_iterations: int = field(default=0, metadata=_doc(
        "iterative_schur: at least N CG iterations"))
    max_cg_iterations: int = field(default=100, metadata=_doc(
        "iterative_schur: at most N CG iterations per LM trial (Ceres: 500; 100 reached the same cost as 500 "
        "in the same time at 1e6 observations, see docs/scaling.md)"))
    cg_tolerance: float = field(default=1e-1, metadata=_doc(
        "iterative_schur: the forcing term eta of the CG stopping test"))
    threads: Optional[int] = field(default=None, metadata=_doc(
        "numba worker threads (default: all cores)"))
    verbose: bool = field(default=False, metadata=_doc(
        "print the iteration table as the solve runs"))
    callbacks: List[Callable] = field(default_factory=list, metadata=_doc(
        "called with each IterationRecord; return True to stop the solve"))

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
        for name in CHOICES:
            allowed = option_choices(name)
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


def option_default(name: str):
    """The default of SolverOptions field ``name``."""
    f = SolverOptions.__dataclass_fields__[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def option_help(name: str) -> str:
    """The help text of SolverOptions field ``name``."""
    return SolverOptions.__dataclass_fields__[name].metadata["help"]
