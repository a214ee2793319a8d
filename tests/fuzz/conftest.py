"""Fixtures of the fuzz suite: one isolated worker for the whole session, and the per-surface count of
examples tried, printed at the end of the run."""
from __future__ import annotations

import pytest

from .budget import EXAMPLES
from .isolation import IsolatedWorker


@pytest.fixture(scope="session")
def worker():
    """The worker process the examples that reach the solver run in (see isolation.py)."""
    isolated = IsolatedWorker()
    yield isolated
    isolated.close()


def pytest_terminal_summary(terminalreporter):
    if EXAMPLES:
        terminalreporter.write_sep("-", "fuzz examples tried per surface")
        for surface, outcomes in sorted(EXAMPLES.items()):
            detail = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()))
            terminalreporter.write_line(f"{surface:<34} {sum(outcomes.values()):>5} tried ({detail})")
