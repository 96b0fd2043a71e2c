"""Context(workflow) built by the caller and passed to several runs: the store carries over (the
docs' chat-memory pattern)."""

from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent


class ChatFlow(Workflow):
    @step
    async def chat(self, ctx: Context, ev: StartEvent) -> StopEvent:
        history = await ctx.store.get("history", default=[])
        history.append(ev.message)
        await ctx.store.set("history", history)
        return StopEvent(result=len(history))


async def main(run):
    wf = ChatFlow(timeout=10)
    ctx = Context(wf)
    counts = []
    for message in ("hi", "how are you", "bye"):
        handler = await run(wf, ctx=ctx, message=message)
        counts.append(await handler)
    return {"counts": counts, "history": await ctx.store.get("history")}
