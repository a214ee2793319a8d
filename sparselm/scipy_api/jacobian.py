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
    rel = EPS^(1/2) ('2-point', 'cs') or EPS^(1/3) ('3-point'), EPS that of the residuals' dtype
    (float32 residuals: float32's EPS, as scipy); ``diff_step`` given: h = diff_step * x (falling
    back to the default where that is zero). With ``bounds`` (lb, ub) every difference point stays
    inside them (one-sided differences near a bound, see :meth:`_offsets`)."""

    def __init__(self, fun, pattern: JacobianPattern, method: str, diff_step, timer: PhaseTimer, workers=None,
                 residual_dtype=np.float64, bounds=None):
        self.fun = fun
        # scipy sizes the step by the precision of the residuals: EPS of float32 residuals
        self.eps = float(np.finfo(residual_dtype).eps) if np.issubdtype(residual_dtype, np.floating) else EPS
        self.bounds = bounds
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
        rel = self.eps ** (1.0 / 3.0) if self.method == "3-point" else self.eps ** 0.5
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

    def _offsets(self, x, h):
        """The two difference points per column as multiples of h: (1, -1) central, (1, 2) forward and
        (-1, -2) backward where a bound is closer than 2 |h| ('3-point'); '2-point' steps backward
        (-1) where x + h would leave the box. Every point stays inside the bounds."""
        first, second = np.ones_like(x), -np.ones_like(x)
        if self.bounds is None:
            return first, second
        lb, ub = self.bounds
        if self.method == "2-point":
            first = np.where((x + h > ub) | (x + h < lb), -1.0, 1.0)
            return first, second
        up_blocked = (x + h > ub) | (x + h < lb)
        down_blocked = (x - h > ub) | (x - h < lb)
        forward = down_blocked & ~((x + 2 * h > ub) | (x + 2 * h < lb))
        backward = up_blocked & ~forward
        first = np.where(backward, -1.0, 1.0)
        second = np.where(forward, 2.0, np.where(backward, -2.0, -1.0))
        return first, second

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
        first, second = self._offsets(x, h)
        if self.method == "2-point":
            h = h * first
            points = []
            for c in cols:
                xp = x.copy()
                xp[c] += h[c]
                points.append(xp)
            diffs = [np.atleast_1d(f) - f0 for f in self._map(points)]
        elif self.method == "3-point":
            points = []
            for c in cols:
                xp = x.copy()
                xp[c] += first[c] * h[c]
                xm = x.copy()
                xm[c] += second[c] * h[c]
                points += [xp, xm]
            values = self._map(points)
            one_sided = second != -1.0
            # central (f(x+h) - f(x-h)) / 2h; one-sided (-3 f0 + 4 f(x+sh) - f(x+2sh)) / 2sh, s = +-1
            diffs = []
            for g in groups:
                fp, fm = np.atleast_1d(values[2 * g]), np.atleast_1d(values[2 * g + 1])
                diffs.append((fp, fm))
        self.evaluations += len(points)
        for g, df in zip(groups, diffs):
            slots = self.slot_order[self.group_slot_ptr[g]:self.group_slot_ptr[g + 1]]
            rows, cols_of = self.slot_row[slots], self.slot_col[slots]
            if self.method == "3-point":
                fp, fm = df
                central = (fp[rows] - fm[rows]) / (2.0 * h[cols_of])
                side = first[cols_of] * h[cols_of]
                sided = (-3.0 * f0[rows] + 4.0 * fp[rows] - fm[rows]) / (2.0 * side)
                data[slots] = np.where(one_sided[cols_of], sided, central)
            else:
                data[slots] = df[rows] / h[cols_of]
        return data

