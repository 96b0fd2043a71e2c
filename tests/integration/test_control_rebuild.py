"""The control plane's rebuild of a closed connection rides through transient failures (issue 16,
parts 2 and 3): NATS unreachable for a while after nats-py closed the connection, as during a
node's restart or a leader election, costs 503s, not the process.

``ErrProxy`` (tests/integration/test_nats_connection.py) closes the control plane's connection
with ``-ERR``; ``FlakyProxy`` then also hangs up on every new connection while ``refusing``, so
that each attempt of the rebuild fails the way an unreachable server does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from engine.jetstream.connection import NatsSettings
from services.client import ApiError, Client
from services.launcher import ControlPlaneServer
from services.launcher import WorkerProcess as AsyncWorkerProcess
from services.natsserver import EmbeddedNats
from tests.integration.procs import eventually
from tests.integration.test_nats_connection import ErrProxy

CHAIN = "tests.workflows:Chain3"


class FlakyProxy(ErrProxy):
    """An ``ErrProxy`` that, while ``refusing``, closes each new client connection at once
    (counted in ``refused``)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__(upstream)
        self.refusing = False
        self.refused = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.refused += 1
            writer.close()
            return
        await super()._serve(reader, writer)


@pytest.fixture
async def proxy(nats_server: EmbeddedNats) -> AsyncIterator[FlakyProxy]:
    async with FlakyProxy((nats_server.host, nats_server.port)) as p:
        yield p


async def test_the_rebuild_retries_while_nats_is_unreachable_then_serves_again(
    proxy: FlakyProxy, start_worker: Callable[..., Awaitable[AsyncWorkerProcess]]
) -> None:
    await start_worker(CHAIN)  # straight to the server: only the control plane goes through the proxy
    # one connect attempt per rebuild attempt: without the retry, the first refusal ends it
    settings = NatsSettings(url=proxy.url, connect_attempts=1, connect_wait_s=0.1)
    server = ControlPlaneServer(settings, port=0, shutdown_grace=1.0)
    await server.start()
    cp = server.control_plane
    try:
        async with Client(server.url, unavailable_for_s=0) as client:  # (a 503 is not retried)
            assert (await client.run("Chain3", text="a b"))["n"] == 2
            first = cp.log
            proxy.refusing = True
            await proxy.inject()

            async def refused_thrice() -> bool:
                return proxy.refused >= 3

            await eventually(refused_thrice, timeout=30, what="three attempts of the rebuild")
            assert not cp.broken.done(), cp.broken.result()
            with pytest.raises(ApiError) as unavailable:
                await client.runs()
            assert unavailable.value.status == 503
            proxy.refusing = False

            async def rebuilt() -> bool:
                return cp.log is not first and cp.log is not None and cp.log.nc.is_connected

            await eventually(rebuilt, timeout=30, what="a new NATS connection")
            assert not cp.broken.done()
            assert (await client.run("Chain3", text="after the outage"))["n"] == 3
    finally:
        await server.stop()


async def test_the_rebuild_gives_up_after_its_bound(proxy: FlakyProxy, tmp_path: Path) -> None:
    """Still unreachable after ``rebuild_for``: ``broken`` resolves with ``LogUnavailableError``
    (the process then exits 1 with one line, services/cli.py)."""
    settings = NatsSettings(url=proxy.url, connect_attempts=1, connect_wait_s=0.1)
    server = ControlPlaneServer(settings, port=0, shutdown_grace=1.0)
    await server.start()
    cp = server.control_plane
    cp.rebuild_for = 2.0
    try:
        proxy.refusing = True
        started = asyncio.get_running_loop().time()
        await proxy.inject()
        exc = await asyncio.wait_for(asyncio.shield(cp.broken), 30)
        took = asyncio.get_running_loop().time() - started
        assert type(exc).__name__ == "LogUnavailableError" and "rebuild of the NATS connection" in str(exc)
        assert proxy.refused >= 2 and took < 15, (proxy.refused, took)
    finally:
        await server.stop()
