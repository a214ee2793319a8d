"""The distributed pieces of one LM solve: evaluator, implicit-Schur PCG and minimiser whose
every reduction over the ranks goes through one :class:`~sparselm.distributed.comm.Communicator`.

Each rank holds all kept blocks (BA: cameras, replicated) and its own eliminated blocks (points)
with their residual blocks (see :mod:`sparselm.distributed.partition`). With U, W, V the blocks of
:mod:`sparselm.linalg.schur.structure` and a subscript r for rank r's own residual blocks,

    U = sum_r U_r,  g_f = sum_r g_f,r,  W = [W_1 ... W_K],  V = diag(V_1, ..., V_K),
    S x = (U + D_f) x - sum_r W_r V_r^-1 W_r^T x,   rhs = -g_f + sum_r W_r V_r^-1 g_e,r.

So each rank evaluates its residuals and Jacobians, forms its V_r, W_r and its part of U and g_f;
the messages, all MPI Allreduce (sum) of float64 vectors, are

    per linearisation   U's blocks, g_f and diag(J^T J)_f           (nnz(U) + 2 n_r doubles)
    per trial           the Schur-Jacobi blocks' sums, rhs parts,
                        the count of eliminated blocks not PD         (n_f kf^2 + n_f kf + 1)
    per CG iteration    sum_r W_r V_r^-1 W_r^T p                      (n_f kf doubles: 9 n_cameras in BA)

plus scalars (cost, model decrease, norms, the stop flags). Everything else of CG (P^-1, dot
products, the vector updates) runs on replicated camera vectors, identically on every rank, so
the CG iterates, the step's camera part and every LM decision are the same on all ranks;
back-substitution of the points is local. Against the single-process solver only the order of the
sums over the cameras differs (round-off).
"""
from __future__ import annotations

import math
from typing import Dict

import numpy as np

from sparselm.core.evaluator import Evaluator, NonFiniteError
from sparselm.distributed.comm import Communicator
from sparselm.distributed.partition import NotDistributable
from sparselm.linalg.base import LinearSolution
from sparselm.linalg.schur.implicit import ImplicitSchur
from sparselm.lm.minimizer import Minimizer


class DistributedEvaluator(Evaluator):
    """An :class:`Evaluator` of this rank's residual blocks whose costs are sums over all ranks."""

    def __init__(self, problem, layout, timer, comm: Communicator):
        super().__init__(problem, layout, timer)
        self.comm = comm

    def cost_at(self, values: Dict[str, np.ndarray]) -> float:
        return self.comm.sum(super().cost_at(values), "cost")

    def linearize(self, values: Dict[str, np.ndarray], gradient: bool = True, check_jacobian: bool = True) -> float:
        """As :meth:`Evaluator.linearize`, collectively: NonFiniteError on every rank if on any. The
        Jacobian is always checked here (``check_jacobian`` is ignored): a later local check could
        stop one rank and not the others."""
        message = ""
        try:
            local = super().linearize(values, gradient)
        except NonFiniteError as exc:
            message, local = str(exc), 0.0
        flag_and_cost = self.comm.sum_in_place(np.array([1.0 if message else 0.0, local]), "cost")
        if flag_and_cost[0] > 0.0:
            raise NonFiniteError(message or f"a non-finite residual or Jacobian on {int(flag_and_cost[0])} "
                                            "other rank(s)")
        self.cost = float(flag_and_cost[1])
        return self.cost

    def model_cost_change(self, step: np.ndarray) -> float:
        return self.comm.sum(super().model_cost_change(step), "cost")


class DistributedIterativeSchur(ImplicitSchur):
    """Implicit-Schur PCG over ranks: the sums of the module docstring, one Allreduce per CG iteration."""

    name = "iterative_schur"

    def __init__(self, layout, evaluator, timer, options, comm: Communicator):
        super().__init__(layout, evaluator, timer, options)
        self.comm = comm
        n_f, kf = self.n_f, self.kf
        self._y_sum = np.zeros((1, n_f, kf))
        schur_pc = self.preconditioner == "schur_jacobi"
        self._p_len = n_f * kf * kf if schur_pc else 0
        self._rhs_len = n_f * kf
        self._elim_buf = np.zeros(self._p_len + self._rhs_len + 1)
        # U's entries in the order of the matvec's CSR of U's blocks, the same on every rank when U's block
        # structure is (BA: block-diagonal).
        self._u_src = self.u_csr_sources()
        sizes = comm.max([self._u_src.size, -self._u_src.size], "setup")
        if sizes[0] != -sizes[1]:
            raise NotDistributable("U's block structure differs between ranks (residual blocks joining two kept "
                                   "blocks): the distributed solve supports U block-diagonal, as in bundle adjustment")
        self._lin_buf = np.zeros(self._u_src.size + 2 * self.n_r)

    def linearize(self) -> None:
        super().linearize()
        n_u, n_r = self._u_src.size, self.n_r
        g, norms, buf = self.evaluator.gradient, self.evaluator.column_norms, self._lin_buf
        buf[:n_u] = self.u_values[self._u_src]
        buf[n_u:n_u + n_r] = g[:n_r]
        buf[n_u + n_r:] = norms[:n_r]
        self.comm.sum_in_place(buf, "linearize")
        self.u_values[self._u_src] = buf[:n_u]
        g[:n_r] = buf[n_u:n_u + n_r]
        norms[:n_r] = buf[n_u + n_r:]

    def combine_elimination(self, p_priv, rhs_priv, failures):
        buf, n_p, n_rhs = self._elim_buf, self._p_len, self._rhs_len
        if n_p:
            np.sum(p_priv, axis=0, out=buf[:n_p].reshape(p_priv.shape[1:]))
        np.sum(rhs_priv, axis=0, out=buf[n_p:n_p + n_rhs].reshape(rhs_priv.shape[1:]))
        buf[-1] = failures
        self.comm.sum_in_place(buf, "elimination")
        p_sum = buf[:n_p].reshape((1,) + p_priv.shape[1:]) if n_p else p_priv
        return p_sum, buf[n_p:n_p + n_rhs].reshape((1,) + rhs_priv.shape[1:]), int(round(buf[-1]))

    def combine_products(self, y_priv):
        np.sum(y_priv, axis=0, out=self._y_sum[0])
        self.comm.sum_in_place(self._y_sum, "cg")
        return self._y_sum

    def _finite_or_failure(self, step: np.ndarray, iterations: int = 1) -> LinearSolution:
        bad = self.comm.sum(0.0 if np.all(np.isfinite(step[self.n_r:])) else 1.0, "solve")
        if bad or not np.all(np.isfinite(step[:self.n_r])):
            return LinearSolution(None, False, "the linear solve produced a non-finite step", iterations)
        return LinearSolution(step, True, "", iterations)

    def info(self) -> dict:
        d = super().info()
        cg_calls = self.comm.calls.get("cg", 0)
        d.update(ranks=self.comm.size,
                 bytes_per_cg_iteration=(self.comm.sent.get("cg", 0) / cg_calls) if cg_calls else math.nan,
                 bytes_per_cg_iteration_model=8 * self._y_sum.size,
                 allreduce_bytes={k: int(v) for k, v in self.comm.sent.items()},
                 allreduce_calls={k: int(v) for k, v in self.comm.calls.items()})
        return d


class DistributedMinimizer(Minimizer):
    """The LM loop with its three norms reduced over the ranks (the kept part counted once)."""

    def __init__(self, evaluator, linear_solver, options, comm: Communicator, out=None):
        super().__init__(evaluator, linear_solver, options, out)
        self.comm = comm
        self.n_r = evaluator.layout.n_reduced_columns

    def _gradient_max_norm(self) -> float:
        g = self.evaluator.gradient
        return float(self.comm.max([np.max(np.abs(g)) if g.size else 0.0], "norms")[0])

    def _step_norm(self, step: np.ndarray) -> float:
        kept = float(step[:self.n_r] @ step[:self.n_r])
        own = float(step[self.n_r:] @ step[self.n_r:])
        return math.sqrt(kept + self.comm.sum(own, "norms"))

    def _every_block_moves_little(self, values: Dict[str, np.ndarray], step: np.ndarray) -> bool:
        """The block-by-block parameter test on every rank's own blocks, agreed by all ranks."""
        moves = 0.0 if super()._every_block_moves_little(values, step) else 1.0
        return float(self.comm.max([moves], "norms")[0]) == 0.0

    def _free_norm(self, values: Dict[str, np.ndarray]) -> float:
        kept = own = 0.0
        for name, ids in self.evaluator.layout.block_id.items():
            v = values[name][ids >= 0]
            if self.evaluator.problem.parameter_groups[name].eliminate:
                own += float(np.sum(v * v))
            else:
                kept += float(np.sum(v * v))
        return math.sqrt(kept + self.comm.sum(own, "norms"))
