"""Cancelling a run: handler.cancel_run() while a step waits; awaiting the handler then raises
WorkflowCancelledByUser. (The caller learns that the slow step started from an event streamed by
the step before it: p55 shows why not from the slow step itself.)"""

import asyncio

from workflows import Context, Workflow, step
from workflows.errors import WorkflowCancelledByUser
from workflows.events import Event, StartEvent, StopEvent


class Started(Event):
    pass


class Go(Event):
    pass


class CancelFlow(Workflow):
    @step
    async def prepare(self, ctx: Context, ev: StartEvent) -> Go:
        ctx.write_event_to_stream(Started())
        return Go()

    @step
    async def work(self, ctx: Context, ev: Go) -> StopEvent:
        await asyncio.sleep(60)
        return StopEvent(result="not cancelled")


async def main(run):
    handler = await run(CancelFlow(timeout=90))
    async for ev in handler.stream_events():
        if isinstance(ev, Started):
            break
    await handler.cancel_run()
    try:
        await handler
    except WorkflowCancelledByUser:
        return "WorkflowCancelledByUser"
    return "finished"
