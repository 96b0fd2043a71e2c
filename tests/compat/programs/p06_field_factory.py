"""Event fields declared with pydantic Field: default_factory and description."""

from pydantic import Field
from workflows import Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Notes(Event):
    lines: list[str] = Field(default_factory=list, description="notes taken so far")
    tags: dict[str, int] = Field(default_factory=dict)
    title: str = Field(default="untitled", description="the note's title")


class FieldFactoryFlow(Workflow):
    @step
    async def take(self, ev: StartEvent) -> Notes:
        notes = Notes()
        notes.lines.append("first")
        return notes

    @step
    async def tag(self, ev: Notes) -> StopEvent:
        return StopEvent(result={"lines": ev.lines, "tags": ev.tags, "title": ev.title})


async def main(run):
    return await (await run(FieldFactoryFlow(timeout=10)))
