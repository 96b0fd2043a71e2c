"""ctx.store with dotted paths into nested dicts."""

from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent


class DottedStoreFlow(Workflow):
    @step
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("profile", {"name": "ada", "langs": {}})
        await ctx.store.set("profile.langs.python", 3)
        await ctx.store.set("profile.name", "Ada")
        return StopEvent(
            result={
                "name": await ctx.store.get("profile.name"),
                "python": await ctx.store.get("profile.langs.python"),
                "whole": await ctx.store.get("profile"),
                "missing": await ctx.store.get("profile.age", default=None),
            }
        )


async def main(run):
    return await (await run(DottedStoreFlow(timeout=10)))
