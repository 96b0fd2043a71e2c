"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.natsserver import EmbeddedNats

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
