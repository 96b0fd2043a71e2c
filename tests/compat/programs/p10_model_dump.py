"""model_dump() of a user event, its nested model and defaults."""

from pydantic import BaseModel, Field
from workflows import Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Point(BaseModel):
    x: int
    y: int = 0


class Shape(Event):
    name: str
    points: list[Point] = Field(default_factory=list)
    closed: bool = False


class ModelDumpFlow(Workflow):
    @step
    async def build(self, ev: StartEvent) -> Shape:
        return Shape(name="tri", points=[Point(x=0), Point(x=1, y=1), Point(x=2)])

    @step
    async def dump(self, ev: Shape) -> StopEvent:
        return StopEvent(result=ev.model_dump())


async def main(run):
    return await (await run(ModelDumpFlow(timeout=10)))
