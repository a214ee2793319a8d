"""Termination tests of the LM loop: Ceres' and scipy's, fired at the points the Minimizer asks."""
import math

import pytest

from sparselm.lm.options import SolverOptions
from sparselm.lm.termination import TERMINATION_MESSAGES, CeresTermination, ScipyTermination


def test_ceres_tests():
    t = CeresTermination(SolverOptions(max_iterations=3, function_tolerance=1e-6, gradient_tolerance=1e-10,
                                       parameter_tolerance=1e-8))
    assert t.at_start(1e-11).termination == "convergence" and t.at_start(1.0) is None
    assert t.before_iteration(3, 0.0).termination == "no_convergence" and t.before_iteration(2, 0.0) is None
    assert t.before_judging(1e-9, 1.0).termination == "convergence" and t.before_judging(1e-7, 1.0) is None
    assert t.judge(10.0, 1e-6, 0.5, 1.0, 1.0, True) is True  # acceptance untouched
    stop = t.after_trial(True, 1.0)
    assert stop.termination == "convergence" and "Function tolerance" in stop.message
    t.judge(10.0, 1.0, 0.5, 1.0, 1.0, True)
    assert t.after_trial(False, 1e-12) is None and "Gradient" in t.after_trial(True, 1e-12).message
    assert not t.callbacks_first


def test_scipy_statuses():
    nfev = [1]
    t = ScipyTermination(ftol=1e-8, xtol=1e-8, gtol=1e-8, max_nfev=5, evaluations=lambda: nfev[0])
    assert t.at_start(1.0) is None and t.before_iteration(0, 0.0) is None
    # ftol: dF < ftol F with ratio > 0.25; the step is kept if it decreased the cost at all
    assert t.judge(1.0, 1e-9, 0.9, 1.0, 1.0, False) is True
    assert t.after_trial(True, 1.0).message == TERMINATION_MESSAGES[2] and t.status == 2
    t = ScipyTermination(1e-8, 1e-8, 1e-8, 5, lambda: nfev[0])
    assert t.judge(1.0, -1e-3, -0.1, 1e-12, 1.0, False) is False  # xtol, an increase: not kept
    assert t.after_trial(False, 1.0) is not None and t.status == 3
    t = ScipyTermination(1e-8, 1e-8, 1e-8, 5, lambda: nfev[0])
    assert t.judge(1.0, 1e-9, 0.9, 1e-12, 1.0, True) and t.after_trial(True, 1.0) and t.status == 4
    t = ScipyTermination(1e-8, 1e-8, 1e-8, 5, lambda: nfev[0])
    assert t.judge(1.0, math.nan, math.nan, 1.0, 1.0, False) is False and t.after_trial(False, 1.0) is None
    t.judge(1.0, 0.5, 0.9, 1.0, 1.0, True)
    assert t.after_trial(True, 1e-9) and t.status == 1
    nfev[0] = 5
    t = ScipyTermination(1e-8, 1e-8, 1e-8, 5, lambda: nfev[0])
    stop = t.before_iteration(7, 0.0)
    assert stop.termination == "no_convergence" and t.status == 0
    t = ScipyTermination(1e-8, 1e-8, 1e-8, 5, lambda: 1)
    assert t.radius_exhausted().termination == "no_convergence" and t.status == -1
    assert t.callbacks_first


@pytest.mark.parametrize("status", [1, 2, 3, 4, 0, -2])
def test_messages_are_scipys(status):
    scipy_messages = pytest.importorskip("scipy.optimize._lsq.least_squares").TERMINATION_MESSAGES
    assert TERMINATION_MESSAGES[status] == scipy_messages[status]
