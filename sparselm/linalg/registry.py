"""The one registry of linear solvers: name -> :class:`~sparselm.linalg.base.LinearSolverSpec`.

Each solver declares its spec next to its class (name, class, capabilities: eliminates a group,
uses CHOLMOD, factors densely; its memory estimate and model flop counts; the options it reads; its
variant for :func:`sparselm.least_squares`). The options' validation, the ``auto`` choice, the memory
estimate, the profiler and the command line all read this registry, so adding a linear solver is its
own module plus one line in :data:`SPECS` below.
"""
from __future__ import annotations

from typing import Dict, Tuple

from sparselm.linalg import dense, sparse_normal
from sparselm.linalg.base import LinearSolverSpec
from sparselm.linalg.schur import direct, iterative

#: name -> spec, in the order of help texts (one line per solver).
SPECS: Dict[str, LinearSolverSpec] = {spec.name: spec for spec in (
    dense.SPEC,
    sparse_normal.SPEC,
    direct.DENSE_SCHUR,
    direct.SPARSE_SCHUR,
    iterative.SPEC,
)}


def names() -> Tuple[str, ...]:
    """The registered linear solvers' names."""
    return tuple(SPECS)


def get(name: str) -> LinearSolverSpec:
    """The spec of linear solver ``name``; ValueError naming the registered ones otherwise."""
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown linear solver {name!r}; registered: {', '.join(SPECS)}") from None


def general_names() -> Tuple[str, ...]:
    """The solvers with a variant for a general sparse Jacobian matrix (:func:`sparselm.least_squares`)."""
    return tuple(name for name, spec in SPECS.items() if spec.general is not None)
