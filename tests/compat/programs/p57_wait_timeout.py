"""ctx.wait_for_event with a timeout that expires: the step fails and so does the run."""

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Approval(Event):
    ok: bool


class WaitTimeoutFlow(Workflow):
    @step
    async def wait(self, ctx: Context, ev: StartEvent) -> StopEvent:
        reply = await ctx.wait_for_event(Approval, timeout=0.5)
        return StopEvent(result=reply.ok)


async def main(run):
    handler = await run(WaitTimeoutFlow(timeout=10))
    try:
        await handler
    except Exception as exc:  # the reference's error for an expired wait
        return {"failed": True, "timeout": "timeout" in f"{type(exc).__name__} {exc}".lower()}
    return {"failed": False}
