"""A resource injected into steps with Annotated[T, Resource(factory)]."""

from typing import Annotated

from workflows import Workflow, step
from workflows.events import Event, StartEvent, StopEvent
from workflows.resource import Resource


class Glossary:
    def __init__(self) -> None:
        self.terms = {"dag": "directed acyclic graph", "kv": "key-value"}

    def define(self, term: str) -> str:
        return self.terms.get(term, "unknown")


def get_glossary() -> Glossary:
    return Glossary()


class Defined(Event):
    text: str


class ResourceFlow(Workflow):
    @step
    async def define(
        self, ev: StartEvent, glossary: Annotated[Glossary, Resource(get_glossary)]
    ) -> Defined:
        return Defined(text=glossary.define(ev.term))

    @step
    async def finish(self, ev: Defined) -> StopEvent:
        return StopEvent(result=ev.text)


async def main(run):
    wf = ResourceFlow(timeout=10)
    return [await (await run(wf, term=t)) for t in ("dag", "kv", "x")]
