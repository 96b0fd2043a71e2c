"""The docs' first workflow: one step from StartEvent to StopEvent, fields passed to run()."""

from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent


class HelloFlow(Workflow):
    @step
    async def greet(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=f"Hello, {ev.name}!")


async def main(run):
    handler = await run(HelloFlow(timeout=10, verbose=False), name="world")
    return await handler
