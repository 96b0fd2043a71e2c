"""ctx.store: set and get across steps, with a default for a missing key."""

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Next(Event):
    pass


class StoreFlow(Workflow):
    @step
    async def first(self, ctx: Context, ev: StartEvent) -> Next:
        await ctx.store.set("user", {"name": ev.name, "visits": 1})
        await ctx.store.set("tags", ["a"])
        return Next()

    @step
    async def second(self, ctx: Context, ev: Next) -> StopEvent:
        user = await ctx.store.get("user")
        missing = await ctx.store.get("nope", default="default")
        return StopEvent(result={"user": user, "tags": await ctx.store.get("tags"), "missing": missing})


async def main(run):
    return await (await run(StoreFlow(timeout=10), name="ada"))
