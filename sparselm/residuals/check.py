"""Compare a residual type's analytic Jacobian with central differences (a gradient checker).

Ambient slots are differentiated by :func:`sparselm.residuals.numeric.numeric_jacobian`; a slot
whose Jacobian is in a manifold's tangent (``ResidualType.tangent_manifolds``) by central
differences of r(x [+] h e_c), each slot on its own copy of the parameters so that two slots of
one group are perturbed independently."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from sparselm.residuals.base import ResidualType
from sparselm.residuals.numeric import numeric_jacobian
from sparselm.util.threads import one_solve_at_a_time


@dataclass
class JacobianCheck:
    """Result of :func:`check_jacobian`: the worst relative error per slot and where it occurs."""

    max_relative_error: List[float]   # per slot
    worst_instance: List[int]         # per slot
    tolerance: float
    analytic: List[np.ndarray]
    numeric: List[np.ndarray]

    @property
    def ok(self) -> bool:
        return all(e <= self.tolerance for e in self.max_relative_error)

    def __str__(self) -> str:
        rows = [f"slot {j}: max relative error {e:.3e} (instance {i})"
                for j, (e, i) in enumerate(zip(self.max_relative_error, self.worst_instance))]
        return ("Jacobian check " + ("passed" if self.ok else "FAILED") + f" (tolerance {self.tolerance:g})\n  "
                + "\n  ".join(rows))


@one_solve_at_a_time
def check_jacobian(residual_type: ResidualType, params: Sequence[np.ndarray], index, data=None,
                   tolerance: float = 1e-6) -> JacobianCheck:
    """Evaluate analytic and numeric Jacobians of ``residual_type`` and compare them per slot.

    params: one (n_blocks, k_j) array per slot; index (n, n_slots); data (n, data_size).
    The relative error of an entry is |a - d| / max(1, |a|, |d|) (absolute near zero).
    """
    if residual_type.jacobian_kernel is None:
        raise ValueError(f"residual type {residual_type.name!r} has no analytic Jacobian to check")
    params = tuple(np.ascontiguousarray(p, dtype=np.float64) for p in params)
    index = np.ascontiguousarray(index, dtype=np.int64)
    n = index.shape[0]
    m = residual_type.residual_size
    data = np.zeros((n, residual_type.data_size)) if data is None else np.ascontiguousarray(data, dtype=np.float64)
    res_a, res_n = np.empty((n, m)), np.empty((n, m))
    widths = [k if residual_type.slot_manifold(j) is None else residual_type.slot_manifold(j).tangent_size
              for j, k in enumerate(residual_type.block_sizes)]
    jac_a = tuple(np.empty((n, m, k)) for k in widths)
    jac_n = tuple(np.empty((n, m, k)) for k in residual_type.block_sizes)
    residual_type.jacobian_kernel(params, index, data, res_a, jac_a)
    numeric_jacobian(residual_type.residual_kernel, params, index, data, res_n, jac_n)
    for slot in range(residual_type.n_slots):
        manifold = residual_type.slot_manifold(slot)
        if manifold is not None:
            jac_n = jac_n[:slot] + (_tangent_differences(residual_type, params, index, data, slot, manifold),) \
                + jac_n[slot + 1:]
    errors, worst = [], []
    for a, d in zip(jac_a, jac_n):
        rel = np.abs(a - d) / np.maximum(1.0, np.maximum(np.abs(a), np.abs(d)))
        per_instance = rel.reshape(n, -1).max(axis=1)
        i = int(np.argmax(per_instance))
        errors.append(float(per_instance[i]))
        worst.append(i)
    return JacobianCheck(errors, worst, tolerance, list(jac_a), list(jac_n))


def _tangent_differences(residual_type: ResidualType, params, index, data, slot: int, manifold,
                         step: float = 1e-6) -> np.ndarray:
    """d r / d delta of r(..., x_slot [+] delta, ...) at delta = 0 by central differences: (n, m, t)."""
    n, m, t = index.shape[0], residual_type.residual_size, manifold.tangent_size
    out = np.empty((n, m, t))
    plus, minus = np.empty((n, m)), np.empty((n, m))
    base = params[slot]
    for c in range(t):
        delta = np.zeros((base.shape[0], t))
        delta[:, c] = step
        for sign, res in ((1.0, plus), (-1.0, minus)):
            moved = list(params)
            moved[slot] = manifold.plus(base, sign * delta)
            residual_type.residual_kernel(tuple(moved), index, data, res)
        out[:, :, c] = (plus - minus) / (2.0 * step)
    return out
