"""tr_solver='lsmr': each LM step from scipy's lsmr, without forming J^T J.

For Jacobians given as a LinearOperator (which must use it) and sparse ones when asked. The damped
system (J^T J + D) d = -J^T r is the normal equations of min |J d + r|^2 + |D^(1/2) d|^2, i.e. the
least-squares problem of the stacked operator [J; D^(1/2)] and right-hand side [-r; 0], which lsmr
solves from products with J and J^T alone (D may hold zeros: an undamped trial). Coordinates pinned
by the step control (active bounds, a damping entry of PIN_FACTOR or more) are left out of the
solve and do not move. lsmr stops on its own tolerances (``tr_options``: atol, btol
(default 1e-10 here), conlim, maxiter; scipy's 'regularize' is accepted and has no further effect,
the LM damping being a regularization already), so the step is inexact and the loop takes the model
decrease from J d.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator, lsmr

from sparselm.linalg.base import LinearSolution, LinearSolver, LinearSolverOptions
from sparselm.lm.step_control import PIN_FACTOR
from sparselm.util.timing import PhaseTimer

#: lsmr's stopping tolerances unless ``tr_options`` give others: tighter than lsmr's 1e-6, so that an
#: LM step is accurate enough for the ftol/xtol tests not to stop on the solver's inexactness
LSMR_DEFAULTS = {"atol": 1e-10, "btol": 1e-10}


class LsmrStep(LinearSolver):
    """The step by lsmr on the evaluator's ``jacobian_operator()`` and ``residuals``."""

    name = "lsmr"

    def __init__(self, evaluator, timer: PhaseTimer, tr_options: dict):
        super().__init__(None, evaluator, timer, LinearSolverOptions())
        self.lsmr_options = dict(LSMR_DEFAULTS)
        self.lsmr_options.update((k, v) for k, v in (tr_options or {}).items() if k != "regularize")
        self.total_iterations = 0

    def linearize(self) -> None:
        """Nothing to assemble: lsmr only multiplies by J and J^T."""

    def solve(self, diagonal: np.ndarray) -> LinearSolution:
        ev = self.evaluator
        jacobian = ev.jacobian_operator()
        m, n = jacobian.shape
        free = diagonal < 0.5 * PIN_FACTOR  # pinned coordinates (active bounds) do not move
        k = int(np.count_nonzero(free))
        root = np.sqrt(diagonal[free])

        def scatter(v):
            full = np.zeros(n)
            full[free] = np.ravel(v)
            return full

        stacked = LinearOperator((m + k, k), dtype=float,
                                 matvec=lambda v: np.concatenate([jacobian @ scatter(v), root * np.ravel(v)]),
                                 rmatvec=lambda u: (jacobian.T @ np.ravel(u)[:m])[free] + root * np.ravel(u)[m:])
        with self.timer.phase("solve"):
            result = lsmr(stacked, np.concatenate([-ev.residuals, np.zeros(k)]), **self.lsmr_options)
        step = scatter(result[0])
        self.total_iterations += int(result[2])
        solution = self._finite_or_failure(np.asarray(step, dtype=float), int(result[2]))
        solution.exact = False
        return solution

    def info(self) -> dict:
        return {"name": self.name, "columns": self.evaluator.n, "lsmr_iterations": self.total_iterations}
