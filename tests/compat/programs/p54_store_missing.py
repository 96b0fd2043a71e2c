"""ctx.store.get of a missing key with no default raises; with a default it returns it."""

from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent


class MissingKeyFlow(Workflow):
    @step
    async def read(self, ctx: Context, ev: StartEvent) -> StopEvent:
        out = {"default": await ctx.store.get("absent", default=0)}
        try:
            await ctx.store.get("absent")
            out["raised"] = None
        except Exception as exc:  # the reference's error type for a missing path
            out["raised"] = type(exc).__name__
        return StopEvent(result=out)


async def main(run):
    return await (await run(MissingKeyFlow(timeout=10)))
