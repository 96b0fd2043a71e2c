"""Branching: a step returns one of two event types (a union in its return annotation)."""

from workflows import Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class EvenEvent(Event):
    n: int


class OddEvent(Event):
    n: int


class BranchFlow(Workflow):
    @step
    async def route(self, ev: StartEvent) -> EvenEvent | OddEvent:
        if ev.n % 2 == 0:
            return EvenEvent(n=ev.n)
        return OddEvent(n=ev.n)

    @step
    async def even(self, ev: EvenEvent) -> StopEvent:
        return StopEvent(result=f"{ev.n} is even")

    @step
    async def odd(self, ev: OddEvent) -> StopEvent:
        return StopEvent(result=f"{ev.n} is odd")


async def main(run):
    wf = BranchFlow(timeout=10)
    return [await (await run(wf, n=n)) for n in (1, 2, 7)]
