"""Child workflows across services: a parent's worker process runs a child workflow by name on
another service's worker processes, over NATS, and survives that worker being killed mid-run;
cancelling the parent cancels the remote child."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.client import Client, RunNotFound
from services.launcher import WorkerProcess
from tests.integration.procs import eventually

DELEGATE = "tests.workflows:Delegate"
SLOW_CHILD = "tests.workflows:SlowChild"
NAP = "tests.workflows:Nap"


async def child_run(client: Client, run_id: str) -> str | None:
    """The child run the parent's step waits for, from its StepSuspended record."""
    for r in await client.handle(run_id).events():
        if r["type"] == "StepSuspended" and r["data"].get("kind") == "child":
            return r["data"]["child_run"]  # type: ignore[no-any-return]
    return None


async def test_remote_child_whose_worker_is_killed_mid_run(
    client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]], tmp_path: Path
) -> None:
    await start_worker(DELEGATE)
    child_worker = await start_worker(SLOW_CHILD, "--ack-wait", "2")
    marker = tmp_path / "second-step-running"
    handle = await client.start("Delegate", child="SlowChild", fields={"x": 21, "marker": str(marker)})

    async def child_mid_run() -> bool:
        return marker.exists()

    await eventually(child_mid_run, what="the child's second step is running")
    child_worker.kill()
    await child_worker.stop()
    await start_worker(SLOW_CHILD, "--ack-wait", "2")

    assert await asyncio.wait_for(handle.result(), 60) == {"child": {"x2": 42}}
    child = await child_run(client, handle.run_id)
    assert child is not None
    view = await client.handle(child).status()
    assert view["status"] == "completed"
    kinds = [f"{r['kind']}.{r['type']}" for r in await client.handle(handle.run_id).events()]
    assert kinds.count("cmd.delegate") == 1  # the child's end resumed the parent once


async def test_cancelling_the_parent_cancels_its_remote_child(
    client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(DELEGATE)
    await start_worker(NAP)
    handle = await client.start("Delegate", child="Nap", fields={"seconds": 600})

    async def child_asleep() -> bool:
        child = await child_run(client, handle.run_id)
        if child is None:
            return False
        try:  # (the parent records its wait before it starts the child)
            return any(r["type"] == "StepSuspended" for r in await client.handle(child).events())
        except RunNotFound:
            return False

    await eventually(child_asleep, what="the remote child sleeps")
    child = await child_run(client, handle.run_id)
    assert child is not None
    await handle.cancel("no longer needed")
    assert (await handle.status())["status"] == "cancelled"
    assert (await client.handle(child).status())["status"] == "cancelled"
