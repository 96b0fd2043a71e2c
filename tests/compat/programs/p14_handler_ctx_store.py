"""After a run, its state is read through handler.ctx.store."""

from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent


class HandlerStoreFlow(Workflow):
    @step
    async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
        for word in ev.text.split():
            await ctx.store.set(word, len(word))
        await ctx.store.set("total", len(ev.text.split()))
        return StopEvent(result="counted")


async def main(run):
    handler = await run(HandlerStoreFlow(timeout=10), text="to be or not")
    result = await handler
    return [result, await handler.ctx.store.get("total"), await handler.ctx.store.get("not")]
