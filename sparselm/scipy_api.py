"""``sparselm.least_squares``: a drop-in for ``scipy.optimize.least_squares`` on sparse problems.

    from sparselm import least_squares           # instead of scipy.optimize.least_squares
    res = least_squares(fun, x0, jac=jac, jac_sparsity=S, loss="soft_l1")

Arguments keep scipy's meaning (see scipy's documentation); the minimiser behind them is sparselm's
Levenberg-Marquardt (:class:`~sparselm.strategy.LevenbergMarquardtStrategy`, Nielsen's radius
rule, Ceres semantics for invalid and unsuccessful steps) with the damped normal equations
(J^T J + D) step = -J^T r solved by CHOLMOD. What is done once and what per call:

* once: the CSC pattern of J (and its CSR twin with a value permutation), the lower-triangle pattern
  of J^T J (a boolean product), CHOLMOD's symbolic analysis, and for finite differences a greedy
  colouring of the columns (structurally orthogonal columns share one function evaluation);
* per Jacobian: the user's values are copied into the fixed pattern (a CSR or CSC matrix with the
  same pattern costs one copy; any other format is converted), J^T J is filled in place by a numba
  kernel (Gustavson's product into the fixed pattern), gradient and column norms likewise;
* per damping trial: D on the diagonal, numeric refactorization, one solve.

If a later Jacobian has entries outside the pattern, the pattern becomes the union of the two and
the normal-matrix structure and CHOLMOD analysis are rebuilt (counted in ``summary.problem``);
entries missing from a later Jacobian are zeros in the pattern.

Termination uses scipy's definitions, so results are comparable (F the cost, dF its decrease):

    gtol  (status 1)  max |g| < gtol, g = J^T r the gradient of the cost (loss included)
    ftol  (status 2)  dF < ftol * F and the step's gain ratio > 0.25
    xtol  (status 3)  |dx| < xtol * (xtol + |x|)           (status 4: ftol and xtol together)
    max_nfev (0)      function evaluations, counted as scipy's 'trf' counts them: the initial one
                      and one per trial step; evaluations for finite-difference Jacobians are not
                      counted (summary.problem['fd_function_calls'] has them). Default 100 * n.
    -1                failure: more than max_consecutive_invalid_steps (5) steps in a row whose
                      linear solve failed or did not decrease the model; or Ctrl-C
    -2                the callback raised StopIteration or returned True

Differences from scipy, all deliberate and checked:

* ``method``: 'trf' and 'lm' both mean sparselm's LM; 'dogbox' is refused. ``bounds`` must be
  infinite (ValueError otherwise). ``tr_solver``/``tr_options`` are refused (the trust-region
  subproblem is solved by Cholesky; choose ``linear_solver``/``ordering`` instead). A Jacobian
  given as a LinearOperator is refused (J^T J must be formed).
* ``x_scale``: None (default) means 'jac', Marquardt scaling D = lambda * diag(J^T J) (scipy's
  'lm' default, sparselm's 'marquardt' damping); an array means the variables x / x_scale, i.e.
  D = lambda * diag(1 / x_scale^2); ``damping`` (None, 'marquardt', 'levenberg', 'gauss_newton')
  is the sparselm name for the same choice and must agree with ``x_scale`` if both are given.
* Robust losses use Triggs' correction as sparselm's evaluator does (Ceres' Corrector), not
  scipy's rescaling: the gradient is the same, the Gauss-Newton model differs, the minimum is the same.
* ``sigma`` (an extension): per-residual standard deviations (shape (m,)) or a covariance matrix
  Sigma (m, m), dense or sparse, block diagonal (blocks found as connected components, each at most
  MAX_SIGMA_BLOCK rows). The cost becomes the Mahalanobis form 1/2 sum rho(r'^2) with whitened
  residuals r' = A f, A = L^T where Sigma^-1 = L L^T per block (A^T A = Sigma^-1), J' = A J.
  ``res.fun`` is the user's (unwhitened) residual; ``cost``, ``jac`` and ``grad`` are of the
  whitened, loss-corrected problem (as scipy's ``jac`` is its loss-modified Jacobian).
* ``callback`` is called after each accepted step with an OptimizeResult (x, fun, nit, nfev, cost),
  or with x alone if its only parameter is not named ``intermediate_result`` (scipy's rule).
* ``jac``: a callable may return any scipy.sparse format or a dense array (a LinearOperator is
  refused); with a callable, ``jac_sparsity`` (ignored by scipy there) seeds the fixed pattern.
  '2-point', '3-point' and 'cs' difference on ``jac_sparsity`` (dense, n evaluations, without it).
  ``workers`` (a map-like callable, or an int for scipy's process pool) evaluates the difference
  points; with a callable ``jac`` it has nothing to do and is refused. ``njev`` counts Jacobian
  evaluations for every method (scipy's 'lm' reports None for differences).
* A non-finite Jacobian entry raises :class:`sparselm.evaluator.NonFiniteError` naming row and
  column (scipy carries on with NaNs). Non-finite residuals at a trial point are a rejected step.
* Extra keywords: ``sigma``, ``linear_solver``, ``damping``, ``ordering`` and ``factorization``
  (CHOLMOD 'auto' (default: CHOLMOD picks simplicial for thin factors such as banded ones,
  supernodal otherwise), 'simplicial', 'supernodal'). Unknown keywords are a TypeError.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import time
from typing import Optional

import numba
import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.optimize import OptimizeResult

from sparselm import threads
from sparselm.evaluator import NonFiniteError, _plain_cost, _robust_correct, _robust_cost
from sparselm.linalg.base import LinearSolution, LinearSolver, LinearSolverOptions
from sparselm.linalg.cholmod import MODES, ORDERINGS, CholmodFactor
from sparselm.linalg.dense import MAX_DENSE_COLUMNS
from sparselm.loss import make_loss
from sparselm.options import SolverOptions
from sparselm.linalg.auto import DENSE_MAX_COLUMNS
from sparselm.strategy import LevenbergMarquardtStrategy
from sparselm.summary import TABLE_HEADER, IterationRecord, Summary
from sparselm.timing import PhaseTimer

__all__ = ["least_squares", "TERMINATION_MESSAGES"]

EPS = np.finfo(float).eps
MAX_SIGMA_BLOCK = 2000
SCIPY_LOSSES = ("linear", "huber", "soft_l1", "cauchy", "arctan")
METHODS = ("trf", "lm")
API_LINEAR_SOLVERS = ("auto", "dense", "sparse_normal_cholesky")

TERMINATION_MESSAGES = {
    -2: "Stopped because `callback` function raised `StopIteration` or returned `True`",
    -1: "The solver could not continue (see summary.message); the best point so far is returned.",
    0: "The maximum number of function evaluations is exceeded.",
    1: "`gtol` termination condition is satisfied.",
    2: "`ftol` termination condition is satisfied.",
    3: "`xtol` termination condition is satisfied.",
    4: "Both `ftol` and `xtol` termination conditions are satisfied.",
}
_SUMMARY_TERMINATION = {-2: "user_success", -1: "failure", 0: "no_convergence", 1: "convergence", 2: "convergence",
                        3: "convergence", 4: "convergence"}


# ---------------------------------------------------------------------------------------------
# numba kernels over a general sparse J (CSC values, CSR twin)
# ---------------------------------------------------------------------------------------------
@numba.njit(parallel=True, cache=True)
def _fill_normal_lower(c_ptr, c_rows, c_data, r_ptr, r_cols, r_data, h_ptr, h_rows, h_data, n_chunks):
    """lower(J^T J) into a fixed CSC pattern (Gustavson by columns, one position map per chunk)."""
    n = h_ptr.shape[0] - 1
    chunk = (n + n_chunks - 1) // n_chunks
    for t in numba.prange(n_chunks):
        b0 = t * chunk
        b1 = min(n, b0 + chunk)
        if b0 >= b1:
            continue
        pos = np.empty(n, np.int64)
        for b in range(b0, b1):
            for k in range(h_ptr[b], h_ptr[b + 1]):
                pos[h_rows[k]] = k
                h_data[k] = 0.0
            for p in range(c_ptr[b], c_ptr[b + 1]):
                i = c_rows[p]
                v = c_data[p]
                for q in range(r_ptr[i], r_ptr[i + 1]):
                    a = r_cols[q]
                    if a >= b:
                        h_data[pos[a]] += v * r_data[q]


@numba.njit(parallel=True, cache=True)
def _gradient_and_column_norms(c_ptr, c_rows, c_data, r, gradient, column_norms):
    """gradient = J^T r and column_norms = diag(J^T J), parallel over columns."""
    n = c_ptr.shape[0] - 1
    for b in numba.prange(n):
        g = 0.0
        s = 0.0
        for p in range(c_ptr[b], c_ptr[b + 1]):
            v = c_data[p]
            g += v * r[c_rows[p]]
            s += v * v
        gradient[b] = g
        column_norms[b] = s


@numba.njit(parallel=True, cache=True)
def _csr_times_vector(r_ptr, r_cols, r_data, x, out):
    m = r_ptr.shape[0] - 1
    for i in numba.prange(m):
        s = 0.0
        for q in range(r_ptr[i], r_ptr[i + 1]):
            s += r_data[q] * x[r_cols[q]]
        out[i] = s


@numba.njit(parallel=True, cache=True)
def _gather(values, perm, out):
    for k in numba.prange(perm.shape[0]):
        out[k] = values[perm[k]]


@numba.njit(parallel=True, cache=True)
def _scale_rows(c_rows, c_data, row_scale):
    for p in numba.prange(c_data.shape[0]):
        c_data[p] *= row_scale[c_rows[p]]


@numba.njit(cache=True)
def _greedy_column_colouring(c_ptr, c_rows, r_ptr, r_cols):
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


# ---------------------------------------------------------------------------------------------
# the Jacobian: a fixed pattern with values updated in place
# ---------------------------------------------------------------------------------------------
def _csc_pattern(matrix) -> sp.csc_matrix:
    """Canonical CSC (sorted, duplicates summed) of a sparse matrix; the input is not modified."""
    csc = sp.csc_matrix(matrix, copy=True)
    csc.sum_duplicates()
    csc.sort_indices()
    return csc


class JacobianPattern:
    """The CSC pattern of J (m x n), its CSR twin and ``csr_perm`` (CSR slot -> CSC slot).

    ``data`` holds the CSC values, ``csr_data`` the same values in CSR order (refreshed by
    :meth:`refresh_csr`). ``dense`` marks the full pattern of a dense Jacobian.
    """

    def __init__(self, shape, indptr, indices, dense=False):
        self.shape = (int(shape[0]), int(shape[1]))
        m, n = self.shape
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.int64)
        self.nnz = int(self.indptr[-1])
        self.dense = dense
        slots = sp.csc_matrix((np.arange(1, self.nnz + 1, dtype=np.int64), self.indices, self.indptr),
                              shape=self.shape).tocsr()
        slots.sort_indices()
        self.row_ptr = slots.indptr.astype(np.int64)
        self.row_cols = slots.indices.astype(np.int64)
        self.csr_perm = slots.data.astype(np.int64) - 1
        self.data = np.zeros(self.nnz)
        self.csr_data = np.zeros(self.nnz)
        self._keys = None

    @classmethod
    def from_matrix(cls, matrix) -> "JacobianPattern":
        if isinstance(matrix, np.ndarray):
            m, n = matrix.shape
            return cls((m, n), np.arange(0, m * n + 1, m), np.tile(np.arange(m), n), dense=True)
        csc = _csc_pattern(matrix)
        return cls(csc.shape, csc.indptr, csc.indices)

    def keys(self) -> np.ndarray:
        """Sorted linear keys col * m + row of the pattern's entries."""
        if self._keys is None:
            cols = np.repeat(np.arange(self.shape[1], dtype=np.int64), np.diff(self.indptr))
            self._keys = cols * self.shape[0] + self.indices
        return self._keys

    def matrix(self, data=None) -> sp.csc_matrix:
        """A CSC matrix on this pattern (sharing ``data`` unless given)."""
        return sp.csc_matrix((self.data if data is None else data, self.indices, self.indptr), shape=self.shape)

    def refresh_csr(self) -> None:
        _gather(self.data, self.csr_perm, self.csr_data)

    def assign(self, matrix) -> bool:
        """Copy ``matrix``'s values into ``data``; False if it has entries outside the pattern."""
        if isinstance(matrix, np.ndarray):
            if self.dense:
                self.data[:] = matrix.ravel(order="F")
                return True
            matrix = sp.csc_matrix(matrix)
        fmt = matrix.format
        if fmt == "csr" and matrix.nnz == self.nnz and matrix.has_canonical_format \
                and np.array_equal(matrix.indptr, self.row_ptr) and np.array_equal(matrix.indices, self.row_cols):
            self.data[self.csr_perm] = matrix.data
            return True
        if fmt == "csc" and matrix.nnz == self.nnz and matrix.has_canonical_format \
                and np.array_equal(matrix.indptr, self.indptr) and np.array_equal(matrix.indices, self.indices):
            self.data[:] = matrix.data
            return True
        csc = matrix if (fmt == "csc" and matrix.has_canonical_format) else _csc_pattern(matrix)
        if csc.nnz == self.nnz and np.array_equal(csc.indptr, self.indptr) \
                and np.array_equal(csc.indices, self.indices):
            self.data[:] = csc.data
            return True
        cols = np.repeat(np.arange(self.shape[1], dtype=np.int64), np.diff(csc.indptr))
        keys = cols * self.shape[0] + csc.indices.astype(np.int64)
        where = np.searchsorted(self.keys(), keys)
        inside = where < self.nnz
        inside[inside] = self.keys()[where[inside]] == keys[inside]
        if not inside.all():
            return False
        self.data[:] = 0.0
        self.data[where] = csc.data
        return True

    def union(self, matrix) -> "JacobianPattern":
        """A new pattern holding this one's entries and ``matrix``'s."""
        ones = sp.csc_matrix((np.ones(self.nnz), self.indices, self.indptr), shape=self.shape)
        other = _csc_pattern(sp.csc_matrix(matrix) if isinstance(matrix, np.ndarray) else matrix)
        other.data = np.ones(other.nnz)
        both = _csc_pattern(ones + other)
        return JacobianPattern(both.shape, both.indptr, both.indices)


def _sparsity_pattern(jac_sparsity, m, n) -> JacobianPattern:
    """The pattern of a user's ``jac_sparsity`` (nonzero entries; dense or sparse)."""
    if sp.issparse(jac_sparsity):
        s = sp.csc_matrix(jac_sparsity, copy=True)
        s.eliminate_zeros()
    else:
        s = sp.csc_matrix(np.atleast_2d(np.asarray(jac_sparsity)) != 0)
    if s.shape != (m, n):
        raise ValueError(f"`jac_sparsity` has wrong shape: expected {(m, n)}, got {s.shape}")
    s = _csc_pattern(s)
    return JacobianPattern(s.shape, s.indptr, s.indices)


# ---------------------------------------------------------------------------------------------
# finite differences with column colouring
# ---------------------------------------------------------------------------------------------
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
            colour, n_colours = _greedy_column_colouring(pattern.indptr, pattern.indices, pattern.row_ptr,
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


# ---------------------------------------------------------------------------------------------
# Sigma whitening and the robust loss
# ---------------------------------------------------------------------------------------------
def whitening_operator(sigma, m: int):
    """From ``sigma`` build ('diag', 1/sigma) or ('matrix', A) with A^T A = Sigma^-1 (block-wise)."""
    if sigma is None:
        return None
    if not sp.issparse(sigma):
        arr = np.asarray(sigma, dtype=float)
        if arr.ndim == 0:
            arr = np.full(m, float(arr))
        if arr.ndim == 1:
            if arr.shape != (m,):
                raise ValueError(f"`sigma`: expected {m} standard deviations, got shape {arr.shape}")
            if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
                raise ValueError("`sigma`: standard deviations must be positive and finite")
            return ("diag", 1.0 / arr)
        if arr.ndim != 2:
            raise ValueError("`sigma` must be a vector of standard deviations or an (m, m) covariance matrix")
        sigma = sp.csr_matrix(arr)
    cov = sp.csr_matrix(sigma, dtype=float)
    if cov.shape != (m, m):
        raise ValueError(f"`sigma`: covariance must be ({m}, {m}), got {cov.shape}")
    cov.eliminate_zeros()
    asym = abs(cov - cov.T)
    if asym.nnz and asym.max() > 1e-12 * abs(cov).max():
        raise ValueError("`sigma`: covariance matrix is not symmetric")
    n_comp, label = sp.csgraph.connected_components(cov, directed=False)
    sizes = np.bincount(label, minlength=n_comp)
    if sizes.max() > MAX_SIGMA_BLOCK:
        raise ValueError(f"`sigma`: covariance blocks larger than {MAX_SIGMA_BLOCK} residuals are not supported "
                         f"(largest connected block: {sizes.max()}); expected a block-diagonal covariance")
    if sizes.max() == 1:
        d = cov.diagonal()
        if not np.all(d > 0):
            raise ValueError("`sigma`: covariance diagonal must be positive")
        return ("diag", 1.0 / np.sqrt(d))
    # Rows of each block, in row order; local index of every row within its block.
    order = np.argsort(label, kind="stable")
    start = np.concatenate([[0], np.cumsum(sizes)])
    local = np.empty(m, np.int64)
    local[order] = np.arange(m) - start[label[order]]
    coo = cov.tocoo()
    rows_out, cols_out, vals_out = [], [], []
    for k in np.unique(sizes):
        comps = np.flatnonzero(sizes == k)
        slot = np.full(n_comp, -1, np.int64)
        slot[comps] = np.arange(comps.size)
        members = order[(start[comps][:, None] + np.arange(k)).ravel()].reshape(comps.size, k)
        blocks = np.zeros((comps.size, k, k))
        sel = slot[label[coo.row]] >= 0
        blocks[slot[label[coo.row[sel]]], local[coo.row[sel]], local[coo.col[sel]]] = coo.data[sel]
        try:
            info = np.linalg.inv(np.linalg.cholesky(blocks))          # Sigma = C C^T -> C^-1
            info = np.swapaxes(info, 1, 2) @ info                     # Sigma^-1 = C^-T C^-1
            lower = np.linalg.cholesky(0.5 * (info + np.swapaxes(info, 1, 2)))  # Sigma^-1 = L L^T
        except np.linalg.LinAlgError:
            raise ValueError("`sigma`: covariance matrix is not positive definite") from None
        a = np.swapaxes(lower, 1, 2)                                   # A = L^T, A^T A = Sigma^-1
        r, c = np.triu_indices(k)
        rows_out.append(members[:, r].ravel())
        cols_out.append(members[:, c].ravel())
        vals_out.append(a[:, r, c].ravel())
    a = sp.csr_matrix((np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))), shape=(m, m))
    return ("matrix", a)


def _callable_loss_terms(loss, f_scale, r):
    """(cost, rho', rho'') of a user loss callable, scaled as scipy does (rho(f^2) = C^2 rho(f^2 / C^2))."""
    z = (r / f_scale) ** 2
    rho = np.asarray(loss(z), dtype=float)
    if rho.shape != (3, r.size):
        raise ValueError(f"The return value of `loss` callable has wrong shape: expected {(3, r.size)}, "
                         f"got {rho.shape}")
    return 0.5 * f_scale ** 2 * float(np.sum(rho[0])), rho[1], rho[2] / f_scale ** 2


def _triggs_scales(r, rho1, rho2):
    """Residual and Jacobian-row scales of Triggs' correction for scalar residuals.

    The scalar case of :func:`sparselm.evaluator._robust_correct` (used for built-in losses),
    for user loss callables: alpha = 1 - sqrt(1 + 2 s rho''/rho') when rho'' > 0 (else 0),
    r'' = sqrt(rho') / (1 - alpha) r, J'' = sqrt(rho') (1 - alpha) J.
    """
    s = r * r
    rho1 = np.maximum(rho1, 1e-300)
    sqrt_rho1 = np.sqrt(rho1)
    curved = (rho2 > 0) & (s > 0)
    alpha = np.zeros_like(r)
    alpha[curved] = 1.0 - np.sqrt(1.0 + 2.0 * s[curved] * rho2[curved] / rho1[curved])
    return sqrt_rho1 / (1.0 - alpha), sqrt_rho1 * (1.0 - alpha)


class MatrixEvaluator:
    """Evaluator for a black-box residual with a (sparse) Jacobian matrix.

    The counterpart of :class:`sparselm.evaluator.Evaluator` for one residual vector: whitening by
    sigma, the robust loss (Triggs' correction), then ``residuals``, Jacobian values in
    ``pattern.data`` (CSC) and ``pattern.csr_data``, ``gradient`` = J^T r and ``column_norms``.
    """

    def __init__(self, m: int, n: int, loss, f_scale: float, whitening, timer: PhaseTimer):
        self.m, self.n = m, n
        self.timer = timer
        self.user_loss = loss if callable(loss) else None
        self.loss = None if callable(loss) else make_loss(loss, f_scale)
        self.f_scale = float(f_scale)
        self.whitening = whitening
        self.pattern: Optional[JacobianPattern] = None
        self.pattern_version = 0
        self.residuals = np.zeros(m)
        self.gradient = np.zeros(n)
        self.column_norms = np.zeros(n)
        self._jd = np.zeros(m)
        self.cost = math.nan

    # -- residuals ----------------------------------------------------------------------------
    def whiten(self, f: np.ndarray) -> np.ndarray:
        w = self.whitening
        if w is None:
            return f.copy()
        if w[0] == "diag":
            return f * w[1]
        return np.asarray(w[1] @ f, dtype=float)

    def cost_of(self, f: np.ndarray) -> float:
        """Cost 1/2 sum rho(r'^2) of the residual vector f (NaN if not finite)."""
        r = self.whiten(f)
        if self.user_loss is not None:
            total = _callable_loss_terms(self.user_loss, self.f_scale, r)[0]
        elif self.loss.is_trivial:
            total = _plain_cost(r.reshape(-1, 1))
        else:
            total = _robust_cost(self.loss.id, self.loss.scale, r.reshape(-1, 1))
        return total if math.isfinite(total) else math.nan

    # -- Jacobian -----------------------------------------------------------------------------
    def set_pattern(self, pattern: JacobianPattern) -> None:
        self.pattern = pattern
        self.pattern_version += 1

    def absorb(self, jacobian) -> None:
        """Copy a Jacobian (sparse matrix, dense array) into the fixed pattern (growing it if needed)."""
        w = self.whitening
        if w is not None and w[0] == "matrix":
            jacobian = w[1] @ jacobian
            if sp.issparse(jacobian):
                jacobian = sp.csc_matrix(jacobian)
        if self.pattern is None:
            self.set_pattern(JacobianPattern.from_matrix(jacobian))
        if not self.pattern.assign(jacobian):
            self.set_pattern(self.pattern.union(jacobian))
            self.pattern.assign(jacobian)

    def linearize(self, f: np.ndarray) -> float:
        """Whiten, apply the loss, and compute gradient and column norms; ``pattern.data`` holds the
        raw (unwhitened for diagonal sigma) Jacobian on entry. Returns the cost."""
        p = self.pattern
        bad = ~np.isfinite(p.data)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            col = int(np.searchsorted(p.indptr, k, side="right") - 1)
            raise NonFiniteError(f"the Jacobian has a non-finite entry at row {int(p.indices[k])}, column {col} "
                                 f"({int(bad.sum())} entries in all)")
        r = self.whiten(f)
        row_scale = None
        if self.user_loss is not None:
            cost, rho1, rho2 = _callable_loss_terms(self.user_loss, self.f_scale, r)
            res_scale, row_scale = _triggs_scales(r, rho1, rho2)
            r *= res_scale
        elif self.loss.is_trivial:
            cost = _plain_cost(r.reshape(-1, 1))
        else:
            ones = np.ones((self.m, 1, 1))
            r2 = r.reshape(-1, 1)
            cost = _robust_correct(self.loss.id, self.loss.scale, r2, ones)
            row_scale = ones[:, 0, 0]
        if self.whitening is not None and self.whitening[0] == "diag":
            row_scale = self.whitening[1] if row_scale is None else row_scale * self.whitening[1]
        if row_scale is not None:
            _scale_rows(p.indices, p.data, np.ascontiguousarray(row_scale))
        self.residuals = np.ascontiguousarray(r)
        p.refresh_csr()
        _gradient_and_column_norms(p.indptr, p.indices, p.data, self.residuals, self.gradient, self.column_norms)
        self.cost = float(cost)
        return self.cost

    def model_cost_change(self, step: np.ndarray) -> float:
        """L(0) - L(step) = -(J step)^T (r + J step / 2)."""
        p = self.pattern
        _csr_times_vector(p.row_ptr, p.row_cols, p.csr_data, step, self._jd)
        jd = self._jd
        return -float(np.dot(jd, self.residuals + 0.5 * jd))

    def jacobian_matrix(self):
        """The current (whitened, loss-corrected) Jacobian: dense array for a dense pattern, else CSC."""
        p = self.pattern
        if p.dense:
            return p.data.reshape(p.shape[1], p.shape[0]).T.copy()
        return p.matrix(p.data.copy())


# ---------------------------------------------------------------------------------------------
# linear solvers over the general pattern
# ---------------------------------------------------------------------------------------------
class _NormalPattern:
    """lower(J^T J + I) as a CSC pattern (diagonal first in every column), from a boolean product."""

    def __init__(self, jp: JacobianPattern):
        n = jp.shape[1]
        self.dense = jp.dense
        if jp.dense:  # full lower triangle, column by column
            self.cols, self.rows = (a.astype(np.int64) for a in np.triu_indices(n))
            self.ptr = np.concatenate([[0], np.cumsum(n - np.arange(n))]).astype(np.int64)
        else:
            ones = sp.csc_matrix((np.ones(jp.nnz), jp.indices, jp.indptr), shape=jp.shape)
            product = (ones.T @ ones).tocsc() + sp.identity(n, format="csc")
            lower = sp.tril(product, format="csc")
            lower.sort_indices()
            self.ptr = lower.indptr.astype(np.int64)
            self.rows = lower.indices.astype(np.int64)
            self.cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.ptr))
        self.nnz = int(self.ptr[-1])
        self.diagonal_positions = self.ptr[:-1].copy()
        if not np.array_equal(self.rows[self.diagonal_positions], np.arange(jp.shape[1])):
            raise AssertionError("normal-matrix pattern: diagonal is not first in every column")

    def fill(self, jp: JacobianPattern, out: np.ndarray) -> None:
        if self.dense:  # BLAS: J^T J from the column-major values
            jt = jp.data.reshape(jp.shape[1], jp.shape[0])
            out[:] = (jt @ jt.T)[self.rows, self.cols]
            return
        chunks = max(1, min(4 * numba.get_num_threads(), jp.shape[1]))
        _fill_normal_lower(jp.indptr, jp.indices, jp.data, jp.row_ptr, jp.row_cols, jp.csr_data,
                           self.ptr, self.rows, out, chunks)


class GeneralSparseNormalCholesky(LinearSolver):
    """(J^T J + diag(D)) step = -J^T r for a general sparse J: fixed lower(J^T J) pattern, CHOLMOD
    analysed once (again only if the Jacobian pattern grows), refactored per trial."""

    name = "sparse_normal_cholesky"

    def __init__(self, evaluator: MatrixEvaluator, timer: PhaseTimer, options: LinearSolverOptions):
        super().__init__(None, evaluator, timer, options)
        self._version = -1
        self.analyses = 0

    def _build(self) -> None:
        with self.timer.phase("symbolic"):
            self.normal = _NormalPattern(self.evaluator.pattern)
            self.values = np.zeros(self.normal.nnz)
            self._work = np.zeros(self.normal.nnz)
            self._matrix = sp.csc_matrix((self._work, self.normal.rows, self.normal.ptr),
                                         shape=(self.evaluator.n, self.evaluator.n))
            self._work[self.normal.diagonal_positions] = 1.0
            self.factor = CholmodFactor(self._matrix, self.options.ordering, self.options.factorization)
            self.analyses += 1
            self._version = self.evaluator.pattern_version

    def linearize(self) -> None:
        if self._version != self.evaluator.pattern_version:
            self._build()
        with self.timer.phase("assembly"):
            self.normal.fill(self.evaluator.pattern, self.values)

    def solve(self, diagonal: np.ndarray) -> LinearSolution:
        with self.timer.phase("factorization"):
            np.copyto(self._work, self.values)
            self._work[self.normal.diagonal_positions] += diagonal
            if not self.factor.factorize(self._matrix):
                return self._failed("CHOLMOD: normal matrix not positive definite")
        with self.timer.phase("solve"):
            step = -self.factor.solve(self.evaluator.gradient)
        return self._finite_or_failure(np.asarray(step).ravel())

    def info(self) -> dict:
        d = {"name": self.name, "columns": self.evaluator.n, "nnz_lower": self.normal.nnz,
             "ordering": self.factor.ordering, "factorization": self.factor.mode,
             "analysis_seconds": self.factor.analysis_seconds, "analyses": self.analyses}
        if self.factor.factorized:
            d["factor_nnz"] = self.factor.factor_nnz()
        return d


class GeneralDenseNormalCholesky(GeneralSparseNormalCholesky):
    """The same normal matrix, scattered into a dense array and factored by LAPACK (small n)."""

    name = "dense"

    def _build(self) -> None:
        with self.timer.phase("symbolic"):
            self.normal = _NormalPattern(self.evaluator.pattern)
            self.values = np.zeros(self.normal.nnz)
            self.hessian = np.zeros((self.evaluator.n, self.evaluator.n))
            self.analyses += 1
            self._version = self.evaluator.pattern_version

    def linearize(self) -> None:
        super().linearize()
        self.hessian[self.normal.rows, self.normal.cols] = self.values

    def solve(self, diagonal: np.ndarray) -> LinearSolution:
        with self.timer.phase("factorization"):
            try:
                h = self.hessian + np.diag(diagonal)
                factor = scipy.linalg.cho_factor(h, lower=True, check_finite=False)
            except (np.linalg.LinAlgError, ValueError):
                return self._failed("dense Cholesky: matrix not positive definite")
        with self.timer.phase("solve"):
            step = -scipy.linalg.cho_solve(factor, self.evaluator.gradient, check_finite=False)
        return self._finite_or_failure(step)

    def info(self) -> dict:
        return {"name": self.name, "columns": self.evaluator.n, "nnz_lower": self.normal.nnz,
                "analyses": self.analyses}


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
def _check_bounds(bounds, n):
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):
        lb, ub = bounds.lb, bounds.ub
    else:
        try:
            lb, ub = bounds
        except (TypeError, ValueError):
            raise ValueError("`bounds` must contain 2 elements.") from None
    lb = np.broadcast_to(np.asarray(lb, dtype=float), (n,))
    ub = np.broadcast_to(np.asarray(ub, dtype=float), (n,))
    if np.any(lb != -np.inf) or np.any(ub != np.inf):
        raise ValueError("`bounds`: sparselm.least_squares supports unbounded problems only (bounds=(-inf, inf)); "
                         "use scipy.optimize.least_squares(method='trf') for bounded problems")


def _check_tolerance(tol, name):
    if tol is None:
        return 0.0
    tol = float(tol)
    if not (tol >= 0):
        raise ValueError(f"`{name}` must be non-negative, got {tol}")
    return tol


def _resolve_damping(x_scale, damping, n):
    """(damping for the strategy, fixed damping diagonal or None, x_scale as used)."""
    if damping is not None and damping not in ("marquardt", "levenberg", "gauss_newton"):
        raise ValueError(f"`damping`: unknown {damping!r}; choose 'marquardt', 'levenberg' or 'gauss_newton'")
    if x_scale is None:
        d = damping or "marquardt"
        return d, (np.ones(n) if d == "levenberg" else None), ("jac" if d == "marquardt" else 1.0)
    if isinstance(x_scale, str):
        if x_scale != "jac":
            raise ValueError("`x_scale` must be 'jac' or array_like with positive numbers.")
        if damping not in (None, "marquardt"):
            raise ValueError(f"`x_scale`='jac' is Marquardt scaling; it contradicts damping={damping!r}")
        return "marquardt", None, "jac"
    scale = np.asarray(x_scale, dtype=float)
    if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError("`x_scale` must be 'jac' or array_like with positive numbers.")
    if scale.ndim == 0:
        scale = np.full(n, float(scale))
    if scale.shape != (n,):
        raise ValueError("Inconsistent shapes between `x_scale` and `x0`.")
    if damping not in (None, "levenberg"):
        raise ValueError(f"an array `x_scale` means damping lambda * diag(1/x_scale^2); it contradicts "
                         f"damping={damping!r} (give one of the two)")
    return "marquardt", 1.0 / scale ** 2, scale


class _WithArgs:
    """fun(x, *args, **kwargs) as a 1-d array; a class (not a closure) so that worker pools can pickle it."""

    def __init__(self, fun, args, kwargs):
        self.fun, self.args, self.kwargs = fun, tuple(args), dict(kwargs)

    def __call__(self, x):
        return np.atleast_1d(self.fun(x, *self.args, **self.kwargs))


def _wrap_user_callback(callback):
    if callback is None:
        return None
    try:
        params = set(inspect.signature(callback).parameters)
    except (TypeError, ValueError):
        params = set()
    if params == {"intermediate_result"}:
        return lambda res: callback(intermediate_result=res)
    return lambda res: callback(np.copy(res.x))


def _make_workers(workers):
    if workers is None or callable(workers):
        return workers, None
    if isinstance(workers, int) and not isinstance(workers, bool):
        if workers == 1:
            return None, None
        from scipy._lib._util import MapWrapper  # scipy's own int -> pool rule

        pool = MapWrapper(workers)
        return pool, pool
    raise ValueError("`workers` must be None, an int or a map-like callable")


# ---------------------------------------------------------------------------------------------
# the front door
# ---------------------------------------------------------------------------------------------
def least_squares(fun, x0, jac="2-point", *, bounds=(-np.inf, np.inf), method="trf", ftol=1e-8, xtol=1e-8,
                  gtol=1e-8, x_scale=None, loss="linear", f_scale=1.0, diff_step=None, tr_solver=None,
                  tr_options=None, jac_sparsity=None, max_nfev=None, verbose=0, args=(), kwargs=None,
                  callback=None, workers=None, sigma=None, linear_solver="auto", damping=None, ordering="amd",
                  factorization="auto",
                  **unsupported):
    """Solve min_x 1/2 sum rho(f_i(x)^2) like ``scipy.optimize.least_squares``, with sparselm's LM.

    Parameters are scipy's (module docstring: what differs and why) plus

    sigma          per-residual standard deviations (m,) or a block-diagonal covariance (m, m):
                   minimise the Mahalanobis form with residuals whitened by A, A^T A = Sigma^-1.
    linear_solver  'auto' (dense LAPACK for n <= 300, else CHOLMOD), 'dense', 'sparse_normal_cholesky'.
    damping        sparselm's name for the scaling (None: follow ``x_scale``; 'marquardt' = 'jac',
                   'levenberg' = x_scale 1, 'gauss_newton' = no damping).
    ordering       CHOLMOD fill-reducing ordering ('amd', 'metis', 'nesdis', 'colamd', 'natural', ...).
    factorization  CHOLMOD method: 'auto' (its own choice), 'simplicial' or 'supernodal'.

    Returns a ``scipy.optimize.OptimizeResult`` with scipy's fields (x, cost, fun, jac, grad,
    optimality, active_mask, nfev, njev, status, message, success) plus ``nit`` (accepted steps)
    and ``summary`` (a :class:`sparselm.Summary`: every trial, times per phase, sizes).
    """
    start = time.perf_counter()
    if unsupported:
        raise TypeError(f"sparselm.least_squares got unsupported argument(s) {', '.join(sorted(unsupported))}; "
                        "it accepts scipy's arguments plus sigma, linear_solver, damping, ordering")
    if method == "dogbox":
        raise ValueError("`method`='dogbox' is not supported: sparselm.least_squares solves with Levenberg-Marquardt "
                         "(method='trf' or 'lm' both select it); dogbox is for bounded problems, which it "
                         "does not support")
    if method not in METHODS:
        raise ValueError(f"`method` must be 'trf' or 'lm' (both select sparselm's LM), got {method!r}")
    if tr_solver is not None:
        raise ValueError(f"`tr_solver`={tr_solver!r} is not supported: the step is solved by Cholesky of the damped "
                         "normal equations; choose `linear_solver` ('auto', 'dense', 'sparse_normal_cholesky') "
                         "and `ordering` instead")
    if tr_options:
        raise ValueError("`tr_options` is not supported (no lsmr / exact trust-region subproblem here); "
                         "see `linear_solver` and `ordering`")
    if linear_solver not in API_LINEAR_SOLVERS:
        raise ValueError(f"`linear_solver`: unknown {linear_solver!r}; choose one of {', '.join(API_LINEAR_SOLVERS)}")
    if ordering not in ORDERINGS:
        raise ValueError(f"`ordering`: unknown {ordering!r}; choose one of {', '.join(ORDERINGS)}")
    if factorization not in MODES:
        raise ValueError(f"`factorization`: unknown {factorization!r}; choose one of {', '.join(MODES)}")
    if not (loss in SCIPY_LOSSES or callable(loss)):
        raise ValueError(f"`loss` must be one of {SCIPY_LOSSES} or a callable.")
    if verbose not in (0, 1, 2):
        raise ValueError("`verbose` must be in [0, 1, 2].")
    if max_nfev is not None and max_nfev <= 0:
        raise ValueError("`max_nfev` must be None or positive integer.")
    if not (callable(jac) or jac in ("2-point", "3-point", "cs")):
        raise ValueError("`jac` must be '2-point', '3-point', 'cs' or callable.")
    if np.iscomplexobj(x0):
        raise ValueError("`x0` must be real.")
    x = np.atleast_1d(np.asarray(x0)).astype(float)
    if x.ndim > 1:
        raise ValueError("`x0` must have at most 1 dimension.")
    n = x.size
    _check_bounds(bounds, n)
    ftol, xtol, gtol = (_check_tolerance(t, k) for t, k in ((ftol, "ftol"), (xtol, "xtol"), (gtol, "gtol")))
    if ftol < EPS and xtol < EPS and gtol < EPS:
        raise ValueError(f"At least one of the tolerances must be higher than machine epsilon ({EPS:.2e}).")
    f_scale = float(f_scale)
    if not (math.isfinite(f_scale) and f_scale > 0):
        raise ValueError("`f_scale` must be positive.")
    damping_used, fixed_diagonal, x_scale_used = _resolve_damping(x_scale, damping, n)
    kwargs = kwargs or {}
    max_nfev_used = 100 * n if max_nfev is None else int(max_nfev)

    fun_wrapped = _WithArgs(fun, args, kwargs)
    timer = PhaseTimer()
    n_threads = threads.configure(None)
    with timer.phase("residual"):
        f = fun_wrapped(x).astype(float)
    nfev = 1
    if f.ndim != 1:
        raise ValueError(f"`fun` must return at most 1-d array_like. f0.shape: {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("Residuals are not finite in the initial point.")
    m = f.size
    whitening = whitening_operator(sigma, m)
    ev = MatrixEvaluator(m, n, loss, f_scale, whitening, timer)
    if callable(loss):
        _callable_loss_terms(loss, f_scale, f)  # shape check up front, as scipy

    with contextlib.ExitStack() as stack:
        fd = None
        if callable(jac):
            def jacobian_at(v, fv):
                with timer.phase("jacobian"):
                    j = jac(v, *args, **kwargs)
                    if not (sp.issparse(j) or isinstance(j, np.ndarray)):
                        if hasattr(j, "matvec") and hasattr(j, "shape"):
                            raise ValueError("`jac` returned a LinearOperator: sparselm.least_squares needs the "
                                             "Jacobian's entries (a sparse matrix or an array)")
                        j = np.atleast_2d(np.asarray(j, dtype=float))
                    if sp.issparse(j) and j.dtype != np.float64:
                        j = j.astype(np.float64)
                    elif isinstance(j, np.ndarray):
                        j = np.atleast_2d(np.asarray(j, dtype=float))
                    if j.shape != (m, n):
                        raise ValueError(f"The return value of `jac` has wrong shape: expected {(m, n)}, "
                                         f"actual {j.shape}.")
                    ev.absorb(j)
            if workers is not None:
                raise ValueError("`workers` is used for finite-difference Jacobians only; `jac` is a callable here")
            if jac_sparsity is not None:
                # A callable's pattern is its own; jac_sparsity, if given, seeds the fixed pattern (entries
                # that are zero at x0 but not later then cost no rebuild).
                seed = _sparsity_pattern(jac_sparsity, m, n)
                if whitening is not None and whitening[0] == "matrix":
                    seed = JacobianPattern.from_matrix(whitening[1] @ seed.matrix(np.ones(seed.nnz)))
                ev.set_pattern(seed)
        else:
            workers_map, pool = _make_workers(workers)
            if pool is not None:
                stack.enter_context(pool)  # closed and terminated when the solve ends, however it ends
            if jac_sparsity is None:
                raw = JacobianPattern((m, n), np.arange(0, m * n + 1, m), np.tile(np.arange(m), n), dense=True)
            else:
                raw = _sparsity_pattern(jac_sparsity, m, n)
            fd = FiniteDifferenceJacobian(fun_wrapped, raw, jac, diff_step, timer, workers_map)
            if whitening is None or whitening[0] == "diag":
                ev.set_pattern(raw)

            def jacobian_at(v, fv):
                with timer.phase("jacobian"):
                    fd(v, fv)
                    if whitening is not None and whitening[0] == "matrix":
                        ev.absorb(raw.matrix() if not raw.dense else raw.data.reshape(n, m).T)
        jacobian_at(x, f)
        njev = 1
        options = SolverOptions(function_tolerance=ftol, gradient_tolerance=gtol, parameter_tolerance=xtol,
                                damping=damping_used, ordering=ordering, verbose=verbose == 2,
                                linear_solver=linear_solver)
        if fixed_diagonal is not None:
            options.min_diagonal = min(options.min_diagonal, float(fixed_diagonal.min()))
            options.max_diagonal = max(options.max_diagonal, float(fixed_diagonal.max()))
        solver_name = linear_solver
        if solver_name == "auto":
            solver_name = "dense" if n <= DENSE_MAX_COLUMNS else "sparse_normal_cholesky"
        if solver_name == "dense" and n > MAX_DENSE_COLUMNS:
            raise ValueError(f"`linear_solver`='dense' is for small problems (<= {MAX_DENSE_COLUMNS} parameters); "
                             f"this one has {n}: use 'sparse_normal_cholesky'")
        lin_opts = LinearSolverOptions(ordering=ordering, factorization=factorization)
        solver_cls = GeneralDenseNormalCholesky if solver_name == "dense" else GeneralSparseNormalCholesky
        ls = solver_cls(ev, timer, lin_opts)
        strategy = LevenbergMarquardtStrategy(options, np.zeros(n, dtype=bool))
        cb = _wrap_user_callback(callback)

        summary = Summary()
        summary.options_given = {"method": method, "ftol": ftol, "xtol": xtol, "gtol": gtol,
                                 "x_scale": x_scale if x_scale is None or isinstance(x_scale, str) else "array",
                                 "loss": loss if isinstance(loss, str) else "callable", "f_scale": f_scale,
                                 "max_nfev": max_nfev, "jac": jac if isinstance(jac, str) else "callable",
                                 "diff_step": None if diff_step is None else "given",
                                 "jac_sparsity": None if jac_sparsity is None else "given",
                                 "sigma": None if sigma is None else whitening[0], "linear_solver": linear_solver,
                                 "damping": damping, "ordering": ordering}
        used = options.to_dict()
        summary.options_used = {k: used[k] for k in (
            "damping", "initial_trust_region_radius", "max_trust_region_radius", "min_trust_region_radius",
            "min_relative_decrease", "min_diagonal", "max_diagonal", "max_consecutive_invalid_steps", "ordering",
            "factorization")}
        summary.options_used.update(
            method="sparselm LM", ftol=ftol, xtol=xtol, gtol=gtol, max_nfev=max_nfev_used, linear_solver=solver_name,
            threads=n_threads, sigma=summary.options_given["sigma"], damping=damping if damping else damping_used,
            x_scale=x_scale_used if isinstance(x_scale_used, str) or np.ndim(x_scale_used) == 0 else "array")
        summary.options_used["damping"] = damping_used if fixed_diagonal is None else "lambda * diag(1/x_scale^2)"

        def out(line):
            print(line, flush=True)

        def record(rec):
            summary.iterations.append(rec)
            if verbose == 2:
                if rec.iteration == 0:
                    out(TABLE_HEADER)
                out(rec.row())

        status = None
        reason = ""
        nit = 0
        try:
            with timer.phase("assembly"):
                cost = ev.linearize(f)
            ls.linearize()
            summary.setup_time_s = time.perf_counter() - start
            summary.initial_cost = summary.final_cost = cost
            g_norm = float(np.max(np.abs(ev.gradient))) if n else 0.0
            record(IterationRecord(0, cost, 0.0, g_norm, 0.0, 0.0, strategy.radius, 0, 0.0,
                                   time.perf_counter() - start, True))
            if g_norm < gtol:
                status = 1
            iteration = 0
            invalid_in_row = 0
            while status is None:
                if nfev >= max_nfev_used:
                    status = 0
                    break
                iteration += 1
                t_iter = time.perf_counter()
                diag_source = ev.column_norms if fixed_diagonal is None else fixed_diagonal
                solution = ls.solve(strategy.diagonal(diag_source))
                model_change = ev.model_cost_change(solution.step) if solution.ok else math.nan
                if not (solution.ok and math.isfinite(model_change) and model_change > 0.0):
                    invalid_in_row += 1
                    summary.invalid_steps += 1
                    summary.unsuccessful_steps += 1
                    strategy.step_rejected()
                    record(IterationRecord(iteration, cost, 0.0, g_norm, 0.0, 0.0, strategy.radius, solution.iterations,
                                           time.perf_counter() - t_iter, time.perf_counter() - start, False, False))
                    if invalid_in_row > options.max_consecutive_invalid_steps:
                        status = -1
                        reason = (f"{invalid_in_row} consecutive invalid steps (last: "
                                  f"{solution.message or f'model cost change {model_change:.3e} is not positive'}).")
                    elif strategy.below_minimum:
                        status = -1
                        reason = "Minimum trust region radius reached without a valid step."
                    continue
                invalid_in_row = 0
                step = solution.step
                x_new = x + step
                with timer.phase("residual"):
                    f_new = fun_wrapped(x_new).astype(float)
                nfev += 1
                step_norm = float(np.linalg.norm(step))
                trial_cost = ev.cost_of(f_new) if np.all(np.isfinite(f_new)) else math.nan
                if math.isfinite(trial_cost):
                    actual = cost - trial_cost
                    ratio = actual / model_change
                    # scipy's check_termination
                    ftol_ok = actual < ftol * cost and ratio > 0.25
                    xtol_ok = step_norm < xtol * (xtol + float(np.linalg.norm(x)))
                    status = 4 if (ftol_ok and xtol_ok) else 2 if ftol_ok else 3 if xtol_ok else None
                    success = ratio > options.min_relative_decrease if damping_used != "gauss_newton" else actual > 0
                    if status is not None:
                        success = actual > 0  # scipy keeps any decrease on its last step
                else:
                    actual, ratio, success = math.nan, math.nan, False
                if success:
                    x, f = x_new, f_new
                    jacobian_at(x, f)
                    njev += 1
                    with timer.phase("assembly"):
                        cost = ev.linearize(f)
                    ls.linearize()
                    g_norm = float(np.max(np.abs(ev.gradient)))
                    strategy.step_accepted(ratio)
                    summary.successful_steps += 1
                    summary.final_cost = cost
                    nit += 1
                    if g_norm < gtol:
                        status = 1
                else:
                    summary.unsuccessful_steps += 1
                    strategy.step_rejected()
                record(IterationRecord(iteration, cost, actual if success else 0.0, g_norm, step_norm,
                                       ratio if math.isfinite(ratio) else 0.0, strategy.radius, solution.iterations,
                                       time.perf_counter() - t_iter, time.perf_counter() - start, success))
                if success and cb is not None:
                    res = OptimizeResult(x=x.copy(), fun=f.copy(), nit=nit, nfev=nfev)
                    res["cost"] = cost
                    try:
                        if cb(res) is True:
                            status = -2
                    except StopIteration:
                        status = -2
                if status is None and not success and damping_used == "gauss_newton":
                    status = -1
                    reason = "Gauss-Newton step did not decrease the cost (use damping='marquardt')."
                if status is None and strategy.below_minimum:
                    status = -1
                    reason = "Minimum trust region radius reached."
        except KeyboardInterrupt:
            status = -1
            reason = "Interrupted by the user (Ctrl-C); the best point so far is returned."
        message = TERMINATION_MESSAGES[status] if status != -1 else reason
        summary.termination = _SUMMARY_TERMINATION[status] if "Ctrl-C" not in reason else "interrupted"
        summary.message = message
        summary.total_time_s = time.perf_counter() - start
        summary.phases = timer.table()
        summary.linear_solver = ls.info()
        summary.environment = threads.describe()
        summary.problem = {"residuals": m, "parameters": n, "free_parameters": n, "jacobian_nnz": ev.pattern.nnz,
                           "jacobian_pattern_versions": ev.pattern_version, "nfev": nfev, "njev": njev,
                           "fd_colours": fd.n_colours if fd else None,
                           "fd_function_calls": fd.evaluations if fd else 0,
                           "sigma": None if whitening is None else whitening[0]}
        g_norm = float(np.max(np.abs(ev.gradient))) if n else 0.0
        result = OptimizeResult(x=x, cost=float(cost), fun=f, jac=ev.jacobian_matrix(), grad=ev.gradient.copy(),
                                optimality=g_norm, active_mask=np.zeros_like(x), nfev=nfev, njev=njev,
                                status=status, message=message, success=status > 0, nit=nit, summary=summary)
        if verbose >= 1:
            out(message)
            out(f"Function evaluations {nfev}, initial cost {summary.initial_cost:.4e}, final cost {cost:.4e}, "
                f"first-order optimality {g_norm:.2e}.")
        return result
