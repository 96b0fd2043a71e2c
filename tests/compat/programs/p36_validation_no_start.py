"""Validation after class creation (the reference builds and checks the graph when the
workflow is instantiated or run): a workflow with no step accepting a StartEvent."""

from workflows import Workflow, step
from workflows.errors import WorkflowConfigurationError, WorkflowValidationError
from workflows.events import Event, StopEvent


class Ping(Event):
    pass


class NoStartFlow(Workflow):
    @step
    async def pong(self, ev: Ping) -> StopEvent:
        return StopEvent(result="pong")


async def main(run):
    stage = "init"
    try:
        wf = NoStartFlow(timeout=10)
        stage = "run"
        await (await run(wf))
    except (WorkflowConfigurationError, WorkflowValidationError) as exc:
        return {"stage": stage, "error": type(exc).__name__, "is_validation_error": isinstance(exc, WorkflowValidationError)}
    return "ran"
