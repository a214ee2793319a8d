"""The error raised for residual functions that cannot become residual types, and how it names them."""
from __future__ import annotations

from typing import Callable


class ResidualDefinitionError(ValueError):
    """A residual function cannot be turned into a residual type; the message names the function,
    its source line and the reason."""


def definition_site(func: Callable) -> str:
    """'file:line' of a function's ``def``."""
    code = getattr(func, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else "<unknown>"


def describe(func: Callable) -> str:
    """'residual function NAME (file:line)', the prefix of every definition error."""
    return f"residual function {getattr(func, '__qualname__', func)!r} ({definition_site(func)})"
