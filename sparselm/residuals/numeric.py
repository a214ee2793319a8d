"""Central-difference Jacobians for residual types that bring no analytic Jacobian.

Each slot j is differentiated on a gathered copy of its blocks (x_j[i] = params[j][index[i, j]]),
so perturbing coordinate c of *all* gathered blocks at once moves every instance's own block and
nothing else: 2 * sum_j k_j calls of the residual kernel give the whole Jacobian, whatever the
number of instances. The step for coordinate c of instance i is h = eps^(1/3) * max(1, |x|),
the usual choice that balances truncation (O(h^2)) against rounding (O(eps/h)) error.
"""
from __future__ import annotations

import numpy as np

_STEP = np.finfo(float).eps ** (1.0 / 3.0)


def numeric_jacobian(residual_kernel, params, index, data, residuals, jacobians, rel_step: float = _STEP) -> None:
    """Fill ``residuals`` (n, m) and each ``jacobians[j]`` (n, m, k_j) by central differences."""
    n, n_slots = index.shape
    identity = np.ascontiguousarray(np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], (n, n_slots)))
    gathered = [np.ascontiguousarray(params[j][index[:, j]]) for j in range(n_slots)]
    residual_kernel(tuple(gathered), identity, data, residuals)
    plus = np.empty_like(residuals)
    minus = np.empty_like(residuals)
    for j in range(n_slots):
        xj = gathered[j]
        for c in range(xj.shape[1]):
            original = xj[:, c].copy()
            h = rel_step * np.maximum(1.0, np.abs(original))
            xj[:, c] = original + h
            residual_kernel(tuple(gathered), identity, data, plus)
            xj[:, c] = original - h
            residual_kernel(tuple(gathered), identity, data, minus)
            xj[:, c] = original
            jacobians[j][:, :, c] = (plus - minus) / (2.0 * h)[:, None]
