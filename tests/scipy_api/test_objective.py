"""The user's function as the LM loop's evaluator: evaluation counts, cache, clipping to bounds."""
import numpy as np
import pytest
import scipy.sparse as sp

from sparselm.lm.step_control import Box
from sparselm.scipy_api.evaluator import MatrixEvaluator
from sparselm.scipy_api.objective import POINT, VectorObjective
from sparselm.util.timing import PhaseTimer


def make(box=None):
    calls = []

    def fun(x):
        calls.append(x.copy())
        return np.array([x[0] - 1.0, 2.0 * (x[1] + 0.5)])

    timer = PhaseTimer()
    ev = MatrixEvaluator(2, 2, "linear", 1.0, None, timer)
    x0 = np.array([0.0, 0.0])
    objective = VectorObjective(fun, lambda x, f: ev.absorb(sp.csr_matrix(np.diag([1.0, 2.0]))), ev, x0, fun(x0),
                                timer, box=box)
    calls.clear()
    return objective, calls


def test_trial_residuals_are_reused_on_acceptance_and_counted():
    obj, calls = make()
    cost = obj.linearize({POINT: np.array([0.0, 0.0])})
    assert cost == 0.5 * (1.0 + 1.0) and calls == [] and obj.nfev == 1 and obj.njev == 1  # x0's residuals reused
    np.testing.assert_allclose(obj.gradient, [-1.0, 2.0])
    trial = {POINT: np.empty(2)}
    obj.apply_step({POINT: np.array([0.0, 0.0])}, np.array([1.0, -0.5]), trial)
    assert obj.cost_at(trial) == 0.0 and obj.nfev == 2
    obj.linearize(trial)
    assert len(calls) == 1 and obj.nfev == 2 and obj.njev == 2  # accepting costs no second evaluation
    np.testing.assert_allclose(obj.x, [1.0, -0.5])
    assert obj.model_cost_change(np.array([0.1, 0.0])) == pytest.approx(-0.005, rel=1e-12)


def test_trial_points_are_clipped_to_the_box_and_nonfinite_cost_is_nan():
    obj, _ = make(Box(np.array([-1.0, -1.0]), np.array([0.5, 1.0])))
    trial = {POINT: np.empty(2)}
    obj.apply_step({POINT: np.array([0.5, 0.0])}, np.array([1e-17, 0.2]), trial)
    assert trial[POINT][0] == 0.5
    obj.fun = lambda x: np.array([np.nan, 0.0])
    obj.apply_step({POINT: np.array([0.0, 0.0])}, np.array([0.1, 0.1]), trial)
    assert np.isnan(obj.cost_at(trial))
