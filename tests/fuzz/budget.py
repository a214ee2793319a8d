"""The fuzz suite's fixed seed and example budget, and the count of examples tried per input surface.

Hypothesis runs derandomized (its examples follow from the test's source, so CI sees the same ones
every run) with no example database and a fixed ``max_examples`` per test; each test counts the
examples it ran with :func:`tried`, and ``tests/fuzz/conftest.py`` prints the counts in pytest's
terminal summary.
"""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from typing import Dict

from hypothesis import HealthCheck, settings

#: examples tried per surface, and how each ended: {surface: Counter(outcome -> count)}.
EXAMPLES: Dict[str, Counter] = defaultdict(Counter)


def tried(surface: str, outcome: str) -> None:
    """Count one example of ``surface`` that ended with ``outcome`` ('solved', 'refused', ...)."""
    EXAMPLES[surface][outcome] += 1


#: SPARSELM_FUZZ_SCALE=k multiplies every budget by k, for a deeper run by hand (CI uses 1).
SCALE = float(os.environ.get("SPARSELM_FUZZ_SCALE", "1"))


def budget(max_examples: int):
    """Hypothesis settings for one fuzz test: fixed seed, ``max_examples`` (times SCALE), no deadline
    (each example is time-boxed by the isolated worker instead)."""
    return settings(max_examples=max(1, int(max_examples * SCALE)), derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.filter_too_much, HealthCheck.data_too_large])
