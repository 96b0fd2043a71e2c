"""A loop: a step sends an event back to itself until a counter in the store is done."""

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class LoopEvent(Event):
    n: int


class LoopFlow(Workflow):
    @step
    async def begin(self, ev: StartEvent) -> LoopEvent:
        return LoopEvent(n=0)

    @step
    async def spin(self, ctx: Context, ev: LoopEvent) -> LoopEvent | StopEvent:
        seen = await ctx.store.get("seen", default=[])
        seen.append(ev.n)
        await ctx.store.set("seen", seen)
        if ev.n >= 4:
            return StopEvent(result=seen)
        return LoopEvent(n=ev.n + 1)


async def main(run):
    return await (await run(LoopFlow(timeout=10)))
