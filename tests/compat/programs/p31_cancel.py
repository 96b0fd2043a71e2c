"""Cancelling a run: handler.cancel_run() while a step waits; awaiting the handler then raises
WorkflowCancelledByUser."""

import asyncio

from workflows import Context, Workflow, step
from workflows.errors import WorkflowCancelledByUser
from workflows.events import Event, StartEvent, StopEvent


class Started(Event):
    pass


class CancelFlow(Workflow):
    @step
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ctx.write_event_to_stream(Started())
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
