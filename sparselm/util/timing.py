"""Wall-clock time and call counts per solver phase."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict


class PhaseTimer:
    """Accumulates seconds and calls per named phase (residual, jacobian, assembly, ...)."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}
        self.calls: Dict[str, int] = {}

    @contextmanager
    def phase(self, name: str):
        """Time the enclosed block under ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float, calls: int = 1) -> None:
        """Record ``seconds`` spent in ``name``."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + calls

    def table(self) -> Dict[str, dict]:
        """{phase: {"seconds": s, "calls": n}} in insertion order."""
        return {k: {"seconds": self.seconds[k], "calls": self.calls[k]} for k in self.seconds}
