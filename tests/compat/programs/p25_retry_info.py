"""A flaky step retried by a composable retry_policy; ctx.retry_info() says which attempt runs."""

from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent
from workflows.retry_policy import retry_policy, stop_after_attempt, wait_fixed


class FlakyFlow(Workflow):
    @step(retry_policy=retry_policy(wait=wait_fixed(0.01), stop=stop_after_attempt(4)))
    async def flaky(self, ctx: Context, ev: StartEvent) -> StopEvent:
        info = ctx.retry_info()
        if info.retry_number < 2:
            raise ConnectionError(f"attempt {info.retry_number} failed")
        return StopEvent(
            result={"retry_number": info.retry_number, "last": str(info.last_exception)}
        )


async def main(run):
    return await (await run(FlakyFlow(timeout=10)))
