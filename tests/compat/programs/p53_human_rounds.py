"""Several rounds of human input in one run: a step asks again until the answer is valid."""

from workflows import Context, Workflow, step
from workflows.events import HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent


class RoundsFlow(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> InputRequiredEvent:
        return InputRequiredEvent(prefix="Pick a number from 1 to 3: ")

    @step
    async def check(self, ctx: Context, ev: HumanResponseEvent) -> InputRequiredEvent | StopEvent:
        tries = await ctx.store.get("tries", default=0) + 1
        await ctx.store.set("tries", tries)
        if ev.response not in {"1", "2", "3"}:
            return InputRequiredEvent(prefix=f"{ev.response!r} is not valid, again: ")
        return StopEvent(result={"picked": int(ev.response), "tries": tries})


async def main(run):
    handler = await run(RoundsFlow(timeout=10))
    answers = iter(["seven", "0", "2"])
    prompts = []
    async for ev in handler.stream_events():
        if isinstance(ev, InputRequiredEvent):
            prompts.append(ev.prefix)
            handler.ctx.send_event(HumanResponseEvent(response=next(answers)))
    return {"prompts": prompts, "result": await handler}
