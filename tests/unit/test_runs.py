"""Runs in-process on the memory log: the programming model end to end."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine import (
    Context,
    Event,
    MemoryLog,
    StartEvent,
    StepFailedError,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    WorkflowTimeoutError,
    fold,
    step,
)
from engine.runtime.commands import append_cancel
from engine.runtime.executor import Executor
from engine.runtime.inprocess import append_start
from engine.wire.codec import decode_record
from tests.integration.procs import eventually
from tests.workflows import Chain3, FanInOut, Parsed, Progress


async def test_three_step_chain_result_and_stream() -> None:
    handler = Chain3(timeout=10).run(text="a b c")
    streamed = [ev async for ev in handler.stream_events()]
    assert streamed == [Progress(stage="parsed"), Progress(stage="counted"), StopEvent(result={"n": 3, "source": "a b c"})]
    assert await handler == {"n": 3, "source": "a b c"}


async def test_stream_events_called_after_the_end_streams_every_event() -> None:
    """A handler only awaited follows its run's sys records; ``stream_events`` called later
    follows the out records on its own, from the run's first record."""
    log = MemoryLog()
    handler = Chain3(timeout=10, log=log).run(text="a b c")
    assert await handler == {"n": 3, "source": "a b c"}
    streamed = [ev async for ev in handler.stream_events()]
    assert streamed == [Progress(stage="parsed"), Progress(stage="counted"), StopEvent(result={"n": 3, "source": "a b c"})]
    again = [ev async for ev in handler.stream_events()]  # (a follow of its own each time)
    assert again == streamed


async def test_stream_events_called_mid_run_streams_the_events_before_it_too() -> None:
    from tests.workflows import Ticked, Ticker

    log = MemoryLog()
    handler = Ticker(timeout=10, log=log).run(n=3, interval=0.3)

    async def ticked() -> bool:  # mid-run: the first tick has been streamed, the run goes on
        return any(r.subject.endswith("out.Ticked") for r in await log.read("Ticker", handler.run_id))

    await eventually(ticked, timeout=5, what="the first tick streamed")
    assert not handler.done()
    streamed = [ev async for ev in handler.stream_events()]
    assert streamed == [Ticked(i=0), Ticked(i=1), Ticked(i=2), StopEvent(result=3)]


async def test_a_step_of_two_event_types_collects_both() -> None:
    from tests.workflows import TwoKinds

    assert await TwoKinds(timeout=10).run(n=3) == [0, 0, 1, 2, 10, 20]


async def test_fan_out_fan_in_collects_every_event_once() -> None:
    log = MemoryLog()
    wf = FanInOut(timeout=10, log=log)
    handler = wf.run(n=50, delay=0)
    assert await handler == [i * i for i in range(50)]
    records = [decode_record(r, FanInOut.events) for r in await log.read("FanInOut", handler.run_id)]
    st = fold(records)
    assert st.status == "completed"
    completions = [r for r in records if r.type == "StepCompleted"]
    keys = [(r.body.trigger, r.body.step) for r in completions]
    assert len(keys) == len(set(keys))
    consumed = [s for r in completions for s in r.body.consumed]
    assert sorted(consumed) == sorted(r.seq for r in records if r.type == "Squared")


async def test_many_concurrent_runs_share_one_workflow_instance() -> None:
    wf = FanInOut(timeout=20)
    results = await asyncio.gather(*(wf.run(n=i % 7 + 1, delay=0) for i in range(40)))
    assert results == [[k * k for k in range(i % 7 + 1)] for i in range(40)]


class Boom(Workflow):
    @step
    async def start(self, ev: StartEvent) -> StopEvent:
        raise ValueError("bad input: " + ev.why)


async def test_step_failure_raises_typed_error_naming_the_step() -> None:
    with pytest.raises(StepFailedError) as info:
        await Boom(timeout=5).run(why="no")
    err = info.value
    assert err.step == "start"
    assert err.error_type == "builtins.ValueError"
    assert err.error_message == "bad input: no"
    assert "Traceback" in err.traceback and "bad input" in err.traceback
    assert err.run_id


class Slow(Workflow):
    @step
    async def start(self, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(30)
        return StopEvent()


async def test_timeout_fails_the_run_in_the_log() -> None:
    log = MemoryLog()
    handler = Slow(timeout=0.2, log=log).run()
    with pytest.raises(WorkflowTimeoutError):
        await handler
    st = fold(decode_record(r) for r in await log.read("Slow", handler.run_id))
    assert st.status == "failed" and st.error is not None


class Sync(Workflow):
    @step
    def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ctx.write_event_to_stream(Progress(stage="thread"))
        return StopEvent(result=ev.x * 2)


async def test_plain_def_steps_run_in_a_thread() -> None:
    handler = Sync(timeout=5).run(x=21)
    assert [e async for e in handler.stream_events()][0] == Progress(stage="thread")
    assert await handler == 42


class Custom(StopEvent):
    summary: str


class CustomStop(Workflow):
    @step
    async def start(self, ev: StartEvent) -> Custom:
        return Custom(summary="ok", result=1)


async def test_stop_event_subclass_is_returned_whole() -> None:
    assert await CustomStop(timeout=5).run() == Custom(summary="ok", result=1)


class Ping(Event):
    pass


class Targeted(Workflow):
    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Ping | None:
        ctx.send_event(Ping(), step="right")
        return None

    @step
    async def wrong(self, ev: Ping) -> StopEvent:
        return StopEvent(result="wrong")

    @step
    async def right(self, ev: Ping) -> StopEvent:
        return StopEvent(result="right")


async def test_send_event_to_a_named_step() -> None:
    for _ in range(5):
        assert await Targeted(timeout=5).run() == "right"


class Unencodable(Workflow):
    @step
    async def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("obj", object())
        return StopEvent()


async def test_unencodable_state_fails_the_step_clearly() -> None:
    with pytest.raises(StepFailedError, match="start"):
        await Unencodable(timeout=5).run()


async def test_state_read_is_a_copy_until_set() -> None:
    class Mutate(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Parsed:
            await ctx.store.set("items", [1])
            items = await ctx.store.get("items")
            items.append(2)  # not set: must not leak into the run's state
            return Parsed(words=[])

        @step
        async def end(self, ctx: Context, ev: Parsed) -> StopEvent:
            return StopEvent(result=await ctx.store.get("items"))

    assert await Mutate(timeout=5).run() == [1]


class Swallows(Workflow):
    """Its step signals that it is running, then swallows the cancel and returns a result."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.started = asyncio.Event()
        self.swallowed = asyncio.Event()

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("before", 1)
        self.started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.swallowed.set()
        await ctx.store.set("after", 1)
        return StopEvent(result="should not commit")


async def test_cancel_stops_a_running_step_and_nothing_of_it_commits() -> None:
    """The executor is driven through its public calls (a worker calls ``cancel_run`` when it sees
    ``sys.RunCancelled``), so that ``stop`` tells when the cancelled step has finished."""
    log = MemoryLog()
    wf = Swallows()
    ex = Executor(wf, log)
    await ex.start()
    try:
        await append_start(log, "Swallows", "c1", StartEvent())
        await asyncio.wait_for(wf.started.wait(), 5)  # the step is running when the cancel comes
        await append_cancel(log, "Swallows", "c1", "by the test")
        assert ex.cancel_run("c1") == 1  # its one in-flight step
        await asyncio.wait_for(wf.swallowed.wait(), 2)  # the step saw asyncio.CancelledError
    finally:
        await ex.stop(grace=5)  # waits for the step, which swallowed the cancel and returns
    records = [decode_record(r) for r in await log.read("Swallows", "c1")]
    assert [r.type for r in records] == ["RunStarted", "StartEvent", "RunCancelled"]
    assert records[-1].body.reason == "by the test"
    st = fold(records)
    assert st.status == "cancelled" and st.result is None and st.state == {}
    assert ex.stats.cancelled == 1


async def test_cancel_run_through_the_handler_raises_workflow_cancelled() -> None:
    log = MemoryLog()
    wf = Swallows(timeout=10, log=log)
    handler = wf.run()
    await asyncio.wait_for(wf.started.wait(), 5)
    await handler.cancel_run("by the test")
    with pytest.raises(WorkflowCancelledError) as raised:
        await handler
    assert raised.value.run_id == handler.run_id
    records = [decode_record(r) for r in await log.read("Swallows", handler.run_id)]
    assert records[-1].type == "RunCancelled" and records[-1].body.reason == "by the test"
