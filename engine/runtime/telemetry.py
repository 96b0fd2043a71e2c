"""The executor's observer hooks: what a metrics exporter needs beyond ``ExecutorStats``.

``ExecutorStats`` counts what an executor did (read at scrape time, no cost on the hot path);
what needs a per-step label or a measured time (durations, latencies, steps in flight) goes
through an ``ExecutorObserver`` the executor calls when one is given (``Executor(observer=...)``).
With none, the executor makes no call at all. The engine has no metrics library: the worker
process's implementation lives in ``services.metrics`` (prometheus-client).

Calls come from the executor's event loop, never concurrently; an implementation must return
quickly and must not raise (an exception would count as an internal error of the delivery).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import msgspec

from engine.model.records import OutMessage, StepFailed
from engine.state.ending import ENDING_STATUS, ends_run
from engine.wire.headers import H_TYPE

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "SUSPENDED",
    "ExecutorObserver",
    "commit_ends_run",
]

# How a step execution ended (``ExecutorObserver.step_ended``).
COMPLETED: Final = "completed"
"""It returned, and its commit was built."""
FAILED: Final = "failed"
"""It raised (or its events did not encode); a retry, the error handler or the run's end follows."""
SUSPENDED: Final = "suspended"
"""It stopped to wait (``wait_for_event``, ``sleep``, a child run); it runs again when resumed."""
CANCELLED: Final = "cancelled"
"""It was cancelled: its run ended meanwhile, or the process is stopping."""


class ExecutorObserver(Protocol):
    """What an executor reports besides its counters. Times are seconds (``time.perf_counter``
    differences, or the server's clock for a run's latency)."""

    def step_started(self, workflow: str, step: str) -> None:
        """A step execution starts (a trigger was admitted and its step is about to be called)."""

    def step_ended(self, workflow: str, step: str, outcome: str, seconds: float) -> None:
        """The execution ``step_started`` announced ended with ``outcome`` (``COMPLETED``,
        ``FAILED``, ``SUSPENDED`` or ``CANCELLED``) after ``seconds``: the call of the step and
        the building of its commit."""

    def step_retrying(self, workflow: str, step: str) -> None:
        """A failed attempt was recorded as ``StepRetrying``: another attempt is scheduled."""

    def committed(self, workflow: str, step: str, seconds: float) -> None:
        """A step's commit was acknowledged by the log ``seconds`` after the step returned."""

    def run_ended(self, workflow: str, status: str, seconds: float | None) -> None:
        """This process appended the record ending a run in ``status`` (``completed`` or
        ``failed``); ``seconds``: from the run's ``RunStarted`` to now (``None`` when the start
        time is unknown)."""


def commit_ends_run(messages: Sequence[OutMessage]) -> str | None:
    """The status a step's commit ends its run in, from its messages' types: ``completed`` for
    a ``RunCompleted``, ``failed`` for a ``RunFailed`` or a ``StepFailed`` no error handler took
    over (``engine.state.ending.ends_run``), else ``None``.

    Only a ``StepFailed`` body is decoded (a failure's commit), so the common commit costs a
    header lookup per message.
    """
    for m in messages:
        type_name = m.headers.get(H_TYPE, "")
        status = ENDING_STATUS.get(type_name)
        if status is None:
            continue
        handled_by = None
        if type_name == "StepFailed":
            try:
                handled_by = msgspec.json.decode(m.data, type=StepFailed).handled_by
            except msgspec.DecodeError:
                pass
        if ends_run(type_name, handled_by):
            return status
    return None
