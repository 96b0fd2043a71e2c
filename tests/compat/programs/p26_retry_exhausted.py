"""A step that always fails: retried up to stop_after_attempt, then the run fails with the
step's error (any exception: the program looks only at the last attempt's message)."""

from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent
from workflows.retry_policy import retry_policy, stop_after_attempt, wait_fixed


class AlwaysFailsFlow(Workflow):
    @step(retry_policy=retry_policy(wait=wait_fixed(0.01), stop=stop_after_attempt(3)))
    async def broken(self, ctx: Context, ev: StartEvent) -> StopEvent:
        raise ValueError(f"broken on retry {ctx.retry_info().retry_number}")


async def main(run):
    handler = await run(AlwaysFailsFlow(timeout=10))
    try:
        await handler
    except Exception as exc:
        return {"failed": True, "last_attempt": "broken on retry 2" in str(exc)}
    return "no error"
