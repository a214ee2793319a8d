"""The Jacobian of :func:`sparselm.least_squares` from finite differences on a sparsity pattern:
columns that share no row get one colour (a greedy colouring in natural order) and are differenced
together, one function evaluation per colour ('3-point': two)."""
from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from sparselm.linalg.csc import JacobianPattern, canonical_csc
from sparselm.util.timing import PhaseTimer

EPS = np.finfo(float).eps


@numba.njit(cache=True)
def greedy_column_colouring(c_ptr, c_rows, r_ptr, r_cols):
    """Colour columns so that two columns sharing a row never share a colour (greedy, natural order)."""
    n = c_ptr.shape[0] - 1
    colour = np.full(n, -1, np.int64)
    forbidden = np.full(n + 1, -1, np.int64)
    n_colours = 0
    for j in range(n):
        for p in range(c_ptr[j], c_ptr[j + 1]):
            i = c_rows[p]
            for q in range(r_ptr[i], r_ptr[i + 1]):
                c = colour[r_cols[q]]
                if c >= 0:
                    forbidden[c] = j
        c = 0
        while forbidden[c] == j:
            c += 1
        colour[j] = c
        if c + 1 > n_colours:
            n_colours = c + 1
    return colour, n_colours



def sparsity_pattern(jac_sparsity, m, n) -> JacobianPattern:
    """The pattern of a user's ``jac_sparsity`` (nonzero entries; dense or sparse)."""
    if sp.issparse(jac_sparsity):
        s = sp.csc_matrix(jac_sparsity, copy=True)
        s.eliminate_zeros()
    else:
        s = sp.csc_matrix(np.atleast_2d(np.asarray(jac_sparsity)) != 0)
    if s.shape != (m, n):
        raise ValueError(f"`jac_sparsity` has wrong shape: expected {(m, n)}, got {s.shape}")
    s = canonical_csc(s)
    return JacobianPattern(s.shape, s.indptr, s.indices)



class FiniteDifferenceJacobian:
    """'2-point', '3-point' or 'cs' differences on a fixed pattern, one evaluation per colour
    ('3-point': two). Steps follow scipy's rule: h = rel * sign(x) * max(1, |x|) with
    rel = EPS^(1/2) ('2-point', 'cs') or EPS^(1/3) ('3-point'); ``diff_step`` given: h = diff_step * x
    (falling back to the default where that is zero)."""

    def __init__(self, fun, pattern: JacobianPattern, method: str, diff_step, timer: PhaseTimer, workers=None):
        self.fun = fun
        self.pattern = pattern
        self.method = method
        self.diff_step = None if diff_step is None else np.asarray(diff_step, dtype=float)
        self.timer = timer
        self.workers = workers
        self.calls = 0
        self.evaluations = 0
        if pattern.dense:  # every pair of columns shares a row: one column per evaluation
            colour, n_colours = np.arange(pattern.shape[1], dtype=np.int64), pattern.shape[1]
        else:
            colour, n_colours = greedy_column_colouring(pattern.indptr, pattern.indices, pattern.row_ptr,
                                                         pattern.row_cols)
        self.colour = colour
        self.n_colours = int(n_colours)
        n = pattern.shape[1]
        self.group_columns = np.argsort(colour, kind="stable")
        self.group_col_ptr = np.searchsorted(colour[self.group_columns], np.arange(self.n_colours + 1))
        col_of_slot = np.repeat(np.arange(n, dtype=np.int64), np.diff(pattern.indptr))
        self.slot_order = np.argsort(colour[col_of_slot], kind="stable")
        self.group_slot_ptr = np.searchsorted(colour[col_of_slot][self.slot_order], np.arange(self.n_colours + 1))
        self.slot_col = col_of_slot
        self.slot_row = pattern.indices

    def _step(self, x):
        rel = EPS ** (1.0 / 3.0) if self.method == "3-point" else EPS ** 0.5
        sign = np.where(x >= 0, 1.0, -1.0)
        default = rel * sign * np.maximum(1.0, np.abs(x))
        if self.diff_step is None:
            h = default
        else:
            h = self.diff_step * sign * np.abs(x)
            h = np.where((x + h) - x == 0, default, h)
        if self.method != "cs":
            h = (x + h) - x
        return h

    def _map(self, points):
        if self.workers is None:
            return [self.fun(p) for p in points]
        return list(self.workers(self.fun, points))

    def __call__(self, x, f0) -> np.ndarray:
        """The Jacobian values at x (pattern.data is filled and returned)."""
        self.calls += 1
        h = self._step(x)
        data = self.pattern.data
        groups = range(self.n_colours)
        cols = [self.group_columns[self.group_col_ptr[g]:self.group_col_ptr[g + 1]] for g in groups]
        if self.method == "cs":
            points = []
            for c in cols:
                xp = x.astype(complex)
                xp[c] += 1j * h[c]
                points.append(xp)
            diffs = [np.imag(np.atleast_1d(f)) for f in self._map(points)]
            scale = 1.0
        elif self.method == "2-point":
            points = []
            for c in cols:
                xp = x.copy()
                xp[c] += h[c]
                points.append(xp)
            diffs = [np.atleast_1d(f) - f0 for f in self._map(points)]
            scale = 1.0
        else:
            points = []
            for c in cols:
                xp = x.copy()
                xp[c] += h[c]
                xm = x.copy()
                xm[c] -= h[c]
                points += [xp, xm]
            values = self._map(points)
            diffs = [np.atleast_1d(values[2 * g]) - np.atleast_1d(values[2 * g + 1]) for g in groups]
            scale = 0.5
        self.evaluations += len(points)
        for g, df in zip(groups, diffs):
            slots = self.slot_order[self.group_slot_ptr[g]:self.group_slot_ptr[g + 1]]
            data[slots] = scale * df[self.slot_row[slots]] / h[self.slot_col[slots]]
        return data

