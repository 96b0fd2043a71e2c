"""The stream of a run whose step fails: what the caller reads before the failure surfaces."""

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Note(Event):
    text: str


class Next(Event):
    pass


class FailingStreamFlow(Workflow):
    @step
    async def first(self, ctx: Context, ev: StartEvent) -> Next:
        ctx.write_event_to_stream(Note(text="before"))
        return Next()

    @step
    async def second(self, ev: Next) -> StopEvent:
        raise RuntimeError("second step broke")


async def main(run):
    handler = await run(FailingStreamFlow(timeout=10))
    seen = []
    try:
        async for ev in handler.stream_events():
            seen.append(type(ev).__name__)
        seen.append("stream ended")
    except Exception:  # the run's failure, raised by the stream
        seen.append("stream raised")
    try:
        await handler
        seen.append("handler returned")
    except Exception as exc:
        seen.append("handler raised" if "second step broke" in str(exc) else f"other: {exc}")
    return seen
