"""Free-function steps attached with @step(workflow=Cls), as the docs show for steps defined
outside the class."""

from workflows import Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Drafted(Event):
    draft: str


class EditorFlow(Workflow):
    @step
    async def draft(self, ev: StartEvent) -> Drafted:
        return Drafted(draft=ev.text)


@step(workflow=EditorFlow)
async def polish(ev: Drafted) -> StopEvent:
    return StopEvent(result=ev.draft.capitalize() + ".")


async def main(run):
    return await (await run(EditorFlow(timeout=10), text="a rough draft"))
