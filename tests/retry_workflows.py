"""Workflows of the retry, error-routing, retry-from-failure and cancel tests, run in worker
processes (importable as ``tests.retry_workflows``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from engine import Event, StartEvent, StopEvent, Workflow, step
from engine.model.retry import (
    ConstantDelayRetryPolicy,
    ExponentialBackoffRetryPolicy,
    StepFailedEvent,
)
from engine.workflow import catch_error

BROKEN_ENV = "JETLOOM_TEST_BROKEN"  # Fixable.check fails while this is "1" in the worker

_calls: dict[str, int] = {}  # run id -> attempts seen by this process


class Flaky(Workflow):
    """Fails its first ``fail_times`` attempts (counted in the worker process), then succeeds;
    exponential backoff from 0.2 s, doubling, up to 5 attempts."""

    @step(
        retry_policy=ExponentialBackoffRetryPolicy(
            maximum_attempts=5, initial_delay=0.2, multiplier=2.0, jitter=0.05
        )
    )
    async def go(self, ev: StartEvent) -> StopEvent:
        n = _calls[ev.key] = _calls.get(ev.key, 0) + 1
        if n <= ev.fail_times:
            raise ConnectionError(f"attempt {n} failed")
        return StopEvent(result={"attempts": n})


class Guarded(Workflow):
    """``work`` always fails (two attempts 0.1 s apart); the error handler ends the run."""

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=2, delay=0.1))
    async def work(self, ev: StartEvent) -> StopEvent:
        raise ValueError(f"cannot work on {ev.what}")

    @catch_error
    async def recover(self, ev: StepFailedEvent) -> StopEvent:
        return StopEvent(
            result={
                "step": ev.step,
                "error_type": ev.error_type,
                "message": ev.message,
                "attempts": ev.attempts,
                "event": ev.event,
            }
        )


class Prepared(Event):
    text: str


class Fixable(Workflow):
    """``prepare`` then ``check``; ``check`` fails while the worker's environment says so."""

    @step
    async def prepare(self, ev: StartEvent) -> Prepared:
        return Prepared(text=ev.text.upper())

    @step
    async def check(self, ev: Prepared) -> StopEvent:
        if os.environ.get(BROKEN_ENV) == "1":
            raise RuntimeError("the check is broken in this build")
        return StopEvent(result=ev.text)


class Stubborn(Workflow):
    """Writes ``<dir>/started``, sleeps ``seconds``; on cancel writes ``<dir>/cancelled`` and
    swallows the cancel, returning a result the engine must not commit."""

    @step
    async def long(self, ev: StartEvent) -> StopEvent:
        folder = Path(ev.dir)
        (folder / "started").write_text("1")
        try:
            await asyncio.sleep(ev.seconds)
        except asyncio.CancelledError:
            (folder / "cancelled").write_text("1")
            return StopEvent(result="swallowed the cancel")
        return StopEvent(result="slept")
