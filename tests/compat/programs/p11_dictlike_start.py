"""The plain StartEvent is dict-like: fields given to run() read as attributes, with get()
and with ``in``."""

from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent


class DictLikeFlow(Workflow):
    @step
    async def read(self, ev: StartEvent) -> StopEvent:
        return StopEvent(
            result={
                "query": ev.query,
                "get": ev.get("query"),
                "missing": ev.get("nothing", "fallback"),
                "has_query": "query" in ev,
            }
        )


async def main(run):
    return await (await run(DictLikeFlow(timeout=10), query="what is a loom?"))
