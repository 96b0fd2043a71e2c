"""A workflow timeout: a run longer than Workflow(timeout=...) fails with WorkflowTimeoutError."""

import asyncio

from workflows import Workflow, step
from workflows.errors import WorkflowTimeoutError
from workflows.events import StartEvent, StopEvent


class SlowFlow(Workflow):
    @step
    async def slow(self, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(ev.seconds)
        return StopEvent(result="finished")


async def main(run):
    out = [await (await run(SlowFlow(timeout=5), seconds=0.01))]
    try:
        await (await run(SlowFlow(timeout=0.5), seconds=30))
        out.append("no timeout")
    except WorkflowTimeoutError:
        out.append("WorkflowTimeoutError")
    return out
