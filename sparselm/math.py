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


def _function(name: str, numeric, doc: str):
    """The public function ``name``: traced on traced arguments, ``numeric`` otherwise."""
    def function(*args):
        return _dispatch(name, numeric, *args)
    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    return function


sin = _function("sin", np.sin, "sin(x): sine of x (radians).")
cos = _function("cos", np.cos, "cos(x): cosine of x (radians).")
tan = _function("tan", np.tan, "tan(x): tangent of x (radians).")
asin = _function("asin", np.arcsin, "asin(x): arc sine (radians).")
acos = _function("acos", np.arccos, "acos(x): arc cosine (radians).")
atan = arctan = _function("atan", np.arctan, "atan(x): arc tangent (radians).")
atan2 = arctan2 = _function("atan2", np.arctan2, "atan2(y, x): angle of the vector (x, y) in (-pi, pi] (radians).")
sinh = _function("sinh", np.sinh, "sinh(x): hyperbolic sine.")
cosh = _function("cosh", np.cosh, "cosh(x): hyperbolic cosine.")
tanh = _function("tanh", np.tanh, "tanh(x): hyperbolic tangent.")
exp = _function("exp", np.exp, "exp(x): e ** x.")
log = _function("log", np.log, "log(x): natural logarithm.")
sqrt = _function("sqrt", np.sqrt, "sqrt(x): square root (its derivative is infinite at 0: guard with where if 0 can "
                                  "occur).")
abs = _function("abs", np.abs, "abs(x): absolute value.")  # noqa: A001 - the name users expect
pow = _function("pow", np.power, "pow(x, y): x ** y.")  # noqa: A001
minimum = _function("minimum", np.minimum, "minimum(x, y): the smaller of x and y.")
maximum = _function("maximum", np.maximum, "maximum(x, y): the larger of x and y.")
where = _function("where", np.where, "where(cond, a, b): a where cond holds, else b (cond from <, <=, >, >= "
                                     "combined with &, |, ~).")
