"""Subclassing a workflow: the subclass inherits the base's steps and adds one."""

from workflows import Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Parsed(Event):
    words: list[str]


class BaseParseFlow(Workflow):
    @step
    async def parse(self, ev: StartEvent) -> Parsed:
        return Parsed(words=ev.text.split())

    @step
    async def finish(self, ev: Parsed) -> StopEvent:
        return StopEvent(result=ev.words)


class Counted(Event):
    n: int


class CountingParseFlow(BaseParseFlow):
    @step
    async def finish(self, ev: Parsed) -> Counted:
        return Counted(n=len(ev.words))

    @step
    async def report(self, ev: Counted) -> StopEvent:
        return StopEvent(result={"count": ev.n})


async def main(run):
    base = await (await run(BaseParseFlow(timeout=10), text="a b c"))
    sub = await (await run(CountingParseFlow(timeout=10), text="a b c"))
    return [base, sub]
