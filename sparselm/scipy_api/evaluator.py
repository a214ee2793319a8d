"""The evaluator of :func:`sparselm.least_squares`: one black-box residual vector with a (sparse)
Jacobian matrix, whitened by sigma and corrected for the robust loss (Triggs' correction, as
:mod:`sparselm.core.evaluator` does for a Problem); a user loss callable is scaled as scipy does."""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Optional

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from sparselm.core.evaluator import NonFiniteError
from sparselm.core.loss import make_loss, plain_cost, robust_correct, robust_cost
from sparselm.linalg.csc import JacobianPattern, csr_times_vector, gradient_and_column_norms, scale_rows
from sparselm.scipy_api.jacobian import EPS
from sparselm.util.timing import PhaseTimer


def callable_loss_terms(loss, f_scale, r):
    """(cost, rho', rho'') of a user loss callable, scaled as scipy does (rho(f^2) = C^2 rho(f^2 / C^2))."""
    z = (r / f_scale) ** 2
    rho = np.asarray(loss(z), dtype=float)
    if rho.shape != (3, r.size):
        raise ValueError(f"The return value of `loss` callable has wrong shape: expected {(3, r.size)}, "
                         f"got {rho.shape}")
    return 0.5 * f_scale ** 2 * float(np.sum(rho[0])), rho[1], rho[2] / f_scale ** 2


def _triggs_scales(r, rho1, rho2):
    """Residual and Jacobian-row scales of Triggs' correction for scalar residuals.

    The scalar case of :func:`sparselm.core.evaluator._robust_correct` (used for built-in losses),
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

    The counterpart of :class:`sparselm.core.evaluator.Evaluator` for one residual vector: whitening by
    sigma, the robust loss (Triggs' correction), then ``residuals``, Jacobian values in
    ``pattern.data`` (CSC) and ``pattern.csr_data``, ``gradient`` = J^T r and ``column_norms``.
    """

    def __init__(self, m: int, n: int, loss, f_scale: float, whitening, timer: PhaseTimer):
        self.m, self.n = m, n
        self.timer = timer
        self.user_loss = loss if callable(loss) else None
        self.loss = None if callable(loss) else make_loss(loss, f_scale)
        self.loss_name = None if callable(loss) else loss
        self.f_scale = float(f_scale)
        self.whitening = whitening
        self.pattern: Optional[JacobianPattern] = None
        self.pattern_version = 0
        self.residuals = np.zeros(m)
        self.gradient = np.zeros(n)
        self.column_norms = np.zeros(n)
        self._jd = np.zeros(m)
        self.cost = math.nan
        self.whitened = np.zeros(m)  # whitened residuals r' = A f before the loss correction
        self.loss_row_scale = None  # Triggs' Jacobian row scale of the last linearisation (None: none)

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
            total = callable_loss_terms(self.user_loss, self.f_scale, r)[0]
        elif self.loss.is_trivial:
            total = plain_cost(r.reshape(-1, 1))
        else:
            total = robust_cost(self.loss.id, self.loss.scale, r.reshape(-1, 1))
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
        cost, row_scale = self._corrected_residuals(f)
        if row_scale is not None:
            scale_rows(p.indices, p.data, np.ascontiguousarray(row_scale))
        p.refresh_csr()
        gradient_and_column_norms(p.indptr, p.indices, p.data, self.residuals, self.gradient, self.column_norms)
        self.cost = float(cost)
        return self.cost

    def _corrected_residuals(self, f: np.ndarray):
        """Whiten f and apply the loss (Triggs): sets ``whitened``, ``residuals`` and
        ``loss_row_scale``; returns (cost, Jacobian row scale or None: loss times diagonal whitening)."""
        r = self.whiten(f)
        self.whitened = r.copy()
        row_scale = None
        if self.user_loss is not None:
            cost, rho1, rho2 = callable_loss_terms(self.user_loss, self.f_scale, r)
            res_scale, row_scale = _triggs_scales(r, rho1, rho2)
            r *= res_scale
        elif self.loss.is_trivial:
            cost = plain_cost(r.reshape(-1, 1))
        else:
            ones = np.ones((self.m, 1, 1))
            r2 = r.reshape(-1, 1)
            cost = robust_correct(self.loss.id, self.loss.scale, r2, ones)
            row_scale = ones[:, 0, 0]
        self.loss_row_scale = row_scale
        if self.whitening is not None and self.whitening[0] == "diag":
            row_scale = self.whitening[1] if row_scale is None else row_scale * self.whitening[1]
        self.residuals = np.ascontiguousarray(r)
        return cost, row_scale

    def jacobian_operator(self):
        """The current (whitened, loss-corrected) Jacobian for products: CSC on the fixed pattern."""
        return self.pattern.matrix()

    def model_cost_change(self, step: np.ndarray) -> float:
        """L(0) - L(step) = -(J step)^T (r + J step / 2)."""
        p = self.pattern
        csr_times_vector(p.row_ptr, p.row_cols, p.csr_data, step, self._jd)
        jd = self._jd
        return -float(np.dot(jd, self.residuals + 0.5 * jd))

    def jacobian_matrix(self):
        """The current (whitened, loss-corrected) Jacobian: dense array for a dense pattern, else CSC."""
        p = self.pattern
        if p.dense:
            return p.data.reshape(p.shape[1], p.shape[0]).T.copy()
        return p.matrix(p.data.copy())



def _scipy_loss_derivatives(loss: str, z: np.ndarray):
    """rho'(z), rho''(z) of scipy's built-in losses (z = (f / f_scale)^2)."""
    if loss == "huber":
        inlier = z <= 1
        zs = np.where(inlier, 1.0, z)
        return np.where(inlier, 1.0, zs ** -0.5), np.where(inlier, 0.0, -0.5 * zs ** -1.5)
    if loss == "soft_l1":
        t = 1 + z
        return t ** -0.5, -0.5 * t ** -1.5
    if loss == "cauchy":
        t = 1 + z
        return 1 / t, -1 / t ** 2
    t = 1 + z * z  # arctan
    return 1 / t, -2 * z / t ** 2


def scipy_jacobian(ev: MatrixEvaluator):
    """The Jacobian scipy's ``least_squares`` returns with a robust loss, at ev's last linearisation.

    scipy scales the rows of J by sqrt(rho' + 2 rho'' z) with z = (f / f_scale)^2, replaced by
    sqrt(EPS) where that is below EPS; sparselm's steps used Triggs' rows instead, so those are
    divided out. Whitening by ``sigma`` stays in (the problem is the whitened one). Dense array for a
    dense pattern, CSC otherwise.
    """
    jacobian = ev.jacobian_matrix()
    if ev.loss_row_scale is None:
        return jacobian
    z = (ev.whitened / ev.f_scale) ** 2
    if ev.user_loss is not None:
        rho = np.asarray(ev.user_loss(z), dtype=float)
        rho1, rho2 = rho[1], rho[2]
    else:
        rho1, rho2 = _scipy_loss_derivatives(ev.loss_name, z)
    scale = rho1 + 2 * rho2 * z
    scale = np.sqrt(np.where(scale < EPS, EPS, scale)) / ev.loss_row_scale
    if isinstance(jacobian, np.ndarray):
        return jacobian * scale[:, None]
    if isinstance(jacobian, LinearOperator):
        return aslinearoperator(sp.diags(scale)) @ jacobian
    return sp.csc_matrix(sp.diags(scale) @ jacobian)


class OperatorEvaluator(MatrixEvaluator):
    """A Jacobian given as a scipy LinearOperator: only products with J and J^T (tr_solver='lsmr').

    Whitening and the loss correction act as row scalings composed with the operator; there are
    no column norms (the damping and the trust radius then use ``x_scale``, as scipy requires).
    """

    def __init__(self, m: int, n: int, loss, f_scale: float, whitening, timer: PhaseTimer):
        super().__init__(m, n, loss, f_scale, whitening, timer)
        self.raw = None
        self.operator = None
        self.column_norms = np.ones(n)
        self.pattern = SimpleNamespace(nnz=0)

    def absorb(self, jacobian) -> None:
        op = aslinearoperator(jacobian)
        w = self.whitening
        self.raw = aslinearoperator(w[1]) @ op if w is not None and w[0] == "matrix" else op

    def linearize(self, f: np.ndarray) -> float:
        cost, row_scale = self._corrected_residuals(f)
        self.operator = self.raw if row_scale is None else aslinearoperator(sp.diags(row_scale)) @ self.raw
        self.gradient = np.asarray(self.operator.rmatvec(self.residuals), dtype=float).ravel()
        self.cost = float(cost)
        return self.cost

    def jacobian_operator(self):
        return self.operator

    def model_cost_change(self, step: np.ndarray) -> float:
        jd = np.asarray(self.operator.matvec(step), dtype=float).ravel()
        return -float(np.dot(jd, self.residuals + 0.5 * jd))

    def jacobian_matrix(self):
        return self.operator
