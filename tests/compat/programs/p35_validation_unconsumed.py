"""Validation after class creation (the reference builds and checks the graph when the
workflow is instantiated or run): an event a step produces but no step accepts is a
WorkflowValidationError."""

from workflows import Workflow, step
from workflows.errors import WorkflowValidationError
from workflows.events import Event, StartEvent, StopEvent


class Orphan(Event):
    pass


class UnconsumedFlow(Workflow):
    @step
    async def begin(self, ev: StartEvent) -> Orphan | StopEvent:
        return StopEvent(result="never")


async def main(run):
    stage = "init"
    try:
        wf = UnconsumedFlow(timeout=10)
        stage = "run"
        await (await run(wf))
    except WorkflowValidationError as exc:
        return {"stage": stage, "error": type(exc).__name__, "names_event": "Orphan" in str(exc)}
    return "ran"
