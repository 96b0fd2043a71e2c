"""An event streamed by a step that is still running reaches the caller at once in the reference.

jetloom differs on purpose (docs/guide.md, "Streaming"): a step's streamed events are committed
to the log with the step's completion, so a reader sees them when the step ends, never events of
an attempt that later failed or was retried.
"""

import asyncio

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent

REASON = (
    "streamed events are committed with the step's completion (docs/guide.md, Streaming), "
    "not published while the step still runs"
)
DIFFERENCES = {"inprocess": REASON, "distributed": REASON}


class Working(Event):
    pass


class LiveStreamFlow(Workflow):
    @step
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ctx.write_event_to_stream(Working())
        await asyncio.sleep(ev.seconds)
        return StopEvent(result="done")


async def first_event(handler) -> str:
    async for ev in handler.stream_events():
        return type(ev).__name__
    return "no event"


async def main(run):
    handler = await run(LiveStreamFlow(timeout=30), seconds=10)
    reader = asyncio.create_task(first_event(handler))
    done, _ = await asyncio.wait({reader}, timeout=2)
    seen = reader.result() if done else "nothing while the step ran"
    await handler.cancel_run()
    if not done:
        await asyncio.gather(reader, return_exceptions=True)  # the stream ends with the run
    return seen
