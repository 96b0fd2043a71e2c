"""The stream of a run that times out and of a run that is cancelled: what the caller reads, and
what awaiting the handler raises."""

import asyncio

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Begun(Event):
    pass


class Go(Event):
    pass


class EndingsFlow(Workflow):
    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> Go:
        ctx.write_event_to_stream(Begun())
        return Go()

    @step
    async def hang(self, ev: Go) -> StopEvent:
        await asyncio.sleep(60)
        return StopEvent(result="never")


async def read(handler, cancel: bool) -> list[str]:
    seen = []
    try:
        async for ev in handler.stream_events():
            seen.append(type(ev).__name__)
            if cancel and isinstance(ev, Begun):
                await handler.cancel_run()
        seen.append("stream ended")
    except Exception as exc:  # the run's end, raised by the stream
        seen.append(f"stream raised {type(exc).__name__}")
    try:
        await handler
        seen.append("handler returned")
    except Exception as exc:
        seen.append(f"handler raised {type(exc).__name__}")
    return seen


async def main(run):
    return {
        "timeout": await read(await run(EndingsFlow(timeout=1)), cancel=False),
        "cancel": await read(await run(EndingsFlow(timeout=30)), cancel=True),
    }
