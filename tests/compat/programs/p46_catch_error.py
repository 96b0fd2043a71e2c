"""@catch_error: a step that exhausts its retries is handed to the handler as a StepFailedEvent,
which recovers the run with a StopEvent."""

from workflows import Context, Workflow, catch_error, step
from workflows.events import StartEvent, StepFailedEvent, StopEvent
from workflows.retry_policy import retry_policy, stop_after_attempt, wait_fixed


class RecoveringFlow(Workflow):
    @step(retry_policy=retry_policy(wait=wait_fixed(0.01), stop=stop_after_attempt(2)))
    async def fetch(self, ev: StartEvent) -> StopEvent:
        if ev.fail:
            raise ConnectionError(f"cannot reach {ev.url}")
        return StopEvent(result={"fetched": ev.url})

    @catch_error
    async def recover(self, ctx: Context, ev: StepFailedEvent) -> StopEvent:
        return StopEvent(
            result={
                "failed": ev.step_name,
                "attempts": ev.attempts,
                "error": type(ev.exception).__name__,
                "message": str(ev.exception),
            }
        )


async def main(run):
    wf = RecoveringFlow(timeout=10)
    return [
        await (await run(wf, url="http://a", fail=False)),
        await (await run(wf, url="http://b", fail=True)),
    ]
