"""A custom StartEvent with typed fields, given as keyword fields and as a start_event."""

from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent


class TopicStart(StartEvent):
    topic: str
    count: int = 2


class CustomStartFlow(Workflow):
    @step
    async def write(self, ev: TopicStart) -> StopEvent:
        return StopEvent(result=" ".join([ev.topic] * ev.count))


async def main(run):
    wf = CustomStartFlow(timeout=10)
    first = await (await run(wf, topic="pirates"))
    second = await (await run(wf, start_event=TopicStart(topic="ships", count=3)))
    return [first, second]
