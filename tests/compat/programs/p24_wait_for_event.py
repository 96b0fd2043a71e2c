"""ctx.wait_for_event inside a step: the waiter event is streamed, the step resumes with the
matching response (requirements filter on fields)."""

from workflows import Context, Workflow, step
from workflows.events import HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent


class WaitFlow(Workflow):
    @step
    async def confirm(self, ctx: Context, ev: StartEvent) -> StopEvent:
        reply = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_id="confirm",
            waiter_event=InputRequiredEvent(prefix=f"Delete {ev.path}?"),
            requirements={"user": "admin"},
        )
        return StopEvent(result=f"{ev.path}: {reply.response} by {reply.user}")


async def main(run):
    handler = await run(WaitFlow(timeout=10), path="/tmp/x")
    prompts = []
    async for ev in handler.stream_events():
        if isinstance(ev, InputRequiredEvent):
            prompts.append(ev.prefix)
            handler.ctx.send_event(HumanResponseEvent(response="yes", user="admin"))
    return {"prompts": prompts, "result": await handler}
