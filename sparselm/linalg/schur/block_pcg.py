"""Preconditioned conjugate gradients on the reduced camera system S x = rhs, with a
block-diagonal preconditioner over the f-blocks (its blocks' inverses in ``p_inv``), and the
inexact-Newton forcing rules of the iterative Schur solvers.

CG starts from x = 0 and stops, after at least ``min_cg_iterations`` and at most
``max_cg_iterations`` iterations, on (eta = ``cg_tolerance``)

``quadratic`` (default)  k (Q_k - Q_{k-1}) / Q_k < eta with Q(x) = x^T S x - 2 rhs^T x: Nash and
                         Sofer's truncated-Newton test, Ceres' LM rule (with eta = 0.1 and its
                         residual test switched off); it stops when one more iteration would
                         lower the quadratic model by less than eta / k of what it has gained.
``residual``             ||r_k|| <= eta ||rhs||.

A run that ends on the iteration limit still returns its step (with a message), as Ceres does:
the LM gain ratio judges it. p^T S p <= 0, a breakdown r^T P^-1 r <= 0 or non-finite values end
the run with no step and a message. The S product is the caller's: ``matvec(p, p_pad, q)``
sets q = S p and returns p . q, where ``p_pad`` (n_f, kf) holds p per f-block (zero padding past
each block's size) for products that work per block.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from sparselm.linalg.schur.pcg import apply_block_inverse, cg_direction, cg_update

TERMINATIONS = ("quadratic", "residual")


class BlockPCG:
    """The CG vectors of one reduced system and the loop; ``p_inv`` (n_f, kf, kf) is filled by the caller."""

    def __init__(self, f_col: np.ndarray, f_size: np.ndarray, kf: int, options, termination: str, padded: bool):
        if termination not in TERMINATIONS:
            raise ValueError(f"iterative_schur: unknown CG termination {termination!r}; "
                             f"choose one of {', '.join(TERMINATIONS)}")
        n_f = f_col.shape[0]
        n_red = int(f_size.sum())
        self.options, self.termination = options, termination
        self.f_col = np.ascontiguousarray(f_col, dtype=np.int64)
        self.f_size = np.ascontiguousarray(f_size, dtype=np.int64)
        self.col_block = np.repeat(np.arange(n_f, dtype=np.int64), self.f_size)
        self.col_within = (np.arange(n_red, dtype=np.int64) - np.repeat(self.f_col, self.f_size)).astype(np.int64)
        self.p_inv = np.zeros((n_f, kf, kf))
        self.x, self.r, self.z, self.p, self.q = (np.zeros(n_red) for _ in range(5))
        self.p_pad = np.zeros((n_f if padded else 0, kf))
        self.message = ""
        self.last_iterations = 0
        self.total_iterations = 0
        self.last_relative_residual = math.nan

    def run(self, rhs: np.ndarray, matvec: Callable) -> Optional[np.ndarray]:
        """PCG from x = 0 on S x = rhs; x (a work array) or None (:attr:`message` says why)."""
        o = self.options
        x, r, z, p, q = self.x, self.r, self.z, self.p, self.q
        cb, cw, p_pad = self.col_block, self.col_within, self.p_pad
        self.message = ""
        x.fill(0.0)
        r[:] = rhs
        b_norm = float(np.linalg.norm(rhs))
        if not math.isfinite(b_norm):
            self.message = "iterative_schur: the reduced right-hand side is not finite"
            return None
        if b_norm == 0.0:
            self._finish(0, 0.0)
            return x
        tol = o.cg_tolerance * b_norm
        max_it = max(int(o.max_cg_iterations), 1)
        min_it = min(int(o.min_cg_iterations), max_it)
        rz = apply_block_inverse(self.f_col, self.f_size, self.p_inv, r, z)
        p.fill(0.0)
        cg_direction(0.0, z, p, cb, cw, p_pad)
        r_norm = b_norm
        quadratic = self.termination == "quadratic"
        quad_prev = 0.0
        converged = False
        k = 0
        while k < max_it:
            pq = matvec(p, p_pad, q)
            if not math.isfinite(pq):
                return self._fail(k, r_norm / b_norm, f"non-finite value in CG iteration {k + 1}")
            if not (pq > 0.0):
                return self._fail(k, r_norm / b_norm, f"reduced camera matrix not positive definite "
                                                      f"(p^T S p = {pq:.3e} in CG iteration {k + 1})")
            rr, quad = cg_update(rz / pq, p, q, rhs, x, r)
            k += 1
            r_norm = math.sqrt(rr) if rr >= 0.0 else math.nan
            if not math.isfinite(r_norm):
                return self._fail(k, r_norm, f"non-finite residual in CG iteration {k}")
            if r_norm == 0.0:
                break
            if k >= min_it:
                if quadratic:  # Nash & Sofer, as Ceres: Q < 0 and decreasing
                    if quad < 0.0 and k * (quad - quad_prev) / quad < o.cg_tolerance:
                        converged = True
                        break
                elif r_norm <= tol:
                    converged = True
                    break
            quad_prev = quad
            if k >= max_it:
                break
            rz_new = apply_block_inverse(self.f_col, self.f_size, self.p_inv, r, z)
            if not (rz_new > 0.0):  # r != 0 and P^-1 SPD give r^T P^-1 r > 0: anything else is breakdown
                return self._fail(k, r_norm / b_norm, f"CG breakdown (r^T P^-1 r = {rz_new:.3e}) in iteration {k}")
            cg_direction(rz_new / rz, z, p, cb, cw, p_pad)
            rz = rz_new
        self._finish(k, r_norm / b_norm)
        if not converged and r_norm != 0.0:
            self.message = (f"iterative_schur: CG stopped at max_cg_iterations={max_it} with relative "
                            f"residual {r_norm / b_norm:.3e} (cg_tolerance {o.cg_tolerance:.3e}, "
                            f"{self.termination} test)")
        return x

    def _fail(self, iterations: int, relative_residual: float, why: str) -> None:
        self.message = f"iterative_schur: {why}"
        self._finish(iterations, relative_residual)
        return None

    def _finish(self, iterations: int, relative_residual: float) -> None:
        self.last_iterations = iterations
        self.total_iterations += iterations
        self.last_relative_residual = relative_residual
