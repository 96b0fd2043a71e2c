"""Events are dict-like and open: undeclared keyword fields are kept and readable as attributes
and with ``ev[...]`` (the extras only), on custom events and on StopEvent."""

from workflows import Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Tagged(Event):
    name: str


class ExtrasFlow(Workflow):
    @step
    async def tag(self, ev: StartEvent) -> Tagged:
        return Tagged(name=ev.name, source="cli", weight=3)

    @step
    async def read(self, ev: Tagged) -> StopEvent:
        return StopEvent(
            result={"name": ev.name, "source": ev["source"], "weight": ev.get("weight")},
            reason="complete",
        )


async def main(run):
    handler = await run(ExtrasFlow(timeout=10), name="n1")
    reasons = []
    async for ev in handler.stream_events():
        if isinstance(ev, StopEvent):
            reasons.append(ev.reason)
    return {"result": await handler, "reasons": reasons}
