"""Resource caching: parameters naming the same cached factory get one object; with
cache=False each parameter gets its own. (Within one step: across steps, jetloom's cache is per
worker process, which a program cannot observe the same way on one process and on two.)"""

from typing import Annotated

from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent
from workflows.resource import Resource


class Memory:
    def __init__(self) -> None:
        self.items: list[str] = []


def shared_memory() -> Memory:
    return Memory()


def fresh_memory() -> Memory:
    return Memory()


class ResourceCacheFlow(Workflow):
    @step
    async def write(
        self,
        ev: StartEvent,
        shared_a: Annotated[Memory, Resource(shared_memory)],
        shared_b: Annotated[Memory, Resource(shared_memory)],
        fresh_a: Annotated[Memory, Resource(fresh_memory, cache=False)],
        fresh_b: Annotated[Memory, Resource(fresh_memory, cache=False)],
    ) -> StopEvent:
        shared_a.items.append(ev.item)
        fresh_a.items.append(ev.item)
        return StopEvent(
            result={
                "shared_same": shared_a is shared_b,
                "fresh_same": fresh_a is fresh_b,
                "shared_b": list(shared_b.items),
                "fresh_b": list(fresh_b.items),
            }
        )


async def main(run):
    return await (await run(ResourceCacheFlow(timeout=10), item="note"))
