"""How ``handler.stream_events()`` ends for a run that does not complete, as llama-index-workflows:
a last ``WorkflowFailedEvent`` / ``WorkflowTimedOutEvent`` / ``WorkflowCancelledEvent``, and no
exception from the stream; awaiting the handler raises the run's error (a deliberate change: the
stream used to raise it)."""

from __future__ import annotations

from typing import Any

import pytest

from engine import (
    Context,
    Event,
    HumanResponseEvent,
    MemoryLog,
    StartEvent,
    StepFailedError,
    StopEvent,
    Workflow,
    WorkflowCancelledByUser,
    WorkflowCancelledEvent,
    WorkflowFailedEvent,
    WorkflowTimedOutEvent,
    WorkflowTimeoutError,
    step,
)
from engine.runtime.handler import WorkflowHandler


class Note(Event):
    text: str


class Next(Event):
    pass


class Breaks(Workflow):
    @step
    async def first(self, ctx: Context, ev: StartEvent) -> Next:
        ctx.write_event_to_stream(Note(text="before"))
        return Next()

    @step
    async def second(self, ev: Next) -> StopEvent:
        raise RuntimeError("second step broke")


class Waits(Workflow):
    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> Next:
        ctx.write_event_to_stream(Note(text="begun"))
        return Next()

    @step
    async def hang(self, ctx: Context, ev: Next) -> StopEvent:
        await ctx.wait_for_event(HumanResponseEvent)
        return StopEvent(result="never")


async def _read(handler: WorkflowHandler, *, cancel: bool = False) -> list[Any]:
    seen = []
    async for ev in handler.stream_events():  # (must not raise)
        seen.append(ev)
        if cancel and isinstance(ev, Note):
            await handler.cancel_run()
    return seen


async def test_a_failed_run_streams_a_workflow_failed_event_last() -> None:
    handler = Breaks(timeout=10, log=MemoryLog()).run()
    seen = await _read(handler)
    assert [type(e) for e in seen] == [Note, WorkflowFailedEvent]
    failed = seen[-1]
    assert failed.step_name == "second" and failed.attempts == 1
    assert type(failed.exception) is RuntimeError and str(failed.exception) == "second step broke"
    assert failed.elapsed_seconds is not None and failed.elapsed_seconds >= 0
    with pytest.raises(StepFailedError, match="second step broke"):
        await handler


async def test_a_stream_begun_after_the_run_ended_ends_the_same_way() -> None:
    handler = Breaks(timeout=10, log=MemoryLog()).run()
    with pytest.raises(StepFailedError):
        await handler
    assert [type(e) for e in await _read(handler)] == [Note, WorkflowFailedEvent]


async def test_a_timed_out_run_streams_a_workflow_timed_out_event_last() -> None:
    handler = Waits(timeout=0.3, log=MemoryLog()).run()
    seen = await _read(handler)
    assert [type(e) for e in seen] == [Note, WorkflowTimedOutEvent]
    assert seen[-1].timeout == 0.3 and seen[-1].active_steps == ["hang"]
    with pytest.raises(WorkflowTimeoutError):
        await handler


async def test_a_cancelled_run_streams_a_workflow_cancelled_event_last() -> None:
    handler = Waits(timeout=10, log=MemoryLog()).run()
    seen = await _read(handler, cancel=True)
    assert [type(e) for e in seen] == [Note, WorkflowCancelledEvent]
    with pytest.raises(WorkflowCancelledByUser):
        await handler
