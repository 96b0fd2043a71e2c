"""Resources and a free-function step across two worker processes on a real nats-server; a
returned ``InputRequiredEvent`` reaching a client's stream; a worker refusing a workflow whose
graph is invalid, in one line."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

import pytest

from services.nats_client import NatsClient
from tests.integration.procs import WorkerProcess
from tests.integration.steps_workflows import Asker, AskName, NameGiven, Tagged

TAGGED = "tests.integration.steps_workflows:Tagged"


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[NatsClient]:
    c = await NatsClient.connect(nats_url)
    try:
        yield c
    finally:
        await c.close()


async def test_resources_and_a_free_step_on_two_worker_processes(
    nats_url: str, client: NatsClient, workers: Callable[..., WorkerProcess]
) -> None:
    w1, w2 = workers(TAGGED, nats_url), workers(TAGGED, nats_url)
    for w in (w1, w2):
        assert "steps=split,join,label" in w.wait_for("jetloom worker ready")
    handlers = [await client.start(Tagged, n=8, timeout=60) for _ in range(12)]
    results = await asyncio.gather(*handlers)

    processes: dict[str, set[str]] = defaultdict(set)  # pid -> the cached values seen from it
    calls: list[str] = []
    for result in results:
        parts = result["parts"]
        assert sorted(i for i, _, _ in parts) == list(range(8))
        for _, process, call in parts:
            processes[process.split(":")[0]].add(process)
            calls.append(call)
        joined = result["joined_by"]
        processes[joined.split(":")[0]].add(joined)
    assert set(processes) == {str(w1.proc.pid), str(w2.proc.pid)}, "both processes ran steps"
    # cached: one value per worker process, shared by every step and run there
    assert all(len(values) == 1 for values in processes.values()), processes
    # uncached: one per step call (the free function `label`, 8 per run)
    assert len(calls) == len(set(calls)) == 12 * 8


async def test_a_returned_input_request_reaches_the_client_stream(
    nats_url: str, client: NatsClient, workers: Callable[..., WorkerProcess]
) -> None:
    workers("tests.integration.steps_workflows:Asker", nats_url)
    handler = await client.start(Asker, timeout=60)
    async with asyncio.timeout(30):
        async for ev in handler.stream_events():
            if isinstance(ev, AskName):
                assert ev.prompt == "name?"
                await handler.send_event(NameGiven(name="Ada"))
                break
    assert await handler == "hello Ada"


async def test_a_worker_refuses_an_invalid_workflow_in_one_line(
    nats_url: str, workers: Callable[..., WorkerProcess]
) -> None:
    target = "tests.integration.steps_workflows:Dangling"
    w = workers(target, nats_url, ready=False)
    assert w.child.wait_exit(30) == 1
    errors = [line for line in w.lines if line.startswith("jetloom worker:")]
    assert errors == [f"jetloom worker: {target}: step 'go' produces Unused but no step accepts it"]
    assert "Traceback" not in w.output
