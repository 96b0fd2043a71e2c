"""Context serialization: a finished run's ctx.to_dict() goes through JSON, Context.from_dict()
rebuilds it, and a new run with ctx= continues its store."""

import json

from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent


class CounterFlow(Workflow):
    @step
    async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
        n = await ctx.store.get("n", default=0)
        await ctx.store.set("n", n + ev.by)
        return StopEvent(result=n + ev.by)


async def main(run):
    wf = CounterFlow(timeout=10)
    handler = await run(wf, by=2)
    first = await handler
    data = json.loads(json.dumps(handler.ctx.to_dict()))
    ctx = Context.from_dict(wf, data)
    second = await (await run(wf, ctx=ctx, by=5))
    return [first, second]
