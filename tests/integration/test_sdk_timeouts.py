"""SDK waits with a limit, and the warning for a run no live worker serves, on a real
nats-server, control plane and worker processes: ``result(timeout=...)`` raises the builtin
``TimeoutError`` and the run goes on; starting (or awaiting) a run of a workflow nobody serves
says so once (``NoLiveWorkerWarning``)."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from engine import NoLiveWorkerWarning
from services.client import Client, SyncClient
from services.launcher import WorkerProcess
from services.nats_client import NatsClient
from tests.integration.procs import eventually
from tests.workflows import Chain3, Nap, Reply

CHAIN = "tests.workflows:Chain3"
INTERVIEW = "tests.workflows:Interview"
NAP = "tests.workflows:Nap"


@pytest.fixture
async def nats_client(nats_url: str) -> AsyncIterator[NatsClient]:
    c = await NatsClient.connect(nats_url)
    try:
        yield c
    finally:
        await c.close()


async def test_http_result_times_out_and_the_run_goes_on(
    client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(INTERVIEW)
    handle = await client.start("Interview", people=["ana"])
    began = time.monotonic()
    with pytest.raises(TimeoutError, match=f"run {handle.run_id} has not ended after 0.5 s"):
        await handle.result(timeout=0.5)
    assert 0.5 <= time.monotonic() - began < 5
    await eventually(lambda: _status_is(handle, "waiting"), what="the question waits")
    await handle.send_event(Reply(who="ana", text="Ana"))
    assert await handle.result(timeout=60) == {"ana": "Ana"}  # the same handle, once it ended


async def _status_is(handle: object, status: str) -> bool:
    return (await handle.status())["status"] == status  # type: ignore[attr-defined]


async def test_sync_result_times_out(api: str, start_worker: Callable[..., Awaitable[WorkerProcess]]) -> None:
    await start_worker(NAP)

    def in_a_thread() -> tuple[bool, object]:
        with SyncClient(api) as client:
            handle = client.start("Nap", seconds=1.5)
            try:
                handle.result(timeout=0.2)
                timed_out = False
            except TimeoutError:
                timed_out = True
            return timed_out, handle.result(timeout=60)

    timed_out, result = await asyncio.to_thread(in_a_thread)
    assert timed_out and result == {"slept": 1.5}


async def test_nats_handler_result_times_out_and_stays_usable(
    nats_url: str, nats_client: NatsClient, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(NAP)
    handler = await nats_client.start(Nap, seconds=1.5)
    with pytest.raises(TimeoutError, match="has not ended after 0.2 s"):
        await handler.result(timeout=0.2)
    assert not handler.done()
    assert await handler.result(timeout=60) == {"slept": 1.5}
    assert handler.result() == {"slept": 1.5}  # without timeout: Future semantics, at once


async def test_in_process_handler_result_times_out() -> None:
    handler = Nap().run(seconds=1.0)
    with pytest.raises(TimeoutError):
        await handler.result(timeout=0.1)
    with pytest.raises(asyncio.InvalidStateError):
        handler.result()
    assert await handler == {"slept": 1.0}


async def test_a_run_nobody_serves_warns_at_start_and_when_awaited(
    client: Client, nats_client: NatsClient, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    gone = await start_worker(CHAIN)  # (the catalog knows a workflow once it was served)
    # (one CI run saw this SIGTERM take over 20 s on a loaded machine, never reproduced: a wider
    #  deadline here, and the worker's last lines if it happens again)
    code = await gone.stop(timeout=60)
    assert code == 0, f"the worker exited {code}:\n{gone.output()}"

    async def unserved() -> bool:
        return (await client.workflow("Chain3"))["instances"] == 0

    await eventually(unserved, what="the stopped worker's entry removed")
    with pytest.warns(NoLiveWorkerWarning, match=r"no live worker serves workflow 'Chain3'.*waits in JetStream") as got:
        handle = await client.start("Chain3", text="a b")
    assert len(got) == 1 and got[0].message.run_id == handle.run_id  # type: ignore[union-attr]
    assert got[0].filename == __file__  # it points at the caller's line
    with pytest.warns(NoLiveWorkerWarning, match="'Chain3'"):
        nats_handler = await nats_client.start(Chain3, text="c d")
    # a handle on the run made elsewhere warns when awaited (once), not when made
    other = client.handle(handle.run_id)
    with pytest.warns(NoLiveWorkerWarning, match=handle.run_id), pytest.raises(TimeoutError):
        await other.result(timeout=0.5)
    await start_worker(CHAIN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # served now: no warning anywhere
        assert (await other.result(timeout=60))["source"] == "a b"
        assert (await handle.result(timeout=60))["source"] == "a b"
        assert (await nats_handler.result(timeout=60))["source"] == "c d"
        later = await client.start("Chain3", text="e")
        assert (await client.handle(later.run_id).result(timeout=60))["source"] == "e"
        assert (await (await nats_client.start(Chain3, text="f")).result(timeout=60))["source"] == "f"


