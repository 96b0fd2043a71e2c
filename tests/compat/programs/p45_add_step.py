"""Workflow.add_step: a free-function step declared for one workflow class is added to a second
one, which then runs it too."""

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Loaded(Event):
    rows: list[int]


class RangePipeline(Workflow):
    @step
    async def load(self, ev: StartEvent) -> Loaded:
        return Loaded(rows=list(range(ev.n)))


class SquaresPipeline(Workflow):
    @step
    async def load(self, ev: StartEvent) -> Loaded:
        return Loaded(rows=[i * i for i in range(ev.n)])


@step(workflow=RangePipeline)
async def summarise(ctx: Context, ev: Loaded) -> StopEvent:
    return StopEvent(result={"sum": sum(ev.rows), "max": max(ev.rows)})


SquaresPipeline.add_step(summarise)


async def main(run):
    return [
        await (await run(RangePipeline(timeout=10), n=5)),
        await (await run(SquaresPipeline(timeout=10), n=5)),
    ]
