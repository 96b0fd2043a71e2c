"""Typed state accumulated by several steps of a chain, read at the end."""

from pydantic import BaseModel, Field
from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Trail(BaseModel):
    visited: list[str] = Field(default_factory=list)
    score: float = 0.0


class A(Event):
    pass


class B(Event):
    pass


class TrailFlow(Workflow):
    @step
    async def one(self, ctx: Context[Trail], ev: StartEvent) -> A:
        async with ctx.store.edit_state() as s:
            s.visited.append("one")
            s.score += 0.5
        return A()

    @step
    async def two(self, ctx: Context[Trail], ev: A) -> B:
        async with ctx.store.edit_state() as s:
            s.visited.append("two")
            s.score *= 3
        return B()

    @step
    async def three(self, ctx: Context[Trail], ev: B) -> StopEvent:
        s = await ctx.store.get_state()
        return StopEvent(result={"visited": s.visited, "score": s.score})


async def main(run):
    return await (await run(TrailFlow(timeout=10)))
