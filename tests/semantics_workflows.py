"""Workflows of the run-semantics tests (run timeouts, typed events, dead letters, crash
recovery), run in process and in worker processes (importable as ``tests.semantics_workflows``)."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from engine import Context, Event, HumanResponseEvent, StartEvent, StopEvent, Workflow, step


class Held(Workflow):
    """One step that writes ``<dir>/started-<pid>-<execution>``, waits until ``<dir>/go``
    exists, then makes its side effect (``<dir>/effect-<pid>-<execution>``) and ends the run. A
    cancel (``CancelledError``) writes ``<dir>/cancelled-<pid>-<execution>`` and propagates."""

    @step
    async def hold(self, ev: StartEvent) -> StopEvent:
        folder, me = Path(ev.dir), f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        (folder / f"started-{me}").write_text("1")
        try:
            while not (folder / "go").exists():
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            (folder / f"cancelled-{me}").write_text("1")
            raise
        (folder / f"effect-{me}").write_text("1")
        return StopEvent(result="done")


class Tallied(Event):
    count: int


class TallyReport(Event):
    total: int


class Mistyped(Workflow):
    """``make`` emits a ``Tallied`` whose ``count`` is then set to ``ev.value`` (``value`` from the
    start event, so a string makes a wrong-typed field: events are mutable pydantic models, which
    validate on construction but not on assignment) by returning it, by ``ctx.send_event``
    (``how="send"``), or writes such a ``TallyReport`` to the stream (``how="stream"``)."""

    @step
    async def make(self, ctx: Context, ev: StartEvent) -> Tallied | None:
        tallied = Tallied(count=0)
        tallied.count = ev.value
        if ev.how == "send":
            ctx.send_event(tallied)
            return None
        if ev.how == "stream":
            report = TallyReport(total=0)
            report.total = ev.value
            ctx.write_event_to_stream(report)
            return Tallied(count=1)
        return tallied

    @step
    async def use(self, ev: Tallied) -> StopEvent:
        return StopEvent(result=ev.count)


class Nudge(HumanResponseEvent):
    n: int


class Doorbell(Workflow):
    """``first`` emits nothing, so the run waits for a ``Nudge`` from outside; ``second`` ends the
    run with its ``n``."""

    @step
    async def first(self, ev: StartEvent) -> Nudge | None:
        return None

    @step
    async def second(self, ev: Nudge) -> StopEvent:
        return StopEvent(result=ev.n)
