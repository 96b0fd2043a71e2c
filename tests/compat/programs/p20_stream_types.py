"""The stream of a run, every event's type name in order (the StopEvent ends it)."""

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Chunk(Event):
    text: str


class Mid(Event):
    pass


class StreamTypesFlow(Workflow):
    @step
    async def first(self, ctx: Context, ev: StartEvent) -> Mid:
        ctx.write_event_to_stream(Chunk(text="a"))
        return Mid()

    @step
    async def second(self, ctx: Context, ev: Mid) -> StopEvent:
        ctx.write_event_to_stream(Chunk(text="b"))
        ctx.write_event_to_stream(Chunk(text="c"))
        return StopEvent(result="abc")


async def main(run):
    handler = await run(StreamTypesFlow(timeout=10))
    names = [type(ev).__name__ async for ev in handler.stream_events()]
    return {"types": names, "result": await handler}
