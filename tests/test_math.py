"""sparselm.math on plain numbers and arrays: the numpy functions of the same names."""
from __future__ import annotations

import numpy as np

from sparselm import math as sm


def test_numeric_values_match_numpy():
    x = np.array([0.3, -1.2, 2.5])
    y = np.array([1.5, 0.2, -0.7])
    for f, g in [(sm.sin, np.sin), (sm.cos, np.cos), (sm.tan, np.tan), (sm.exp, np.exp), (sm.tanh, np.tanh),
                 (sm.atan, np.arctan), (sm.arctan, np.arctan), (sm.abs, np.abs), (sm.sinh, np.sinh)]:
        np.testing.assert_array_equal(f(x), g(x))
    np.testing.assert_array_equal(sm.sqrt(np.abs(x)), np.sqrt(np.abs(x)))
    np.testing.assert_array_equal(sm.log(np.abs(x)), np.log(np.abs(x)))
    np.testing.assert_array_equal(sm.atan2(y, x), np.arctan2(y, x))
    np.testing.assert_array_equal(sm.pow(np.abs(x), y), np.abs(x) ** y)
    np.testing.assert_array_equal(sm.minimum(x, y), np.minimum(x, y))
    np.testing.assert_array_equal(sm.maximum(x, y), np.maximum(x, y))
    np.testing.assert_array_equal(sm.where(x > 0, x, y), np.where(x > 0, x, y))
    assert sm.sin(0.5) == np.sin(0.5) and sm.pi == np.pi
