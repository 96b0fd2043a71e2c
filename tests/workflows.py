"""Workflows the integration tests run in worker processes (importable as
``tests.workflows``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from engine import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)


class Parsed(Event):
    words: list[str]


class Counted(Event):
    n: int


class Progress(Event):
    stage: str


class Chain3(Workflow):
    """parse → count → finish, with state and stream output on the way."""

    @step(num_workers=2)
    async def parse(self, ctx: Context, ev: StartEvent) -> Parsed:
        await ctx.store.set("source", ev.text)
        ctx.write_event_to_stream(Progress(stage="parsed"))
        await asyncio.sleep(ev.get("delay", 0.0))
        return Parsed(words=ev.text.split())

    @step(num_workers=2)
    async def count(self, ctx: Context, ev: Parsed) -> Counted:
        ctx.write_event_to_stream(Progress(stage="counted"))
        return Counted(n=len(ev.words))

    @step(num_workers=2)
    async def finish(self, ctx: Context, ev: Counted) -> StopEvent:
        return StopEvent(result={"n": ev.n, "source": await ctx.store.get("source")})


class Chain3Renamed(Workflow):
    """Chain3 after a refactor (a later version deployed under the same workflow name): ``count``
    folded into ``parse``, ``Parsed`` gone. A run whose ``count`` step ran cannot be continued
    by it."""

    workflow_name = "Chain3"

    @step
    async def parse(self, ev: StartEvent) -> Counted:
        return Counted(n=len(ev.text.split()))

    @step
    async def finish(self, ev: Counted) -> StopEvent:
        return StopEvent(result={"n": ev.n})


class Item(Event):
    i: int
    delay: float = 0.0


class Squared(Event):
    i: int
    square: int


class FanInOut(Workflow):
    """split into n items, square each (taking ``delay`` seconds, default 0.05, two at a time per
    process), join them."""

    @step
    async def split(self, ctx: Context, ev: StartEvent) -> Item | None:
        await ctx.store.set("expected", ev.n)
        for i in range(ev.n):
            ctx.send_event(Item(i=i, delay=ev.get("delay", 0.05)))
        return None

    @step(num_workers=2)
    async def square(self, ctx: Context, ev: Item) -> Squared:
        await asyncio.sleep(ev.delay)
        return Squared(i=ev.i, square=ev.i * ev.i)

    @step(num_workers=4)
    async def join(self, ctx: Context, ev: Squared) -> StopEvent | None:
        got = ctx.collect_events(ev, [Squared] * await ctx.store.get("expected"))
        if got is None:
            return None
        return StopEvent(result=sorted(s.square for s in got))


class TickStart(StartEvent):
    n: int
    interval: float = 0.05


class Tick(Event):
    i: int
    n: int
    interval: float


class Ticked(Event):
    i: int


class Ticker(Workflow):
    """n ticks, one step each, ``interval`` seconds apart; each writes ``Ticked(i)`` to the stream.
    Its records are spread over time, for streaming tests."""

    @step
    async def begin(self, ev: TickStart) -> Tick:
        return Tick(i=0, n=ev.n, interval=ev.interval)

    @step
    async def tick(self, ctx: Context, ev: Tick) -> Tick | StopEvent:
        ctx.write_event_to_stream(Ticked(i=ev.i))
        await asyncio.sleep(ev.interval)
        if ev.i + 1 >= ev.n:
            return StopEvent(result=ev.n)
        return Tick(i=ev.i + 1, n=ev.n, interval=ev.interval)


class Approval(HumanResponseEvent):
    approved: bool
    by: str = ""


class Gate(Workflow):
    """Waits for an ``Approval`` sent from outside, then ends with it."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> None:
        await ctx.store.set("asked", True)

    @step
    async def decide(self, ev: Approval) -> StopEvent:
        return StopEvent(result={"approved": ev.approved, "by": ev.by})


class Question(InputRequiredEvent):
    who: str
    prompt: str


class Reply(HumanResponseEvent):
    who: str
    text: str


class Person(Event):
    who: str


class Answered(Event):
    who: str
    text: str


class Interview(Workflow):
    """Asks each of ``people`` a question at once (one durable wait each), then gathers."""

    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> Person | None:
        await ctx.store.set("n", len(ev.people))
        for who in ev.people:
            ctx.send_event(Person(who=who))
        return None

    @step(num_workers=4)
    async def ask(self, ctx: Context, ev: Person) -> Answered:
        reply = await ctx.wait_for_event(
            Reply,
            requirements={"who": ev.who},
            waiter_event=Question(who=ev.who, prompt=f"{ev.who}, your name?"),
            timeout=600,
        )
        return Answered(who=ev.who, text=reply.text)

    @step
    async def gather(self, ctx: Context, ev: Answered) -> StopEvent | None:
        got = ctx.collect_events(ev, [Answered] * await ctx.store.get("n"))
        if got is None:
            return None
        return StopEvent(result={a.who: a.text for a in got})


class Nap(Workflow):
    """Sleeps ``seconds`` durably, then ends with how long it really took (server clock)."""

    @step
    async def nap(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("slept", False)
        await ctx.sleep(ev.seconds)
        return StopEvent(result={"slept": ev.seconds})


class Half(Event):
    x: int
    marker: str


class SlowChild(Workflow):
    """Two steps; the second, the first time it runs, creates the file ``marker`` and then hangs
    (for a test to kill its worker mid-run); once the marker exists it returns ``2 * x``."""

    @step
    async def first(self, ev: StartEvent) -> Half:
        return Half(x=ev.x, marker=ev.marker)

    @step
    def second(self, ev: Half) -> StopEvent:
        marker = Path(ev.marker)
        if not marker.exists():
            marker.touch()
            time.sleep(600)
        return StopEvent(result={"x2": ev.x * 2})


class Delegate(Workflow):
    """Runs the workflow named ``child`` (served elsewhere) with start fields ``fields`` and ends
    with its result; its process does not import the child's code."""

    @step
    async def delegate(self, ctx: Context, ev: StartEvent) -> StopEvent:
        got = await ctx.run_workflow(ev.child, timeout=ev.get("timeout"), **ev.fields)
        return StopEvent(result={"child": got})


class Left(Event):
    value: int


class Right(Event):
    value: int


class TwoKinds(Workflow):
    """One step (``join``) accepting two event types, which reach it through two consumers."""

    @step
    async def split(self, ctx: Context, ev: StartEvent) -> Left | Right | None:
        for i in range(ev.get("n", 3)):
            ctx.send_event(Left(value=i))
            ctx.send_event(Right(value=10 * i))
        await ctx.store.set("n", ev.get("n", 3))

    @step
    async def join(self, ctx: Context, ev: Left | Right) -> StopEvent | None:
        n = await ctx.store.get("n")
        got = ctx.collect_events(ev, [Left] * n + [Right] * n)
        if got is None:
            return None
        return StopEvent(result=sorted(e.value for e in got))
