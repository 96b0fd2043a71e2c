"""Human input as the docs write it: a step returns InputRequiredEvent(prefix=...), the caller
answers through handler.ctx.send_event(HumanResponseEvent(response=...))."""

from workflows import Workflow, step
from workflows.events import HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent


class HumanFlow(Workflow):
    @step
    async def ask(self, ev: StartEvent) -> InputRequiredEvent:
        return InputRequiredEvent(prefix="What's your name? ")

    @step
    async def answer(self, ev: HumanResponseEvent) -> StopEvent:
        return StopEvent(result=f"Hello, {ev.response}")


async def main(run):
    handler = await run(HumanFlow(timeout=10))
    prompts = []
    async for ev in handler.stream_events():
        if isinstance(ev, InputRequiredEvent):
            prompts.append(ev.prefix)
            handler.ctx.send_event(HumanResponseEvent(response="Ada"))
    return {"prompts": prompts, "result": await handler}
