"""The property every fuzz example must satisfy, for any input surface.

Either the solver returns a result whose reported cost equals the independent evaluation of the cost at
the point it returned (relative tolerance: the two sums are ordered differently), or the input is
refused with a clean error naming it: a ValueError (format errors are ValueErrors), an OSError, a
NonFiniteError (a residual that is not finite at the start, named) or an InsufficientMemoryError.
Never another exception type, never a hang, never a crash (the isolated worker turns those into
failures).
"""
from __future__ import annotations

import math

import pytest

from .budget import tried
from .isolation import WorkerRaised

#: classes (by name, anywhere in the raised type's MRO) that are clean refusals of bad input.
CLEAN_ERRORS = ("ValueError", "OSError", "NonFiniteError", "InsufficientMemoryError")


def assert_clean_refusal(raised: WorkerRaised, names) -> None:
    """``raised`` is one of CLEAN_ERRORS and its message contains one of ``names`` (what was given)."""
    assert any(c in raised.bases for c in CLEAN_ERRORS), (
        f"{raised.type_name} is not a clean refusal: {raised.message}\n{raised.traceback}")
    assert any(n in raised.message for n in names), f"the message names none of {names}: {raised.message}"


def solved_or_refused(worker, surface: str, names, function, *args):
    """Run ``function(*args)`` in the worker and check the property; returns the result dict or None
    when the input was refused."""
    try:
        result = worker.call(function, *args)
    except WorkerRaised as raised:
        tried(surface, "refused")
        assert_clean_refusal(raised, names)
        return None
    tried(surface, "solved")
    reported, independent = result["reported"], result["independent"]
    assert math.isfinite(reported), result
    assert reported == pytest.approx(independent, rel=1e-7, abs=1e-12), result
    return result


#: seconds allowed for the warm-up solve of a surface (numba loads or compiles its kernels then).
WARM_UP_S = 900


def solved_warm_up(worker, function, *args) -> dict:
    """Solve the unmutated valid input once, with a long time box (the worker loads or compiles the
    kernels it needs), and check the property on it: a valid input must be solved, not refused."""
    result = worker.call(function, *args, time_box_s=WARM_UP_S)
    assert result["reported"] == pytest.approx(result["independent"], rel=1e-7, abs=1e-12), result
    return result
