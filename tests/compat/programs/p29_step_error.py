"""A step raising with no retry policy: awaiting the handler raises that exception."""

from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent


class DivideFlow(Workflow):
    @step
    async def divide(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=ev.a / ev.b)


async def main(run):
    wf = DivideFlow(timeout=10)
    out = [await (await run(wf, a=6, b=3))]
    try:
        await (await run(wf, a=1, b=0))
    except ZeroDivisionError as exc:
        out.append(["ZeroDivisionError", str(exc)])
    return out
