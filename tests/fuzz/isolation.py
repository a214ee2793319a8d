"""Run fuzz examples in a separate worker process, each one time-boxed.

A crash inside compiled code (numba, CHOLMOD, LAPACK) would kill pytest itself, and a hang would
stall CI; so the examples that reach the solver run in one long-lived worker process (spawned, so
that it starts clean) that the test talks to through a pipe. ``IsolatedWorker.call(function, *args)``
returns what the function returned, re-raises an exception it raised as :class:`WorkerRaised` (type
name and message, since the property is about which type and what it says), and raises
:class:`WorkerCrashed` or :class:`WorkerHung` when the process died or did not answer within the
time box; in both cases the worker is replaced for the next example.
"""
from __future__ import annotations

import multiprocessing
import traceback


class WorkerRaised(Exception):
    """The function raised in the worker: ``type_name`` (e.g. 'ValueError'), ``bases`` (the names of
    its classes, most derived first), ``message`` and the worker's ``traceback`` text."""

    def __init__(self, type_name: str, bases: tuple, message: str, trace: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name, self.bases, self.message, self.traceback = type_name, bases, message, trace


class WorkerCrashed(AssertionError):
    """The worker process died (a segfault or abort in compiled code) while running an example."""


class WorkerHung(AssertionError):
    """The worker did not answer within the time box."""


def _serve(connection) -> None:
    while True:
        try:
            request = connection.recv()
        except EOFError:
            return
        function, args = request
        try:
            reply = ("ok", function(*args))
        except BaseException as exc:  # KeyboardInterrupt too: it is an answer, not the end of the worker
            reply = ("raised", type(exc).__name__, tuple(c.__name__ for c in type(exc).__mro__), str(exc),
                     traceback.format_exc())
        connection.send(reply)


class IsolatedWorker:
    """One spawned worker process; ``time_box_s`` per call (``first_call_s`` for the first, which
    loads numba's cached kernels)."""

    def __init__(self, time_box_s: float = 60.0, first_call_s: float = 300.0):
        self.time_box_s, self.first_call_s = time_box_s, first_call_s
        self._context = multiprocessing.get_context("spawn")
        self._process = None
        self._connection = None
        self._warm = False

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(child,), daemon=True)
        self._process.start()
        child.close()
        self._connection, self._warm = parent, False

    def call(self, function, *args, time_box_s=None):
        """function(*args) in the worker (function and args must be picklable), within ``time_box_s``
        (default: the worker's, longer for the first call of a fresh worker)."""
        if self._process is None or not self._process.is_alive():
            self._start()
        limit = time_box_s or (self.time_box_s if self._warm else self.first_call_s)
        self._connection.send((function, args))
        try:
            answered = self._connection.poll(limit)
            reply = self._connection.recv() if answered else None
        except (EOFError, ConnectionError):
            self._process.join(5)
            code = self._process.exitcode
            self._process = None
            raise WorkerCrashed(f"the worker died running {function.__name__}{args!r:.300}: exit code {code}")
        if reply is None:
            self.close()
            raise WorkerHung(f"{function.__name__}{args!r:.300} did not finish within {limit:g} s")
        self._warm = True
        if reply[0] == "ok":
            return reply[1]
        raise WorkerRaised(*reply[1:])

    def close(self) -> None:
        """Stop the worker (killed if it does not stop by itself)."""
        if self._process is not None:
            self._connection.close()
            self._process.join(2)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
            self._process = None
