"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from services.natsserver import EmbeddedNats
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
def nats_url(nats_server: EmbeddedNats) -> str:
    """Client URL of the `nats_server` fixture, e.g. "nats://127.0.0.1:54321"."""
    return nats_server.url


# --------------------------------------------------------------------------------------------
# Step worker processes (tests/integration/procs.py)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def workers() -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes with ``workers(target, url, *cli_args)``; all are killed at the end."""
    started: list[WorkerProcess] = []

    def start(target: str, url: str, *args: str, ready: bool = True) -> WorkerProcess:
        w = WorkerProcess(target, url, *args)
        started.append(w)
        if ready:
            w.wait_ready()
        return w

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.kill()
