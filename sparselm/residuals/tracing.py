"""Symbolic tracing of a residual function of one instance into sympy expressions.

The user's function is called once with :class:`TracedVector` arguments whose entries are
:class:`Traced` values: thin wrappers of sympy expressions that support Python arithmetic,
comparisons (giving conditions for :func:`sparselm.math.where`) and the functions of
:mod:`sparselm.math`. Everything that cannot be turned into one expression valid for every
instance fails here with a :class:`ResidualDefinitionError` that names the function, the source
line and the reason: a Python ``if``/``bool()``/``and``/``or`` on a traced value, a ``math`` or
numpy function applied to one, a traced value used as an index, a non-finite constant.
"""
from __future__ import annotations

import math
import numbers
import os
import traceback
from typing import Callable, List, Optional, Sequence, Tuple

import sympy

from sparselm.residuals.errors import ResidualDefinitionError, definition_site, describe

_HERE = os.path.dirname(os.path.abspath(__file__))
_PACKAGE = os.path.dirname(_HERE)


class TracingError(Exception):
    """Raised inside a traced function for an operation tracing cannot represent (reason only;
    :func:`trace` adds the function name and line)."""


_IF_HINT = ("a Python if/while/and/or/bool() on a traced value: the branch would be fixed for every "
            "instance; use sm.where(condition, a, b) (and &, |, ~ to combine conditions)")


def _symbolic(value):
    """A sympy expression for a Traced or a real number; anything else is a TracingError."""
    if isinstance(value, Traced):
        return value.expr
    if isinstance(value, bool):
        return sympy.true if value else sympy.false
    if isinstance(value, numbers.Integral):
        return sympy.Integer(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if not math.isfinite(v):
            raise TracingError(f"non-finite constant {v!r}")
        return sympy.Float(v)
    raise TracingError(f"unsupported operand of type {type(value).__name__} in a traced expression")


class Traced:
    """One traced scalar (or condition): a sympy expression behind Python operators."""

    __slots__ = ("expr",)
    __array_priority__ = 1000.0

    def __init__(self, expr):
        self.expr = expr

    # arithmetic
    def __add__(self, o): return Traced(self.expr + _symbolic(o))
    def __radd__(self, o): return Traced(_symbolic(o) + self.expr)
    def __sub__(self, o): return Traced(self.expr - _symbolic(o))
    def __rsub__(self, o): return Traced(_symbolic(o) - self.expr)
    def __mul__(self, o): return Traced(self.expr * _symbolic(o))
    def __rmul__(self, o): return Traced(_symbolic(o) * self.expr)
    def __truediv__(self, o): return Traced(self.expr / _symbolic(o))
    def __rtruediv__(self, o): return Traced(_symbolic(o) / self.expr)
    def __pow__(self, o): return Traced(self.expr ** _symbolic(o))
    def __rpow__(self, o): return Traced(_symbolic(o) ** self.expr)
    def __neg__(self): return Traced(-self.expr)
    def __pos__(self): return self
    def __abs__(self): return Traced(sympy.Abs(self.expr))

    # conditions
    def __lt__(self, o): return Traced(sympy.StrictLessThan(self.expr, _symbolic(o)))
    def __le__(self, o): return Traced(sympy.LessThan(self.expr, _symbolic(o)))
    def __gt__(self, o): return Traced(sympy.StrictGreaterThan(self.expr, _symbolic(o)))
    def __ge__(self, o): return Traced(sympy.GreaterThan(self.expr, _symbolic(o)))
    def __and__(self, o): return Traced(sympy.And(self.expr, _symbolic(o)))
    def __rand__(self, o): return Traced(sympy.And(_symbolic(o), self.expr))
    def __or__(self, o): return Traced(sympy.Or(self.expr, _symbolic(o)))
    def __ror__(self, o): return Traced(sympy.Or(_symbolic(o), self.expr))
    def __invert__(self): return Traced(sympy.Not(self.expr))

    def __eq__(self, o):
        raise TracingError("== on a traced value; compare with <, <=, >, >= inside sm.where")

    __ne__ = __eq__
    __hash__ = object.__hash__

    # what tracing cannot represent
    def __bool__(self):
        raise TracingError(_IF_HINT)

    def __float__(self):
        raise TracingError("a traced value was converted to float (a math or numpy function, or float()): "
                           "use the functions of sparselm.math (sm.sin, sm.sqrt, ...)")

    __int__ = __float__
    __complex__ = __float__

    def __index__(self):
        raise TracingError("a traced value was used as an index or a loop bound: indices and loop bounds "
                           "must be Python integers")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raise TracingError(f"numpy.{ufunc.__name__} on a traced value: use sparselm.math "
                           f"(sm.{ufunc.__name__} where it exists)")

    def __array__(self, *args, **kwargs):
        raise TracingError("a traced value was put into a numpy array: use Python lists/tuples in residual "
                           "functions")

    def __repr__(self):
        return f"Traced({self.expr})"

    def apply_math(self, name: str, *args):
        """The sparselm.math function ``name`` applied to ``args`` (this value among them)."""
        return Traced(_MATH[name](*(_symbolic(a) for a in args)))


def _where(cond, a, b):
    if cond in (sympy.true, sympy.false):
        return a if cond == sympy.true else b
    if not isinstance(cond, sympy.logic.boolalg.Boolean):
        raise TracingError("sm.where: the condition must be a comparison of traced values (x < y, ...)")
    return sympy.Piecewise((a, cond), (b, True))


#: sparselm.math name -> sympy constructor on expressions.
_MATH = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "asin": sympy.asin, "acos": sympy.acos,
    "atan": sympy.atan, "arctan": sympy.atan, "atan2": sympy.atan2, "arctan2": sympy.atan2,
    "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
    "exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt, "abs": sympy.Abs, "pow": lambda a, b: a ** b,
    "minimum": sympy.Min, "maximum": sympy.Max, "where": _where,
}

#: The names sparselm.math offers.
MATH_FUNCTIONS = tuple(sorted(_MATH))


class TracedVector(Sequence):
    """An indexable stand-in for one argument (a parameter block, the data row or a precomputed
    vector) during tracing: ``v[i]`` is a traced scalar, ``v[a:b]`` a list, ``len(v)`` its size."""

    def __init__(self, label: str, symbols: Sequence):
        self.label = label
        self.entries = [Traced(s) for s in symbols]

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.entries[i]
        if isinstance(i, Traced):
            Traced.__index__(i)
        try:
            return self.entries[i]
        except IndexError:
            raise TracingError(f"index {i} out of range for {self.label} (size {len(self.entries)})") from None
        except TypeError:
            raise TracingError(f"{self.label} must be indexed by a Python integer, got {type(i).__name__}") from None

    def __repr__(self):
        return f"TracedVector({self.label}, size {len(self)})"


def _where_in_user_code(exc: BaseException, func: Callable) -> str:
    """'file:line' of the innermost frame outside sparselm's tracing and sympy (else the def line)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = os.path.abspath(frame.filename)
        if path.startswith(_HERE) or path == os.path.join(_PACKAGE, "math.py") or f"{os.sep}sympy{os.sep}" in path:
            continue
        return f"{frame.filename}:{frame.lineno}"
    return definition_site(func)


def trace(func: Callable, arguments: Sequence, expected_size: Optional[int], what: str,
          keywords: Optional[dict] = None) -> List:
    """Call ``func(*arguments, **keywords)`` and return its results as sympy expressions.

    ``expected_size`` is the required number of results (None: any positive number). ``what`` names
    the results in messages ("residual", "precomputed"). Raises ResidualDefinitionError naming
    ``func``, the line and the reason for anything tracing cannot represent.
    """
    try:
        out = func(*arguments, **(keywords or {}))
    except (TracingError, TypeError, AttributeError, ValueError, ZeroDivisionError, IndexError) as exc:
        reason = str(exc)
        if isinstance(exc, TypeError) and "truth value" in reason:
            reason = _IF_HINT
        raise ResidualDefinitionError(f"{describe(func)}: at {_where_in_user_code(exc, func)}: {reason}") from None
    try:
        values = list(out)
    except (TypeError, TracingError):
        raise ResidualDefinitionError(f"{describe(func)}: must return a sequence of {expected_size or 'some'} {what} values, "
                                      f"got {type(out).__name__}") from None
    if expected_size is None and not values:
        raise ResidualDefinitionError(f"{describe(func)}: returned no {what} values")
    if expected_size is not None and len(values) != expected_size:
        raise ResidualDefinitionError(f"{describe(func)}: returned {len(values)} {what} values, expected {expected_size}")
    exprs = []
    for r, v in enumerate(values):
        try:
            e = _symbolic(v)
        except TracingError as exc:
            raise ResidualDefinitionError(f"{describe(func)}: {what} value {r}: {exc}") from None
        if isinstance(e, sympy.logic.boolalg.Boolean):
            raise ResidualDefinitionError(f"{describe(func)}: {what} value {r} is a condition, not a number")
        if e.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
            raise ResidualDefinitionError(f"{describe(func)}: {what} value {r} contains a non-finite constant "
                                          f"({e})")
        exprs.append(e)
    return exprs


def symbols(prefix: str, n: int) -> Tuple:
    """n real sympy symbols named prefix_0 .. prefix_{n-1} (valid Python identifiers)."""
    return tuple(sympy.Symbol(f"{prefix}_{i}", real=True) for i in range(n))
