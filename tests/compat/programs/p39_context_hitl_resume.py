"""Pause for human input, serialize the context, and resume from the dict in a new handler that
receives the response (the docs' durable human-in-the-loop pattern)."""

import json

from workflows import Context, Workflow, step
from workflows.events import HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent


class PauseFlow(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> InputRequiredEvent:
        await ctx.store.set("question", ev.question)
        return InputRequiredEvent(prefix=ev.question)

    @step
    async def answer(self, ctx: Context, ev: HumanResponseEvent) -> StopEvent:
        question = await ctx.store.get("question")
        return StopEvent(result=f"{question} -> {ev.response}")


async def main(run):
    wf = PauseFlow(timeout=10)
    handler = await run(wf, question="Proceed?")
    prompt = None
    async for ev in handler.stream_events():
        if isinstance(ev, InputRequiredEvent):
            prompt = ev.prefix
            break
    data = json.loads(json.dumps(handler.ctx.to_dict()))
    await handler.cancel_run()

    ctx = Context.from_dict(wf, data)
    resumed = await run(wf, ctx=ctx)
    resumed.ctx.send_event(HumanResponseEvent(response="yes"))
    return {"prompt": prompt, "result": await resumed}
