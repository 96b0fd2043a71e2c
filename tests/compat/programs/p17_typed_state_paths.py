"""Typed state read and written by field name (and dotted paths) through ctx.store.get/set."""

from pydantic import BaseModel
from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent


class Inner(BaseModel):
    level: int = 1


class PathState(BaseModel):
    count: int = 0
    inner: Inner = Inner()


class StatePathFlow(Workflow):
    @step
    async def work(self, ctx: Context[PathState], ev: StartEvent) -> StopEvent:
        await ctx.store.set("count", 5)
        await ctx.store.set("inner.level", 7)
        return StopEvent(
            result=[await ctx.store.get("count"), await ctx.store.get("inner.level")]
        )


async def main(run):
    return await (await run(StatePathFlow(timeout=10)))
