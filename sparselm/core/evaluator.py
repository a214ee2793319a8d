"""x -> cost, whitened residuals, Jacobian blocks, gradient; applies Sigma and the robust loss.

For residual instance i with square-root information A_i (A_i^T A_i = Sigma_i^-1) and loss rho:

    r'_i = A_i r_i,   J'_i = A_i J_i,   s_i = |r'_i|^2,   cost = 1/2 sum_i rho(s_i).

With a non-trivial loss, Triggs' correction (as Ceres' ``Corrector``) rescales r' and J' so that
the ordinary least-squares model 1/2 |r'' + J'' d|^2 has the gradient and (approximately) the
Hessian of 1/2 rho(|r' + J' d|^2):

    alpha = 1 - sqrt(1 + 2 s rho''/rho')   (alpha = 0 when rho'' <= 0 or s = 0, as in Ceres)
    r'' = sqrt(rho') / (1 - alpha) r',      J'' = sqrt(rho') (I - alpha r' r'^T / s) J'.

Downstream code sees only r'' and J'' and needs to know nothing about Sigma or the loss.
Coordinates held constant get zero Jacobian columns: a residual type's ``jacobian_kernel_for``
variant leaves them untouched (zero from allocation), the others are zeroed here.

Manifolds: a slot whose group is not Euclidean, and whose residual type differentiates in ambient
terms, is evaluated into an ambient buffer and turned into the tangent Jacobian J_amb P(x) (P the
group's plus-Jacobian, computed once per group per linearisation) before whitening; steps are
applied as x [+] delta. Euclidean slots are written in place, as before.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import numba
import numpy as np

from sparselm.core.loss import plain_cost, robust_correct, robust_cost
from sparselm.core.problem import Problem
from sparselm.manifolds.tangent import ambient_to_tangent, apply_tangent_step
from sparselm.residuals.numeric import numeric_jacobian
from sparselm.core.layout import Layout, accumulate_gradient_and_column_norms, model_decrease
from sparselm.util import pages
from sparselm.util.numerics import all_finite
from sparselm.util.timing import PhaseTimer


class NonFiniteError(FloatingPointError):
    """A residual or Jacobian evaluated to NaN/Inf; the message names the group and instance."""


@numba.njit(parallel=True, cache=True)
def _whiten_matrices(a, residuals, jacobian, work):
    """r_i <- A_i r_i and J_i <- A_i J_i for (n, m, m) square-root information A; work is (n, m).
    (No allocation inside prange: numba may hoist it and share it between threads.)"""
    n, m = residuals.shape
    width = jacobian.shape[2]
    for i in numba.prange(n):
        tmp = work[i]
        for r in range(m):
            s = 0.0
            for q in range(m):
                s += a[i, r, q] * residuals[i, q]
            tmp[r] = s
        for r in range(m):
            residuals[i, r] = tmp[r]
        if width > 0:
            for c in range(width):
                for r in range(m):
                    s = 0.0
                    for q in range(m):
                        s += a[i, r, q] * jacobian[i, q, c]
                    tmp[r] = s
                for r in range(m):
                    jacobian[i, r, c] = tmp[r]


class Evaluator:
    """Evaluates a Problem at given parameter values into preallocated arrays.

    ``values`` everywhere is a dict {group name: (n_blocks, block_size) array}.
    After :meth:`linearize`: ``residuals[g]`` (n, m), ``jacobians[g]`` (n, m, K), ``gradient``
    (n_columns,) = J^T r and ``column_norms`` = diag(J^T J), all whitened and loss-corrected.
    Per-instance arrays are in the layout's internal order: row k belongs to the user's instance
    ``layout.residuals[g].order[k]`` (see :meth:`in_user_order`).
    """

    def __init__(self, problem: Problem, layout: Layout, timer: PhaseTimer):
        self.problem = problem
        self.layout = layout
        self.timer = timer
        self.residuals: List[np.ndarray] = []
        self.jacobians: List[np.ndarray] = []
        self._kernel_views: List[Tuple[np.ndarray, ...]] = []
        self._conversions: List[list] = []  # per group: (parameter group, block index, ambient view, tangent view)
        self._trial_residuals: List[np.ndarray] = []
        self._whiten_work: List[np.ndarray] = []  # (n, m) scratch, only for per-instance matrix weights
        for rg, rl in zip(problem.residual_groups, layout.residuals):
            n, m = rg.n_instances, rg.residual_size
            jac = pages.zeros((n, m, rl.jacobian_width))
            self.residuals.append(pages.zeros((n, m)))
            self.jacobians.append(jac)
            tangent_views = [jac[:, :, o:o + k] for o, k in zip(rl.slot_offset, rl.slot_size)]
            self._kernel_views.append(self._ambient_views(rg, rl, tangent_views))
            self._trial_residuals.append(pages.zeros((n, m)))
            matrix_weight = isinstance(rl.sqrt_information, np.ndarray) and rl.sqrt_information.ndim == 3
            self._whiten_work.append(np.zeros((n, m) if matrix_weight else (0, m)))
        self.gradient = pages.zeros(layout.n_columns)
        self.column_norms = pages.zeros(layout.n_columns)
        kernels = [_jacobian_kernel(problem, rg) for rg in problem.residual_groups]
        self._jacobian_kernels = [kernel for kernel, _ in kernels]
        self._written_constant_columns = [columns for _, columns in kernels]
        self.cost = math.nan

    def _ambient_views(self, rg, rl, tangent_views):
        """The Jacobian views the residual kernel writes: the tangent ones, except for ambient slots
        on a non-Euclidean manifold, which get views of an ambient buffer converted after each call."""
        groups = [self.problem.parameter_groups[name] for name in rg.groups]
        converted = [j for j, g in enumerate(groups)
                     if not g.manifold.euclidean and rg.residual_type.slot_manifold(j) is None]
        conversions = []
        views = list(tangent_views)
        if converted:
            widths = [groups[j].block_size for j in converted]
            buffer = np.zeros((rg.n_instances, rg.residual_size, sum(widths)))
            offset = 0
            for j, a in zip(converted, widths):
                views[j] = buffer[:, :, offset:offset + a]
                offset += a
                conversions.append((groups[j], np.ascontiguousarray(rl.index[:, j]), views[j], tangent_views[j]))
        self._conversions.append(conversions)
        return tuple(views)

    def _to_tangent(self, g: int, values: Dict[str, np.ndarray], plus_jacobians: Dict[str, np.ndarray]) -> None:
        for group, block_index, ambient, tangent in self._conversions[g]:
            p = plus_jacobians.get(group.name)
            if p is None:
                p = plus_jacobians[group.name] = group.manifold.plus_jacobian(values[group.name])
            ambient_to_tangent(ambient, block_index, p, tangent)

    # -- evaluation ----------------------------------------------------------------------------
    def _params(self, rg, values: Dict[str, np.ndarray]):
        return tuple(values[g] for g in rg.groups)

    def _weight(self, g, rg, residuals, jacobian):
        a = self.layout.residuals[g].sqrt_information
        if a is None:
            return
        if isinstance(a, float):
            residuals *= a
            if jacobian is not None:
                jacobian *= a
        elif a.ndim == 1:
            residuals *= a[:, None]
            if jacobian is not None:
                jacobian *= a[:, None, None]
        else:
            _whiten_matrices(a, residuals, jacobian if jacobian is not None else np.zeros((0, 0, 0)),
                             self._whiten_work[g])

    def cost_at(self, values: Dict[str, np.ndarray]) -> float:
        """Cost 1/2 sum rho(|r'_i|^2) at ``values`` (NaN if any residual is not finite)."""
        with self.timer.phase("residual"):
            total = 0.0
            for g, (rg, res) in enumerate(zip(self.problem.residual_groups, self._trial_residuals)):
                rl = self.layout.residuals[g]
                rg.residual_type.residual_kernel(self._params(rg, values), rl.index, rl.data, res)
                self._weight(g, rg, res, None)
                total += plain_cost(res) if rg.loss.is_trivial else robust_cost(rg.loss.id, rg.loss.scale, res)
            return total if math.isfinite(total) else math.nan

    def linearize(self, values: Dict[str, np.ndarray], gradient: bool = True, check_jacobian: bool = True) -> float:
        """Evaluate residuals, Jacobian and (unless ``gradient`` is False, for a linear solver that
        computes them in its own pass) gradient and column norms at ``values``; returns the cost.

        Raises NonFiniteError naming the group and instance if anything is NaN/Inf. With
        ``check_jacobian`` False the Jacobian is not scanned here (a pass over all of it: 6% of a
        problem-21 solve): the caller must call :meth:`check_linearization_finite` once gradient and
        column norms exist, which finds every non-finite entry of a free column through its column
        norm (the sum of squares of a NaN or an infinity is not finite) and then names the instance.
        """
        with self.timer.phase("jacobian"):
            total = 0.0
            plus_jacobians: Dict[str, np.ndarray] = {}
            for g, rg in enumerate(self.problem.residual_groups):
                res, jac, views = self.residuals[g], self.jacobians[g], self._kernel_views[g]
                params = self._params(rg, values)
                rl = self.layout.residuals[g]
                if self._jacobian_kernels[g] is not None:
                    self._jacobian_kernels[g](params, rl.index, rl.data, res, views)
                else:
                    numeric_jacobian(rg.residual_type.residual_kernel, params, rl.index, rl.data, res, views)
                if self._conversions[g]:
                    self._to_tangent(g, values, plus_jacobians)
                self._check_finite(g, res, jac if check_jacobian else None)
                self._weight(g, rg, res, jac)
                if rg.loss.is_trivial:
                    total += plain_cost(res)
                else:
                    total += robust_correct(rg.loss.id, rg.loss.scale, res, jac)
                columns = self._written_constant_columns[g]
                if columns.size:
                    jac[:, :, columns] = 0.0
        self.cost = total
        if not gradient:
            return total
        with self.timer.phase("gradient"):
            self.gradient[:] = 0.0
            self.column_norms[:] = 0.0
            lay = self.layout
            for g, rl in enumerate(lay.residuals):
                accumulate_gradient_and_column_norms(rl.use_ptr, rl.use_instance, rl.use_slot, rl.slot_offset,
                                                     lay.block_col, lay.block_size, self.residuals[g],
                                                     self.jacobians[g], self.gradient, self.column_norms)
        self.cost = total
        return total

    def _check_finite(self, g: int, res: np.ndarray, jac: Optional[np.ndarray]) -> None:
        """NonFiniteError naming the first instance of group ``g`` whose residual or Jacobian (None: the
        residual only) holds a NaN or an infinity."""
        if all_finite(res) and (jac is None or all_finite(jac)):
            return
        rg = self.problem.residual_groups[g]
        bad = ~np.isfinite(res).all(axis=1)
        if jac is not None:
            bad |= ~np.isfinite(jac).all(axis=(1, 2))
        i = int(self.layout.residuals[g].order[np.flatnonzero(bad)].min())
        blocks = ", ".join(f"{g}[{int(rg.index[i, j])}]" for j, g in enumerate(rg.groups))
        raise NonFiniteError(f"residual group {rg.name!r}: instance {i} ({blocks}) has a non-finite residual or "
                             f"Jacobian ({int(bad.sum())} instances in all)")

    def check_linearization_finite(self, cost: float) -> None:
        """Raise NonFiniteError unless the cost, the gradient J^T r and diag(J^T J) of the last
        linearisation are finite: with finite residuals and Jacobians they still overflow when their
        products or sums leave the float64 range. The message names the residual group with the
        largest whitened residual or Jacobian entry."""
        if math.isfinite(cost) and np.isfinite(self.gradient).all() and np.isfinite(self.column_norms).all():
            return
        for g, (res, jac) in enumerate(zip(self.residuals, self.jacobians)):
            self._check_finite(g, res, jac)  # a NaN or an infinity stays one through weighting and loss
        what = "the cost" if not math.isfinite(cost) else "the gradient J^T r or diag(J^T J)"
        largest = [(float(np.max(np.abs(res), initial=0.0)), float(np.max(np.abs(jac), initial=0.0)))
                   for res, jac in zip(self.residuals, self.jacobians)]
        g = int(np.argmax([r * max(j, 1.0) for r, j in largest]))
        raise NonFiniteError(f"{what} overflows the float64 range: residual group "
                             f"{self.problem.residual_groups[g].name!r} has whitened residuals up to "
                             f"{largest[g][0]:.3g} and Jacobian entries up to {largest[g][1]:.3g}")

    def model_cost_change(self, step: np.ndarray) -> float:
        """Decrease of the linear model, L(0) - L(step) = -(J step)^T (r + J step / 2)."""
        lay = self.layout
        return sum(float(model_decrease(rl.block, rl.slot_offset, lay.block_col, lay.block_size, self.jacobians[g],
                                        self.residuals[g], step)) for g, rl in enumerate(lay.residuals))

    def in_user_order(self, g: int, array: np.ndarray) -> np.ndarray:
        """A per-instance array of residual group g (internal order) in the user's order."""
        out = np.empty_like(array)
        out[self.layout.residuals[g].order] = array
        return out

    # -- parameter updates --------------------------------------------------------------------
    def apply_step(self, values: Dict[str, np.ndarray], step: np.ndarray, out: Dict[str, np.ndarray]) -> None:
        """out = values [+] step on the free blocks (x + step when Euclidean; constant blocks copied)."""
        for name, ids in self.layout.block_id.items():
            manifold = self.problem.parameter_groups[name].manifold
            if manifold.euclidean:
                _apply_block_step(values[name], ids, self.layout.block_col, step, out[name])
            else:
                apply_tangent_step(manifold, values[name], ids, self.layout.block_col, step, out[name])


def _jacobian_kernel(problem: Problem, rg):
    """``(kernel, columns)``: the Jacobian kernel to call for residual group ``rg`` and the Jacobian
    columns of constant coordinates it writes, which :meth:`Evaluator.linearize` zeroes after it.

    A type that offers ``jacobian_kernel_for`` gets the variant that skips the columns of constant
    coordinates and of slots whose blocks are all constant (they stay zero from allocation: weighting
    and the loss mix rows, never columns); it still writes the constant coordinates of a free
    non-Euclidean group (its tangent columns are wanted all or none). Any other type writes every
    column (``jacobian_kernel``, or numeric differences when it has none)."""
    rt = rg.residual_type
    needed, written = [], []
    for j, gname in enumerate(rg.groups):
        pg = problem.parameter_groups[gname]
        free = not bool(pg.constant.all())
        constant = np.asarray(pg.constant_coordinates, dtype=bool)
        ambient = pg.manifold.euclidean and rt.slot_manifold(j) is None
        if ambient:
            needed.append(tuple(free and not bool(c) for c in constant))
        else:
            needed.append((free,) * rt.block_sizes[j])
        skipped = rt.jacobian_kernel is not None and rt.jacobian_kernel_for is not None and (ambient or not free)
        written.append(constant & (not skipped))
    columns = np.flatnonzero(np.concatenate(written))
    if rt.jacobian_kernel is None or rt.jacobian_kernel_for is None:
        return rt.jacobian_kernel, columns
    return rt.jacobian_kernel_for(tuple(needed)), columns


@numba.njit(cache=True)
def _apply_block_step(values, ids, block_col, step, out):
    """out = values + step on the free blocks (serial: a copy-speed loop that is cheaper than waking threads)."""
    n, k = values.shape
    for b in range(n):
        bid = ids[b]
        if bid < 0:
            for c in range(k):
                out[b, c] = values[b, c]
        else:
            c0 = block_col[bid]
            for c in range(k):
                out[b, c] = values[b, c] + step[c0 + c]
