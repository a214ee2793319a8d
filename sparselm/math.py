"""Math functions for residual functions (``from sparselm import math as sm``).

Inside a function decorated with :func:`sparselm.residual` the arguments are traced symbolically,
and Python's ``math`` module or numpy cannot be applied to them: use these instead. Called on
ordinary numbers or numpy arrays they evaluate numerically (numpy semantics), so the same residual
function can also be run by hand for testing.

Angles are in radians. ``where(cond, a, b)`` is ``a`` where ``cond`` holds, else ``b``; build
``cond`` with ``<, <=, >, >=`` and combine conditions with ``&``, ``|`` and ``~`` (Python's
``if``, ``and``, ``or`` cannot be traced). Derivatives of ``where``, ``abs``, ``minimum`` and
``maximum`` are those of the branch taken (one-sided at the switch).
"""
from __future__ import annotations

import numpy as np

__all__ = ["sin", "cos", "tan", "asin", "acos", "atan", "arctan", "atan2", "arctan2", "sinh", "cosh", "tanh",
           "exp", "log", "sqrt", "abs", "pow", "minimum", "maximum", "where", "pi"]

#: pi, as a float (a constant is exact enough for tracing and for numeric use).
pi = float(np.pi)


def _dispatch(name: str, numeric, *args):
    """The traced version of ``name`` if any argument is traced (it has ``apply_math``), else ``numeric``."""
    for a in args:
        apply = getattr(a, "apply_math", None)
        if apply is not None:
            return apply(name, *args)
    return numeric(*args)


def sin(x):
    """Sine of x (radians)."""
    return _dispatch("sin", np.sin, x)


def cos(x):
    """Cosine of x (radians)."""
    return _dispatch("cos", np.cos, x)


def tan(x):
    """Tangent of x (radians)."""
    return _dispatch("tan", np.tan, x)


def asin(x):
    """Arc sine (radians)."""
    return _dispatch("asin", np.arcsin, x)


def acos(x):
    """Arc cosine (radians)."""
    return _dispatch("acos", np.arccos, x)


def atan(x):
    """Arc tangent (radians)."""
    return _dispatch("atan", np.arctan, x)


arctan = atan


def atan2(y, x):
    """Angle of the vector (x, y) in (-pi, pi] (radians)."""
    return _dispatch("atan2", np.arctan2, y, x)


arctan2 = atan2


def sinh(x):
    """Hyperbolic sine."""
    return _dispatch("sinh", np.sinh, x)


def cosh(x):
    """Hyperbolic cosine."""
    return _dispatch("cosh", np.cosh, x)


def tanh(x):
    """Hyperbolic tangent."""
    return _dispatch("tanh", np.tanh, x)


def exp(x):
    """e ** x."""
    return _dispatch("exp", np.exp, x)


def log(x):
    """Natural logarithm."""
    return _dispatch("log", np.log, x)


def sqrt(x):
    """Square root (its derivative is infinite at 0: guard with where if 0 can occur)."""
    return _dispatch("sqrt", np.sqrt, x)


def abs(x):  # noqa: A001 - the name users expect next to the other sm functions
    """Absolute value."""
    return _dispatch("abs", np.abs, x)


def pow(x, y):  # noqa: A001
    """x ** y."""
    return _dispatch("pow", np.power, x, y)


def minimum(x, y):
    """The smaller of x and y."""
    return _dispatch("minimum", np.minimum, x, y)


def maximum(x, y):
    """The larger of x and y."""
    return _dispatch("maximum", np.maximum, x, y)


def where(cond, a, b):
    """a where cond holds, else b (cond from <, <=, >, >= combined with &, |, ~)."""
    return _dispatch("where", np.where, cond, a, b)
