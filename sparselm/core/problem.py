"""The problem model: parameter groups, residual groups, weighting and robust losses. No numerics.

A :class:`Problem` minimises

    cost(x) = 1/2 * sum_i rho_i( r_i(x)^T Sigma_i^-1 r_i(x) )

over stacked parameter blocks. A *parameter group* holds many blocks of one size (all cameras as
an (n, 9) array); a *residual group* holds many instances of one :class:`ResidualType`, with an
index array saying which block of which group each instance touches in each slot.

Sigma (covariance) is block-diagonal, one m x m block per residual instance, given as a scalar
sigma for the whole group, a per-instance vector of sigmas, or full (n, m, m) covariance or
information matrices. It is stored as a square-root information matrix A_i with
A_i^T A_i = Sigma_i^-1 (A_i = C_i^-1 for the Cholesky factor Sigma_i = C_i C_i^T), so that the
evaluator whitens r'_i = A_i r_i and J'_i = A_i J_i and everything downstream is ordinary least
squares.

Every input is validated here, with a message naming the group and the offending entry, before any
numba code sees it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from sparselm.core.loss import Loss, make_loss
from sparselm.core.weighting import float_array, sqrt_information_from
from sparselm.manifolds.base import Manifold
from sparselm.manifolds.registry import resolve_manifold
from sparselm.residuals.base import ResidualType


def _index_array(name: str, values, n_blocks: int) -> np.ndarray:
    """Convert to an int64 vector of block indices in [0, n_blocks), or raise naming the entry."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D index array, got shape {arr.shape}")
    if arr.size and arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            i = int(np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))[0])
            raise ValueError(f"{name}: entry {i} is not an integer ({arr[i]})")
    elif arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= n_blocks):  # on the original values: a cast could wrap them
        i = int(np.flatnonzero((arr < 0) | (arr >= n_blocks))[0])
        raise ValueError(f"{name}: entry {i} = {arr[i]} is out of range [0, {n_blocks})")
    return arr.astype(np.int64, copy=False)


@dataclass
class ParameterGroup:
    """Many parameter blocks of one size, stacked as rows of ``values`` (n_blocks, block_size).

    constant              (n_blocks,) bool: blocks held fixed.
    constant_coordinates  (tangent_size,) bool: tangent coordinates held fixed in every block (e.g.
                          intrinsics); for a Euclidean group the tangent coordinates are the values.
    eliminate             True for groups a Schur solver eliminates first (BA: the points).
    manifold              the :class:`~sparselm.manifolds.Manifold` the blocks live on (Euclidean
                          of block_size when None): values are ambient, LM steps are tangent.
    """

    name: str
    values: np.ndarray
    constant: np.ndarray
    constant_coordinates: np.ndarray
    eliminate: bool = False
    manifold: Optional[Manifold] = None

    def __post_init__(self):
        self.manifold = resolve_manifold(self.manifold, self.values.shape[1])

    @property
    def n_blocks(self) -> int:
        return self.values.shape[0]

    @property
    def block_size(self) -> int:
        """Stored (ambient) size of a block."""
        return self.values.shape[1]

    @property
    def tangent_size(self) -> int:
        """Free coordinates per block: the manifold's tangent size (block_size when Euclidean)."""
        return self.manifold.tangent_size


@dataclass
class ResidualGroup:
    """Many instances of one residual type.

    groups           name of the parameter group each slot refers to.
    index            (n, n_slots) int64 block indices.
    data             (n, data_size) float64 per-instance constants.
    sqrt_information None (identity), a scalar, an (n,) vector (1/sigma per instance),
                     or an (n, m, m) array A_i with A_i^T A_i = Sigma_i^-1.
    loss             robust loss applied to the squared whitened residual norm.
    """

    name: str
    residual_type: ResidualType
    groups: Tuple[str, ...]
    index: np.ndarray
    data: np.ndarray
    sqrt_information: Optional[object]
    loss: Loss

    @property
    def n_instances(self) -> int:
        return self.index.shape[0]

    @property
    def residual_size(self) -> int:
        return self.residual_type.residual_size


def _group_loss(name: str, loss, scale):
    """make_loss with the group named in the error, and only real numbers accepted as scale."""
    if isinstance(scale, (bool, str, bytes, complex)) or not np.isrealobj(scale):
        raise ValueError(f"residual group {name!r}: loss_scale must be a positive real number, got {scale!r}")
    try:
        return make_loss(loss, scale)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"residual group {name!r}: {exc}") from None


class Problem:
    """A sparse nonlinear least-squares problem built from parameter groups and residual groups."""

    def __init__(self):
        self.parameter_groups: Dict[str, ParameterGroup] = {}
        self.residual_groups: List[ResidualGroup] = []

    # -- parameters ---------------------------------------------------------------------------
    def add_parameter_group(self, name: str, values, *, constant=None, constant_coordinates=None,
                            eliminate: bool = False, manifold=None) -> ParameterGroup:
        """Add ``values`` (n_blocks, block_size) as a group of parameter blocks; returns the group.

        constant: indices or a boolean mask of blocks held fixed. constant_coordinates: indices
        or a mask of tangent coordinates held fixed in every block. eliminate: mark for Schur
        elimination. manifold: None (Euclidean), a registered name ("so3_quaternion", "se3", ...)
        or a :class:`~sparselm.manifolds.Manifold`; values are stored in its ambient coordinates
        and updated by x [+] delta. The array is copied; the solver writes the solution back into
        ``group.values``. Values must be finite and within +-1e150
        (:data:`sparselm.util.numerics.MAX_MAGNITUDE`).
        """
        if not isinstance(name, str) or not name:
            raise ValueError("parameter group name must be a non-empty string")
        if name in self.parameter_groups:
            raise ValueError(f"parameter group {name!r} already exists")
        vals = float_array(f"parameter group {name!r}: values", values, 2, bounded=True).copy()
        if vals.shape[0] == 0 or vals.shape[1] == 0:
            raise ValueError(f"parameter group {name!r}: values must be non-empty, got shape {vals.shape}")
        try:
            chosen = resolve_manifold(manifold, vals.shape[1])
        except ValueError as exc:
            raise ValueError(f"parameter group {name!r}: {exc}") from None
        group = ParameterGroup(name, vals,
                               self._mask(f"parameter group {name!r}: constant", constant, vals.shape[0]),
                               self._mask(f"parameter group {name!r}: constant_coordinates",
                                          constant_coordinates, chosen.tangent_size),
                               bool(eliminate), chosen)
        self.parameter_groups[name] = group
        return group

    def set_constant(self, group: str, blocks, constant: bool = True) -> None:
        """Hold the given blocks (indices or mask) of ``group`` fixed (or free them again)."""
        g = self._group(group)
        mask = self._mask(f"parameter group {group!r}: blocks", blocks, g.n_blocks)
        g.constant[mask] = constant

    @staticmethod
    def _mask(name: str, selection, n: int) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        if selection is None:
            return mask
        sel = np.asarray(selection)
        if sel.dtype == np.bool_:
            if sel.shape != (n,):
                raise ValueError(f"{name}: boolean mask must have shape ({n},), got {sel.shape}")
            return sel.copy()
        mask[_index_array(name, np.atleast_1d(sel), n)] = True
        return mask

    def _group(self, name: str) -> ParameterGroup:
        try:
            return self.parameter_groups[name]
        except KeyError:
            raise ValueError(f"unknown parameter group {name!r}; known: {sorted(self.parameter_groups)}") from None

    # -- residuals ----------------------------------------------------------------------------
    def add_residual_group(self, name: str, residual_type: ResidualType, blocks: Sequence[Tuple[str, object]],
                           data=None, *, sigma=None, covariance=None, information=None,
                           loss=None, loss_scale: float = 1.0) -> ResidualGroup:
        """Add n residual blocks of ``residual_type``.

        blocks      one (parameter_group_name, index_array) pair per slot of the type.
        data        (n, data_size) per-instance constants (e.g. observed pixels).
        sigma / covariance / information   weighting, see :func:`sqrt_information_from`.
        loss        None/'linear', 'huber', 'soft_l1', 'cauchy', 'arctan'; loss_scale in units of the
                    whitened residual (i.e. of sigma when a weighting is given).
        """
        if not isinstance(name, str) or not name:
            raise ValueError("residual group name must be a non-empty string")
        if any(r.name == name for r in self.residual_groups):
            raise ValueError(f"residual group {name!r} already exists")
        if not isinstance(residual_type, ResidualType):
            raise ValueError(f"residual group {name!r}: residual_type must be a ResidualType")
        rt = residual_type
        if len(blocks) != rt.n_slots:
            raise ValueError(f"residual group {name!r}: type {rt.name!r} has {rt.n_slots} slots, got {len(blocks)} (group, index) pairs")
        group_names, columns = [], []
        n = None
        for j, pair in enumerate(blocks):
            try:
                gname, idx = pair
            except (TypeError, ValueError):
                raise ValueError(f"residual group {name!r}: slot {j} must be a (group name, index array) pair") from None
            g = self._group(gname)
            if g.block_size != rt.block_sizes[j]:
                raise ValueError(f"residual group {name!r}: slot {j} of type {rt.name!r} needs blocks of size "
                                 f"{rt.block_sizes[j]}, group {gname!r} has size {g.block_size}")
            wanted = rt.slot_manifold(j)
            if wanted is not None and g.manifold is not wanted:
                raise ValueError(f"residual group {name!r}: slot {j} of type {rt.name!r} differentiates on the "
                                 f"{wanted.name!r} manifold, group {gname!r} is on {g.manifold.name!r}")
            col = _index_array(f"residual group {name!r}: slot {j} ({gname}) index", idx, g.n_blocks)
            if n is None:
                n = col.shape[0]
            elif col.shape[0] != n:
                raise ValueError(f"residual group {name!r}: slot {j} index has {col.shape[0]} entries, slot 0 has {n}")
            group_names.append(gname)
            columns.append(col)
        if n == 0:
            raise ValueError(f"residual group {name!r}: no residual blocks")
        for a in range(len(columns)):
            for b in range(a):
                same = (columns[a] == columns[b]) if group_names[a] == group_names[b] else None
                if same is not None and same.any():
                    i = int(np.flatnonzero(same)[0])
                    raise ValueError(f"residual group {name!r}: instance {i} uses block {int(columns[a][i])} of "
                                     f"{group_names[a]!r} in slots {b} and {a}; a residual block must touch "
                                     "distinct parameter blocks (as in Ceres)")
        index = np.ascontiguousarray(np.stack(columns, axis=1))
        if data is None:
            data = np.zeros((n, rt.data_size))
        data = float_array(f"residual group {name!r}: data", data, np.asarray(data).ndim)
        if data.ndim == 1 and rt.data_size == 1:
            data = data[:, None]
        if data.shape != (n, rt.data_size):
            raise ValueError(f"residual group {name!r}: data must have shape ({n}, {rt.data_size}), got {data.shape}")
        sqrt_info = sqrt_information_from(name, n, rt.residual_size, sigma, covariance, information)
        group = ResidualGroup(name, rt, tuple(group_names), index, np.ascontiguousarray(data), sqrt_info,
                              _group_loss(name, loss, loss_scale))
        self.residual_groups.append(group)
        return group

    # -- sizes ----------------------------------------------------------------------------------
    @property
    def n_parameters(self) -> int:
        """Total number of parameters, free and constant."""
        return sum(g.values.size for g in self.parameter_groups.values())

    @property
    def n_residuals(self) -> int:
        """Total number of scalar residuals."""
        return sum(r.n_instances * r.residual_size for r in self.residual_groups)

    def sizes(self) -> dict:
        """Counts for reports: blocks per group, residual blocks per group, parameters, residuals."""
        return {
            "parameter_groups": {g.name: {"blocks": g.n_blocks, "block_size": g.block_size,
                                          "tangent_size": g.tangent_size, "manifold": g.manifold.name,
                                          "constant_blocks": int(g.constant.sum()),
                                          "constant_coordinates": int(g.constant_coordinates.sum()),
                                          "eliminate": g.eliminate}
                                 for g in self.parameter_groups.values()},
            "residual_groups": {r.name: {"blocks": r.n_instances, "residual_size": r.residual_size,
                                         "type": r.residual_type.name, "loss": r.loss.name}
                                for r in self.residual_groups},
            "parameters": self.n_parameters,
            "residuals": self.n_residuals,
        }
