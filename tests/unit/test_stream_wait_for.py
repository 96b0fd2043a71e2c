"""A stream read given up with ``asyncio.wait_for(anext(stream), t)`` (a caller polling with a
timeout): the cancelled read ends the stream, as an async generator cancelled mid-read does in
llama-index-workflows, and the run still finishes. The read used to fail with ``RuntimeError:
aclose(): asynchronous generator is already running`` when the stream followed the log on its own
(the pending read of the log was not cancelled before the log's iterator was closed)."""

from __future__ import annotations

import asyncio

import pytest

from engine import MemoryLog, StartEvent, StopEvent, Workflow, step

GATE: asyncio.Event | None = None


class SlowAnswer(Workflow):
    @step
    async def think(self, ev: StartEvent) -> StopEvent:
        assert GATE is not None
        await GATE.wait()
        return StopEvent(result="answer")


async def test_a_read_given_up_by_wait_for_ends_the_stream_and_the_run_finishes() -> None:
    global GATE
    GATE = asyncio.Event()
    handler = SlowAnswer(timeout=10, log=MemoryLog()).run()
    await handler.wait_ready()  # (the handler's follow has begun: the stream follows the log itself)
    stream = handler.stream_events()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(stream), timeout=0.05)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    GATE.set()
    assert await handler == "answer"
