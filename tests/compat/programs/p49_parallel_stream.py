"""Streaming from concurrent workers: every event arrives, in an order that depends on timing
(in the reference as in jetloom), so the program sorts what it saw; the StopEvent is last."""

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Item(Event):
    n: int


class ItemDone(Event):
    n: int


class Tick(Event):
    n: int


class ParallelStreamFlow(Workflow):
    @step
    async def split(self, ctx: Context, ev: StartEvent) -> Item | None:
        for n in range(ev.count):
            ctx.send_event(Item(n=n))
        return None

    @step(num_workers=3)
    async def work(self, ctx: Context, ev: Item) -> ItemDone:
        ctx.write_event_to_stream(Tick(n=ev.n))
        return ItemDone(n=ev.n)

    @step
    async def join(self, ctx: Context, ev: ItemDone) -> StopEvent | None:
        if ctx.collect_events(ev, [ItemDone] * 6) is None:
            return None
        return StopEvent(result="joined")


async def main(run):
    handler = await run(ParallelStreamFlow(timeout=10), count=6)
    ticks, last = [], None
    async for ev in handler.stream_events():
        if isinstance(ev, Tick):
            ticks.append(ev.n)
        last = type(ev).__name__
    return {"ticks": sorted(ticks), "last": last, "result": await handler}
