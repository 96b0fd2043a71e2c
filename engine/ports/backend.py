"""The ``Backend`` port: one object that owns the storage connection and hands out every other
port (the event log, the run index, snapshots, the registry, sessions).

Services hold a backend and the ports it gives them, never a connection: a worker, the control
plane and the CLI run the same on ``engine.jetstream.backend.NatsBackend`` and on
``engine.memory.backend.MemoryBackend``. The stores beside the log are opened on first asking
(``await backend.registry()``), so a process opens only what it uses.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import msgspec

from engine.ports.log import EventLog
from engine.ports.registry import Registry
from engine.ports.runindex import RunIndex
from engine.ports.sessions import SessionStore
from engine.ports.snapshots import SnapshotStore

__all__ = ["Backend", "Readiness"]


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """Whether a backend can serve requests now (``Backend.ready``).

    Attributes:
        ready: connected, and the run stream has a leader.
        reason: why not, in one line (``None`` when ready).
        stream: the run stream's name.
        leader: the server that leads the run stream (``None`` on a server that is not
            clustered, or while not ready).
    """

    ready: bool
    reason: str | None = None
    stream: str | None = None
    leader: str | None = None


class Backend(Protocol):
    """The storage a process runs on.

    Attributes:
        log: the event log.
        runs: the run index over that log.
    """

    @property
    def log(self) -> EventLog: ...

    @property
    def runs(self) -> RunIndex: ...

    async def snapshots(self) -> SnapshotStore:
        """The snapshot store (opened, and created if missing, at the first call)."""
        ...

    async def registry(self) -> Registry:
        """The service registry (opened, and created if missing, at the first call)."""
        ...

    async def sessions(self) -> SessionStore:
        """The session store (opened, and created if missing, at the first call)."""
        ...

    @property
    def is_connected(self) -> bool:
        """Whether the connection is up now (it may be reconnecting)."""
        ...

    def check_connected(self) -> None:
        """Raise at once when not connected (an error ``engine.jetstream.retry.unavailable_reason``
        classifies as unavailable), rather than let a request wait for its timeout."""
        ...

    def closed(self) -> asyncio.Future[Exception]:
        """A future that resolves, with the reason, when the connection is closed for good (also
        by ``close()``): its owner rebuilds the backend or exits."""
        ...

    async def ready(self, timeout: float) -> Readiness:
        """Whether requests can be served now: connected and the run stream led, asked within
        ``timeout`` seconds (not ready when the answer takes longer)."""
        ...

    async def close(self) -> None:
        """Close the log and the connection (pending publishes flushed first)."""
        ...
