"""Durable waits on the in-process runtime (MemoryLog) and the pure matching of events to waits."""

from __future__ import annotations

import asyncio

from engine import (
    Context,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)
from engine.model.records import Record, StepSuspended
from engine.runtime.waits import match_waits
from engine.state.fold import RunState


class Ask(InputRequiredEvent):
    prompt: str


class Answer(HumanResponseEvent):
    who: str
    text: str


class TwoQuestions(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("asked", True)
        await ctx.sleep(0.05)
        first = await ctx.wait_for_event(Answer, {"who": "a"}, waiter_event=Ask(prompt="a?"))
        second = await ctx.wait_for_event(Answer, {"who": "b"}, waiter_event=Ask(prompt="b?"))
        return StopEvent(result=[first.text, second.text])


async def test_in_process_sleep_then_two_waits_in_order() -> None:
    handler = TwoQuestions(timeout=10).run()
    asked: list[str] = []
    async for ev in handler.stream_events():
        if isinstance(ev, Ask):
            asked.append(ev.prompt)
            if ev.prompt == "a?":
                await handler.send_event(Answer(who="b", text="too early for b"))
                await handler.send_event(Answer(who="a", text="A"))
            else:
                await handler.send_event(Answer(who="b", text="B"))
    # each waiter_event is written once; b's early answer came before b's wait and still counts
    # (the first matching event after the trigger), so the later one is left over
    assert asked == ["a?", "b?"]
    assert await handler == ["A", "too early for b"]


def _rec(seq: int, kind: str, type_: str, body: object) -> Record:
    return Record(seq, kind, type_, "W", "r", 0, body)


def test_each_event_resolves_at_most_one_wait_in_recorded_order() -> None:
    state = RunState("W", "r")
    records = [
        _rec(1, "evt", "StartEvent", {}),
        _rec(
            2,
            "sys",
            "StepSuspended",
            StepSuspended(step="s", trigger=1, wait="w1", kind="event", event_type="Answer"),
        ),
        _rec(
            3,
            "sys",
            "StepSuspended",
            StepSuspended(
                step="t",
                trigger=1,
                wait="w1",
                kind="event",
                event_type="Answer",
                requirements={"who": "x"},
            ),
        ),
        _rec(4, "evt", "Answer", {"who": "y", "text": "1"}),
        _rec(5, "evt", "Answer", {"who": "x", "text": "2"}),
        _rec(6, "evt", "Answer", {"who": "x", "text": "3"}),
    ]
    for r in records:
        state.apply(r)
    resumes = match_waits(state, records)
    assert [(r.step, r.event.seq) for r in resumes if r.event] == [("s", 4), ("t", 5)]
    # a timer wait is never matched to an event
    state.apply(
        _rec(7, "sys", "StepSuspended", StepSuspended(step="u", trigger=1, wait="w1", kind="timer"))
    )
    assert [r.step for r in match_waits(state, records)] == ["s", "t"]


async def test_wait_timeout_raises_in_the_step() -> None:
    class Impatient(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            try:
                await ctx.wait_for_event(Answer, timeout=0.05)
            except TimeoutError:
                return StopEvent(result="gave up")
            return StopEvent(result="answered")

    assert await asyncio.wait_for(Impatient(timeout=10).run(), 10) == "gave up"
