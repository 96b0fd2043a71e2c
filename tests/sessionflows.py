"""A workflow whose state carries over between the runs of a session."""

from __future__ import annotations

from engine import Context, StartEvent, StopEvent, Workflow, step


class AddStart(StartEvent):
    add: int


class Accumulate(Workflow):
    """Adds ``add`` to the state's ``total`` and records it in ``history``; ends with the total."""

    @step
    async def add(self, ctx: Context, ev: AddStart) -> StopEvent:
        total = await ctx.store.get("total", 0) + ev.add
        await ctx.store.set("total", total)
        await ctx.store.set("history", [*await ctx.store.get("history", []), ev.add])
        return StopEvent(result=total)
