"""The workflows every system under test runs, written once per system with the same trivial steps.

jetloom's versions live here (the worker processes import ``benchmarks.workflows:BenchChain`` and
``benchmarks.workflows:BenchFan``); the hand-written nats-py floor is ``benchmarks.limit`` and the
llama-index-workflows peer is ``benchmarks.peer``. All three do the same work:

- **chain**: ``parse`` splits ``text`` into words → ``count`` counts them → ``finish`` returns the
  count. 3 step transitions per run; the result is ``len(CHAIN_TEXT.split())``.
- **hold** (scenario (r) only): one step that marks its start in a file and waits for a file
  before it ends: the step a SIGKILLed worker was running.
- **fan**: ``split`` fans out ``n`` items → ``square`` squares each → ``join`` fans the ``n``
  squares in and returns their sum. ``1 + 2n`` step transitions per run; the result is
  ``sum(i * i for i in range(n))``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from engine import Context, Event, StartEvent, StopEvent, Workflow, step

__all__ = [
    "CHAIN_RESULT",
    "CHAIN_TEXT",
    "CHAIN_TRANSITIONS",
    "STEP_CONCURRENCY",
    "BenchChain",
    "BenchCounted",
    "BenchFan",
    "BenchHold",
    "BenchItem",
    "BenchParsed",
    "BenchSquared",
    "BenchTick",
    "fan_result",
    "fan_transitions",
]

#: The start event's text for the chain, and the result every system must return for it.
CHAIN_TEXT = "the quick brown fox jumps over the lazy dog"
CHAIN_RESULT = len(CHAIN_TEXT.split())
#: Step executions per chain run.
CHAIN_TRANSITIONS = 3
#: Triggers one process handles at once per step, for every system (jetloom's ``num_workers``,
#: the peer's ``num_workers``, the limit's pull window). Large enough for 100 runs in flight.
STEP_CONCURRENCY = 128


def fan_result(n: int) -> int:
    """The fan workflow's result for ``n`` items."""
    return sum(i * i for i in range(n))


def fan_transitions(n: int) -> int:
    """Step executions of one fan run of ``n`` items: split, n squares, n joins."""
    return 1 + 2 * n


class BenchParsed(Event):
    words: list[str]


class BenchCounted(Event):
    n: int


class BenchChain(Workflow):
    """parse → count → finish; no state, no stream output (the same work as the baselines)."""

    @step(num_workers=STEP_CONCURRENCY)
    async def parse(self, ev: StartEvent) -> BenchParsed:
        return BenchParsed(words=ev.text.split())

    @step(num_workers=STEP_CONCURRENCY)
    async def count(self, ev: BenchParsed) -> BenchCounted:
        return BenchCounted(n=len(ev.words))

    @step(num_workers=STEP_CONCURRENCY)
    async def finish(self, ev: BenchCounted) -> StopEvent:
        return StopEvent(result=ev.n)


class BenchItem(Event):
    i: int


class BenchSquared(Event):
    i: int
    square: int


class BenchFan(Workflow):
    """split into ``n`` items → square each → join all ``n`` (``collect_events``)."""

    @step
    async def split(self, ctx: Context, ev: StartEvent) -> BenchItem | None:
        await ctx.store.set("expected", ev.n)
        for i in range(ev.n):
            ctx.send_event(BenchItem(i=i))
        return None

    @step(num_workers=STEP_CONCURRENCY)
    async def square(self, ev: BenchItem) -> BenchSquared:
        return BenchSquared(i=ev.i, square=ev.i * ev.i)

    @step(num_workers=STEP_CONCURRENCY)
    async def join(self, ctx: Context, ev: BenchSquared) -> StopEvent | None:
        got = ctx.collect_events(ev, [BenchSquared] * await ctx.store.get("expected"))
        if got is None:
            return None
        return StopEvent(result=sum(s.square for s in got))


class BenchTick(Event):
    """The event of the synthetic runs that scenario (d) rebuilds."""

    i: int


class BenchHold(Workflow):
    """One step that writes ``<dir>/started-<pid>-<execution>`` and waits until ``<dir>/go``
    exists (scenario (r): which process runs it, and when it starts again after a SIGKILL)."""

    @step
    async def hold(self, ev: StartEvent) -> StopEvent:
        folder = Path(ev.dir)
        (folder / f"started-{os.getpid()}-{uuid.uuid4().hex[:8]}").write_text("1")
        while not (folder / "go").exists():
            await asyncio.sleep(0.01)
        return StopEvent(result="done")
