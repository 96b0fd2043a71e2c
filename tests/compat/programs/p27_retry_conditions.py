"""Retry conditions: retry_if_exception_type retries a TimeoutError, not a KeyError."""

from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent
from workflows.retry_policy import (
    retry_if_exception_type,
    retry_policy,
    stop_after_attempt,
    wait_fixed,
)

POLICY = retry_policy(
    retry=retry_if_exception_type((TimeoutError, ConnectionError)),
    wait=wait_fixed(0.01),
    stop=stop_after_attempt(5),
)


class ConditionalRetryFlow(Workflow):
    @step(retry_policy=POLICY)
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        n = ctx.retry_info().retry_number
        if ev.mode == "timeout" and n < 2:
            raise TimeoutError("slow service")
        if ev.mode == "key":
            raise KeyError(f"missing on retry {n}")
        return StopEvent(result=f"{ev.mode} ok after {n} retries")


async def main(run):
    wf = ConditionalRetryFlow(timeout=10)
    out = [await (await run(wf, mode="timeout"))]
    try:
        await (await run(wf, mode="key"))
    except Exception as exc:  # not retried: the first attempt's error fails the run
        out.append(["failed", "missing on retry 0" in str(exc)])
    return out
