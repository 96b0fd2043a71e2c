"""ConstantDelayRetryPolicy, the name older docs use (deprecated in the reference, hence its
warning is silenced here as a user upgrading would)."""

import warnings

from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent
from workflows.retry_policy import ConstantDelayRetryPolicy

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    POLICY = ConstantDelayRetryPolicy(delay=0.01, maximum_attempts=3)


class ConstantDelayFlow(Workflow):
    @step(retry_policy=POLICY)
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        if ctx.retry_info().retry_number == 0:
            raise RuntimeError("first try fails")
        return StopEvent(result=ctx.retry_info().retry_number)


async def main(run):
    return await (await run(ConstantDelayFlow(timeout=10)))
