"""Streaming progress events with ctx.write_event_to_stream, read with handler.stream_events()."""

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Progress(Event):
    msg: str
    pct: int


class StreamFlow(Workflow):
    @step
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        for pct in (25, 50, 100):
            ctx.write_event_to_stream(Progress(msg=f"{ev.job} at {pct}%", pct=pct))
        return StopEvent(result="done")


async def main(run):
    handler = await run(StreamFlow(timeout=10), job="index")
    seen = []
    async for ev in handler.stream_events():
        if isinstance(ev, Progress):
            seen.append([ev.msg, ev.pct])
        elif isinstance(ev, StopEvent):
            seen.append(["stop", ev.result])
    return {"stream": seen, "result": await handler}
