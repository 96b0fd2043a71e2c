"""The executor's commit protocol: a trigger handled twice leaves one completion in the log."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from engine import Context, Event, MemoryLog, StartEvent, StopEvent, Workflow, step
from engine.model.records import RawRecord, StepCompleted
from engine.runtime.executor import Executor
from engine.runtime.inprocess import append_start
from engine.wire.codec import decode_record


class Next(Event):
    pass


class Gate:
    """Holds the ``first`` step of every workflow instance it is given to until ``open`` is set;
    ``both`` is set once two executions are inside the step. One per test (in its event loop)."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.both = asyncio.Event()
        self.entered = 0


class Gated(Workflow):
    gate: Gate

    @step
    async def first(self, ctx: Context, ev: StartEvent) -> Next:
        gate = self.gate
        gate.entered += 1
        if gate.entered == 2:
            gate.both.set()
        await ctx.store.set("hits", gate.entered)
        await gate.open.wait()
        return Next()

    @step
    async def second(self, ev: Next) -> StopEvent:
        return StopEvent()


def gated(gate: Gate) -> Gated:
    wf = Gated()
    wf.gate = gate
    return wf


class FakeDelivery:
    """A delivery whose settlement is recorded (as if the ack were lost on the way)."""

    def __init__(self, record: RawRecord, attempt: int) -> None:
        self.record, self.attempt, self.settled = record, attempt, []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nak(self, delay: timedelta | None = None) -> None:
        self.settled.append("nak")

    async def term(self) -> None:
        self.settled.append("term")

    async def in_progress(self) -> None:
        pass


async def completions(log: MemoryLog, run_id: str) -> list[StepCompleted]:
    return [
        r.body
        for r in (decode_record(x) for x in await log.read("Gated", run_id))
        if isinstance(r.body, StepCompleted)
    ]


async def test_redelivery_after_a_lost_ack_is_skipped() -> None:
    gate = Gate()
    gate.open.set()
    log = MemoryLog()
    await append_start(log, "Gated", "r1", StartEvent())
    start = (await log.read("Gated", "r1"))[1]
    ex = Executor(gated(gate), log)
    spec = Gated.steps["first"]
    d1 = FakeDelivery(start, 1)
    await ex._process(spec, d1)  # (no public way to hand an executor one chosen delivery)
    d2 = FakeDelivery(start, 2)  # the ack of d1 never reached the log
    await ex._process(spec, d2)
    assert d1.settled == ["ack"] and d2.settled == ["ack"]
    assert gate.entered == 1 and ex.stats.skipped == 1
    assert [c.step for c in await completions(log, "r1")] == ["first"]


async def test_two_processes_racing_on_one_trigger_commit_once() -> None:
    gate = Gate()
    log = MemoryLog()
    await append_start(log, "Gated", "r2", StartEvent())
    start = (await log.read("Gated", "r2"))[1]
    a, b = Executor(gated(gate), log, worker_id="a"), Executor(gated(gate), log, worker_id="b")
    spec = Gated.steps["first"]
    deliveries = [FakeDelivery(start, 1), FakeDelivery(start, 1)]
    tasks = [asyncio.create_task(ex._process(spec, d)) for ex, d in zip((a, b), deliveries, strict=True)]
    try:
        await asyncio.wait_for(gate.both.wait(), 5)  # both are inside the step before either commits
        gate.open.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
    finally:
        for t in tasks:
            t.cancel()
    done = await completions(log, "r2")
    assert len(done) == 1
    assert a.stats.duplicates + b.stats.duplicates == 1
    assert [d.settled for d in deliveries] == [["ack"], ["ack"]]
    assert len([r for r in await log.read("Gated", "r2") if r.subject.endswith("evt.Next")]) == 1
