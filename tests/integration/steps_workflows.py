"""Workflows for tests/integration/test_resources_workers.py, loaded by worker processes: a
resource-using workflow completed by a free-function step, one asking for human input by returning
an ``InputRequiredEvent``, and one whose graph is invalid."""

from __future__ import annotations

import itertools
import os
from typing import Annotated

from engine import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    Resource,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)

_calls = itertools.count(1)


def process_tag() -> str:
    """Cached: made once per worker process (``pid:1``); a second making would say ``pid:2``."""
    return f"{os.getpid()}:{next(_calls)}"


def call_tag() -> str:
    """Uncached: made for every step call."""
    return f"{os.getpid()}:call{next(_calls)}"


class Job(StartEvent):
    n: int


class Part(Event):
    i: int


class Labeled(Event):
    i: int
    process: str
    call: str


class Tagged(Workflow):
    """``split`` fans a job out; ``label`` (a free function, added below) and ``join`` are steps
    with resources."""

    @step
    async def split(self, ctx: Context, ev: Job) -> Part | None:
        for i in range(ev.n):
            ctx.send_event(Part(i=i))
        return None

    @step
    async def join(
        self, ctx: Context, ev: Labeled, tag: Annotated[str, Resource(process_tag)]
    ) -> StopEvent | None:
        got = ctx.collect_events(ev, [Labeled] * 8)
        if got is None:
            return None
        return StopEvent(result={"parts": [[e.i, e.process, e.call] for e in got], "joined_by": tag})


@step(workflow=Tagged, num_workers=8)
async def label(
    ev: Part,
    process: Annotated[str, Resource(process_tag)],
    call: Annotated[str, Resource(call_tag, cache=False)],
) -> Labeled:
    return Labeled(i=ev.i, process=process, call=call)


class Unused(Event):
    pass


class Dangling(Workflow):
    """Its graph is invalid (``Unused`` is produced, never accepted): a worker refuses it."""

    @step
    async def go(self, ev: StartEvent) -> StopEvent | Unused:
        return StopEvent()


class AskName(InputRequiredEvent):
    prompt: str


class NameGiven(HumanResponseEvent):
    name: str


class Asker(Workflow):
    """Asks by returning its request (no step accepts it: it goes to the output stream)."""

    @step
    async def ask(self, ev: StartEvent) -> AskName:
        return AskName(prompt="name?")

    @step
    async def greet(self, ev: NameGiven) -> StopEvent:
        return StopEvent(result=f"hello {ev.name}")
