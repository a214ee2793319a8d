"""Argument checks of least_squares: scipy's order, messages and normalisations."""
import warnings

import numpy as np
import pytest
from scipy.optimize import Bounds

from sparselm.scipy_api import arguments as a


def test_method_and_tr_solver():
    with pytest.raises(ValueError, match="dogbox.*method='trf'"):
        a.check_method("dogbox", None, None)
    with pytest.raises(ValueError, match="`method` must be"):
        a.check_method("newton", None, None)
    with pytest.raises(ValueError, match="`tr_solver` must be"):
        a.check_method("trf", "best", None)
    a.check_method("trf", "lsmr", {"atol": 1e-3})
    a.check_method("lm", "exact", None)


def test_loss():
    with pytest.raises(ValueError, match="only 'linear'"):
        a.check_loss("huber", "lm")
    with pytest.raises(ValueError, match="`loss` must be one of"):
        a.check_loss("hinge", "trf")
    a.check_loss(lambda z: z, "trf")


def test_bounds_normalised_and_checked():
    x0 = np.array([0.5, 0.5])
    lb, ub = a.prepare_bounds((0.0, [1.0, 2.0]), x0, "trf")
    np.testing.assert_array_equal(lb, [0.0, 0.0])
    np.testing.assert_array_equal(ub, [1.0, 2.0])
    lb, ub = a.prepare_bounds(Bounds(lb=[-1.0, -1.0]), x0, "trf")
    assert np.all(np.isinf(ub)) and lb.shape == (2,)
    a.prepare_bounds((-np.inf, np.inf), x0, "lm")
    for bounds, method, words in [((0.0, 1.0), "lm", "doesn't support bounds"), ((1.0, 2.0, 3.0), "trf", "2 elements"),
                                  (([0.0], [1.0, 2.0]), "trf", "Inconsistent shapes"), ((1.0, 1.0), "trf", "strictly"),
                                  ((0.6, 1.0), "trf", "outside"), (3.0, "trf", "2 elements")]:
        with pytest.raises(ValueError, match=words):
            a.prepare_bounds(bounds, x0, method)


def test_tolerances():
    assert a.check_tolerances(None, 1e-8, None, "trf") == (0.0, 1e-8, 0.0)
    with pytest.raises(ValueError, match="At least one"):
        a.check_tolerances(None, None, None, "trf")
    with pytest.raises(ValueError, match="for method 'lm'"):
        a.check_tolerances(None, 1e-8, 1e-8, "lm")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        a.check_tolerances(1e-20, 1e-8, 1e-8, "trf")
    assert any("machine epsilon" in str(w.message) for w in seen)
    with pytest.raises(ValueError, match="non-negative"):
        a.check_tolerances(-1.0, 1e-8, 1e-8, "trf")


def test_x_scale_and_damping():
    assert a.check_x_scale(None, 3, "lm") == "jac"
    np.testing.assert_array_equal(a.check_x_scale(None, 3, "trf"), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(a.check_x_scale(2.0, 2, "trf"), [2.0, 2.0])
    for bad in ("auto", -1.0, 1.0 + 2.0j, [1.0, 2.0]):
        with pytest.raises(ValueError):
            a.check_x_scale(bad, 3, "trf")
    assert a.resolve_damping(None, None, 2) == ("marquardt", None)
    damping, diagonal = a.resolve_damping(None, "levenberg", 2)
    assert damping == "levenberg" and np.all(diagonal == 1.0)
    damping, diagonal = a.resolve_damping([1.0, 10.0], None, 2)
    np.testing.assert_allclose(diagonal, [1.0, 0.01])
    with pytest.raises(ValueError, match="contradicts"):
        a.resolve_damping("jac", "levenberg", 2)
    with pytest.raises(ValueError, match="contradicts"):
        a.resolve_damping([1.0, 2.0], "marquardt", 2)
