"""Optional fields and defaults on events."""

from typing import Optional

from workflows import Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Lookup(Event):
    key: str
    found: Optional[str] = None  # noqa: UP045  (written as the docs write it)
    score: float | None = None
    retries: int = 0


class OptionalFlow(Workflow):
    @step
    async def look(self, ev: StartEvent) -> Lookup:
        table = {"a": "apple"}
        return Lookup(key=ev.key, found=table.get(ev.key))

    @step
    async def report(self, ev: Lookup) -> StopEvent:
        return StopEvent(result=[ev.key, ev.found, ev.score, ev.retries])


async def main(run):
    wf = OptionalFlow(timeout=10)
    return [await (await run(wf, key=k)) for k in ("a", "z")]
