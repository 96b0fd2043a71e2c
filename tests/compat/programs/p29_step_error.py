"""A step raising with no retry policy: awaiting the handler raises that exception.

jetloom differs on purpose (docs/guide.md, "Retries"): a step's failure is a record in the run's
log (error type, message, traceback), read by whichever process awaits the run, so awaiting raises
``StepFailedError`` carrying them, not the step's exception object.
"""

from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent

DIFFERENCES = {
    "inprocess": "awaiting a failed run raises StepFailedError (the log's record of the step's "
    "error), not the step's exception object",
    "distributed": "awaiting a failed run raises StepFailedError (the log's record of the step's "
    "error), not the step's exception object",
}


class DivideFlow(Workflow):
    @step
    async def divide(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=ev.a / ev.b)


async def main(run):
    wf = DivideFlow(timeout=10)
    out = [await (await run(wf, a=6, b=3))]
    try:
        await (await run(wf, a=1, b=0))
    except Exception as exc:
        out.append([type(exc).__name__, str(exc)])
    return out
