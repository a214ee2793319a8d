"""What :func:`sparselm.covariance` returns: block covariances by group and index, and their file form."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from sparselm.util.atomic import atomic_write

BlockKey = Tuple[str, int]


class UndefinedCovarianceError(ValueError):
    """The one block asked for has no defined covariance (the message says why)."""


@dataclass
class Covariance:
    """Covariances of parameter blocks, in each block's tangent coordinates (the columns the solver
    steps in; units: the parameters' units squared, times ``scale``).

    matrices   {group: (n, k, k)} one matrix per block asked for, in the order of ``indices[group]``;
               a block whose covariance is not defined is all NaN (its reason in ``undefined``);
               a block held constant, and every coordinate held constant, has zero covariance.
    indices    {group: (n,) int64} the block indices of ``matrices[group]``.
    undefined  {group: {index: reason}}.
    cross      {((group_a, index_a), (group_b, index_b)): (k_a, k_b)} cross-covariances asked for.
    gauge      how the gauge was treated: mode ("pinv", "fix" or "explicit"), null_space_dimension,
               fixed_coordinates [(group, index, coordinate)] used to compute the fixed inverse.
    scale      factor applied to every matrix (1, or 2 cost / (m - n) with ``residual_variance``).
    seconds    wall time of the whole computation; phases: {phase: seconds}.
    """

    matrices: Dict[str, np.ndarray]
    indices: Dict[str, np.ndarray]
    undefined: Dict[str, Dict[int, str]]
    cross: Dict[Tuple[BlockKey, BlockKey], np.ndarray]
    gauge: dict
    scale: float
    seconds: float
    phases: Dict[str, float] = field(default_factory=dict)
    warning: Optional[str] = None

    def _row(self, group: str, index: int) -> int:
        if group not in self.indices:
            raise KeyError(f"no covariance computed for group {group!r}; computed: {sorted(self.indices)}")
        pos = np.flatnonzero(self.indices[group] == index)
        if pos.size == 0:
            raise KeyError(f"no covariance computed for block {index} of group {group!r}")
        return int(pos[0])

    def block(self, group: str, index: int) -> np.ndarray:
        """The (k, k) covariance of block ``index`` of ``group`` (NaN if not defined)."""
        return self.matrices[group][self._row(group, index)]

    def std(self, group: str, index: Optional[int] = None) -> np.ndarray:
        """Standard deviations: (k,) for one block, (n, k) for every computed block of ``group``."""
        mats = self.matrices[group] if index is None else self.block(group, index)[None]
        diag = np.einsum("...ii->...i", mats)
        out = np.sqrt(np.where(diag >= 0, diag, np.nan))
        return out if index is None else out[0]

    def reason(self, group: str, index: int) -> Optional[str]:
        """Why the block's covariance is not defined, or None when it is."""
        return self.undefined.get(group, {}).get(int(index))

    def pair(self, a: BlockKey, b: BlockKey) -> np.ndarray:
        """The (k_a, k_b) cross-covariance of blocks a = (group, index) and b (computed on request)."""
        key = ((a[0], int(a[1])), (b[0], int(b[1])))
        if key in self.cross:
            return self.cross[key]
        swapped = (key[1], key[0])
        if swapped in self.cross:
            return self.cross[swapped].T
        raise KeyError(f"cross-covariance of {a} and {b} was not asked for")

    def arrays(self) -> Dict[str, np.ndarray]:
        """The .npz content: per group ``<group>`` (n, k, k), ``<group>_indices`` (n,) and
        ``<group>_undefined`` (indices whose matrix is NaN), plus ``scale`` and
        ``null_space_dimension``."""
        out: Dict[str, np.ndarray] = {}
        for group, mats in self.matrices.items():
            out[group] = mats
            out[f"{group}_indices"] = self.indices[group]
            out[f"{group}_undefined"] = np.array(sorted(self.undefined.get(group, {})), dtype=np.int64)
        out["scale"] = np.array(self.scale)
        out["null_space_dimension"] = np.array(self.gauge.get("null_space_dimension", 0))
        return out

    def save_npz(self, path) -> None:
        """Write :meth:`arrays` to ``path`` (.npz) atomically."""
        buffer = io.BytesIO()
        np.savez(buffer, **self.arrays())
        atomic_write(path, buffer.getvalue())

    def report(self) -> dict:
        """A JSON-ready summary: sizes, undefined counts, gauge, scale, time."""
        return {"groups": {g: {"blocks": int(m.shape[0]), "tangent_size": int(m.shape[1]),
                               "undefined": len(self.undefined.get(g, {}))} for g, m in self.matrices.items()},
                "pairs": len(self.cross), "gauge": self.gauge, "scale": self.scale,
                "seconds": self.seconds, "phases": self.phases, "warning": self.warning}
