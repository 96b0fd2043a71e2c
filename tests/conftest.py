"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from engine.jetstream.log import JetStreamLog
from services.client import Client
from services.launcher import ControlPlaneServer
from services.launcher import WorkerProcess as AsyncWorkerProcess
from services.natsserver import EmbeddedCluster, EmbeddedNats
from tests.integration.procs import WorkerProcess

# --------------------------------------------------------------------------------------------
# Embedded nats-server (services/natsserver.py)
# --------------------------------------------------------------------------------------------


@pytest.fixture
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedNats]:
    """A started nats-server (JetStream, repo nats.conf) on a free port, stopped afterwards.

    Uses file storage in a fresh temporary store directory; `restart()` keeps port and data.
    """
    server = EmbeddedNats(port=0, store_dir=tmp_path_factory.mktemp("nats-store"))
    async with server:
        yield server


@pytest.fixture
async def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedCluster]:
    """A started 3-node JetStream cluster (repo nats.conf, routes on 127.0.0.1, every port free),
    ready once each node reports itself healthy; ``nats_cluster.urls`` is the comma-separated
    client URLs, ``kill(i)``/``restart(i)`` take a node down and back, ``leader_of(stream)``."""
    cluster = EmbeddedCluster(3, store_dir=tmp_path_factory.mktemp("nats-cluster"))
    async with cluster:
        yield cluster


@pytest.fixture
def nats_url(nats_server: EmbeddedNats) -> str:
    """Client URL of the `nats_server` fixture, e.g. "nats://127.0.0.1:54321"."""
    return nats_server.url


@pytest.fixture
async def js_log(nats_server: EmbeddedNats) -> AsyncIterator[JetStreamLog]:
    """A `JetStreamLog` (default prefix and settings) on the `nats_server` fixture, closed after."""
    log = await JetStreamLog.connect(nats_server.url)
    try:
        yield log
    finally:
        await log.close()


@pytest.fixture
async def fast_js_log(nats_server: EmbeddedNats) -> AsyncIterator[JetStreamLog]:
    """``js_log`` on the fast path whatever ``JETLOOM_NATS_FASTPATH`` says (``make test`` runs the
    integration suite again with it off), for the tests of the fast path's own machinery; the
    public API's reads and consumes are tested by tests/contract and test_natspy_gate.py."""
    log = await JetStreamLog.connect(nats_server.url, fast_path=True)
    try:
        assert log.fast_path
        yield log
    finally:
        await log.close()


# --------------------------------------------------------------------------------------------
# Step worker processes (tests/integration/procs.py)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def workers() -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes with ``workers(target, url, *cli_args, env={...})``; all are killed
    at the end."""
    started: list[WorkerProcess] = []

    def start(target: str, url: str, *args: str, ready: bool = True, env: dict[str, str] | None = None) -> WorkerProcess:
        w = WorkerProcess(target, url, *args, env=env)
        started.append(w)
        if ready:
            w.wait_ready()
        return w

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.kill()


# --------------------------------------------------------------------------------------------
# Control plane (services/control) on real uvicorn, and async worker processes
# --------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def api(nats_url: str) -> AsyncIterator[str]:
    """The URL of a control plane served by uvicorn in the test's event loop (a free port)."""
    cp = ControlPlaneServer(nats_url, port=0, shutdown_grace=1.0)
    await cp.start()
    try:
        yield cp.url
    finally:
        await cp.stop()


@pytest.fixture
async def client(api: str) -> AsyncIterator[Client]:
    """An SDK ``Client`` of the ``api`` control plane."""
    async with Client(api) as c:
        yield c


@pytest.fixture
async def start_worker(nats_url: str) -> AsyncIterator[Callable[..., Awaitable[AsyncWorkerProcess]]]:
    """``await start_worker(target, *args)``: a ready worker process; all are killed at the end."""
    started: list[AsyncWorkerProcess] = []

    async def start(target: str, *args: str) -> AsyncWorkerProcess:
        w = await AsyncWorkerProcess.start(target, nats_url, args=args, cwd=ROOT)
        started.append(w)
        await w.wait_ready()
        return w

    yield start
    for w in started:
        w.kill()
        await w.stop(timeout=5)
