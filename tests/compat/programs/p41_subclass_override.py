"""Subclassing with an overridden step and a helper method, as the docs' custom-workflow
examples do."""

from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent


class Greeter(Workflow):
    greeting = "Hello"

    def format(self, name: str) -> str:
        return f"{self.greeting}, {name}"

    @step
    async def greet(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=self.format(ev.name))


class LoudGreeter(Greeter):
    greeting = "HEY"

    def format(self, name: str) -> str:
        return super().format(name).upper() + "!"


async def main(run):
    return [
        await (await run(Greeter(timeout=10), name="ada")),
        await (await run(LoudGreeter(timeout=10), name="ada")),
    ]
