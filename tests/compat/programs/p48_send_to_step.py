"""ctx.send_event(ev, step=...) addresses one of two steps accepting the same event type."""

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Task(Event):
    payload: str


class RoutedFlow(Workflow):
    @step
    async def dispatch(self, ctx: Context, ev: StartEvent) -> Task | None:
        ctx.send_event(Task(payload=ev.payload), step=ev.target)
        return None

    @step
    async def fast_lane(self, ev: Task) -> StopEvent:
        return StopEvent(result=f"fast:{ev.payload}")

    @step
    async def slow_lane(self, ev: Task) -> StopEvent:
        return StopEvent(result=f"slow:{ev.payload}")


async def main(run):
    wf = RoutedFlow(timeout=10)
    return [
        await (await run(wf, payload="x", target="fast_lane")),
        await (await run(wf, payload="y", target="slow_lane")),
    ]
