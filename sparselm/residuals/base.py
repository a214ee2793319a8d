"""The contract between a residual type and the rest of sparselm.

A *residual type* describes one kind of residual block r_i = f(x_{b(i,0)}, x_{b(i,1)}, ...; d_i) of
size m that touches ``len(block_sizes)`` parameter blocks ("slots"). It is evaluated for all
instances of a residual group in one call of a numba kernel (``prange`` over instances), which
writes into preallocated arrays:

``residual_kernel(params, index, data, residuals)``
    params    tuple of 2-D float64 arrays, one per slot: the values of the parameter group that slot
              refers to, shape (n_blocks_of_that_group, block_sizes[j]); two slots may share an array.
    index     (n, n_slots) int64: ``index[i, j]`` is the row of ``params[j]`` instance i touches.
    data      (n, data_size) float64: per-instance constants (e.g. the observed pixel).
    residuals (n, m) float64, written.

``jacobian_kernel(params, index, data, residuals, jacobians)``
    the same, and also ``jacobians[j][i]`` = d r_i / d x_{index[i, j]}, each (n, m, block_sizes[j]).

Jacobians are taken with respect to the stored (ambient) coordinates of each block; the evaluator
turns them into tangent Jacobians for groups on a manifold (J_amb P(x), see
:mod:`sparselm.manifolds`). A type that differentiates in tangent terms directly names, per slot,
the manifold whose tangent its Jacobian refers to (``tangent_manifolds``; None for an ambient
slot): that slot's Jacobian is then (n, m, tangent_size) and the slot only accepts groups on that
manifold.

A type given without ``jacobian_kernel`` is differentiated numerically (central differences, see
:mod:`sparselm.residuals.numeric`); :func:`sparselm.residuals.check_jacobian` compares the two.
Residuals are raw (unweighted): Sigma whitening and robust losses are applied by the evaluator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from sparselm.manifolds.base import Manifold


@dataclass(frozen=True)
class ResidualType:
    """One kind of residual block and the numba kernels that evaluate it for a whole group.

    name            short identifier, used in reports.
    residual_size   m, rows per residual block.
    block_sizes     size of the parameter block in each slot, e.g. (9, 3) for camera and point.
    data_size       number of float64 constants per instance (0 allowed).
    residual_kernel kernel writing residuals only (see the module docstring).
    jacobian_kernel kernel writing residuals and Jacobian blocks, or None for numeric differences.
    jacobian_kernel_for  optional: ``jacobian_kernel_for(needed)`` with ``needed[j][c]`` True for the
                    Jacobian columns wanted (per slot j, coordinate c) returns a kernel with the
                    calling convention of ``jacobian_kernel`` that writes only those columns and
                    leaves the others untouched (constant slots and coordinates then cost nothing;
                    the evaluator relies on it and zeroes no column such a kernel skips).
    observation_error  optional capability: observation_error(slot_values, index, data) -> (n,) the
                    unweighted error of each instance in the units of its observation (the BAL
                    reprojection: pixels), from the values of the groups of its slots (a tuple, one
                    array per slot), the group's (n, slots) index and (n, data_size) data. Reports
                    and plots (``sparselm profile``) show it where a type has it.
    tangent_manifolds  None, or per slot the Manifold whose tangent coordinates the Jacobian kernel
                    differentiates in (None for an ambient slot); needs a jacobian_kernel.
    """

    name: str
    residual_size: int
    block_sizes: Tuple[int, ...]
    data_size: int
    residual_kernel: Callable
    jacobian_kernel: Optional[Callable] = None
    jacobian_kernel_for: Optional[Callable] = None
    observation_error: Optional[Callable] = None
    tangent_manifolds: Optional[Tuple[Optional[Manifold], ...]] = None

    def __post_init__(self):
        if self.residual_size < 1:
            raise ValueError(f"residual type {self.name!r}: residual_size must be >= 1")
        if len(self.block_sizes) < 1 or any(int(k) < 1 for k in self.block_sizes):
            raise ValueError(f"residual type {self.name!r}: block_sizes must be positive, got {self.block_sizes}")
        if self.data_size < 0:
            raise ValueError(f"residual type {self.name!r}: data_size must be >= 0")
        if self.tangent_manifolds is not None:
            if len(self.tangent_manifolds) != len(self.block_sizes) or self.jacobian_kernel is None:
                raise ValueError(f"residual type {self.name!r}: tangent_manifolds needs one entry per slot "
                                 "and a jacobian_kernel")
            for k, m in zip(self.block_sizes, self.tangent_manifolds):
                if m is not None and m.ambient_size != k:
                    raise ValueError(f"residual type {self.name!r}: manifold {m.name!r} has blocks of size "
                                     f"{m.ambient_size}, the slot {k}")

    def slot_manifold(self, slot: int) -> Optional[Manifold]:
        """The manifold whose tangent slot ``slot``'s Jacobian is in, or None (ambient)."""
        return None if self.tangent_manifolds is None else self.tangent_manifolds[slot]

    @property
    def n_slots(self) -> int:
        """Number of parameter blocks each residual block touches."""
        return len(self.block_sizes)

    @property
    def has_analytic_jacobian(self) -> bool:
        """True when the type brings its own Jacobian kernel."""
        return self.jacobian_kernel is not None
