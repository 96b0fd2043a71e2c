"""A stream read given up with asyncio.wait_for (a caller polling with a timeout): the timed-out
read ends the stream, and the run still finishes."""

import asyncio

from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent


class SlowAnswerFlow(Workflow):
    @step
    async def think(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(1)
        return StopEvent(result="answer")


async def main(run):
    handler = await run(SlowAnswerFlow(timeout=10))
    stream = handler.stream_events()
    seen = []
    while len(seen) < 5:
        try:
            ev = await asyncio.wait_for(anext(stream), timeout=0.3)
            seen.append(type(ev).__name__)
        except TimeoutError:
            seen.append("timeout")
        except StopAsyncIteration:
            seen.append("end")
            break
    return {"seen": seen, "result": await handler}
