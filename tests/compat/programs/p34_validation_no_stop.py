"""Validation after class creation: a workflow whose steps never produce a StopEvent is refused
with WorkflowConfigurationError when it is built (in the reference, by its constructor)."""

from workflows import Workflow, step
from workflows.errors import WorkflowConfigurationError, WorkflowValidationError
from workflows.events import Event, StartEvent


class Middle(Event):
    pass


class NoStopFlow(Workflow):
    @step
    async def begin(self, ev: StartEvent) -> Middle:
        return Middle()

    @step
    async def middle(self, ev: Middle) -> Middle:
        return Middle()


async def main(run):
    stage = "init"
    try:
        wf = NoStopFlow(timeout=10)
        stage = "run"
        await (await run(wf))
    except (WorkflowConfigurationError, WorkflowValidationError) as exc:
        return {"stage": stage, "error": type(exc).__name__, "is_validation_error": isinstance(exc, WorkflowValidationError)}
    return "ran"
