"""``MemoryBackend``: the ``Backend`` port in one process (tests, notebooks): a ``MemoryLog`` and
the memory stores beside it."""

from __future__ import annotations

import asyncio

from engine.memory.log import MemoryLog
from engine.memory.registry import MemoryRegistry
from engine.memory.sessions import MemorySessionStore
from engine.memory.snapshots import MemorySnapshots
from engine.ports.backend import Readiness
from engine.ports.runindex import LogRunIndex
from engine.wire.subjects import DEFAULT_PREFIX

__all__ = ["MemoryBackend", "MemoryBackendClosed"]


class MemoryBackendClosed(ConnectionError):
    """What ``MemoryBackend.closed()`` resolves with: the backend was closed."""


class MemoryBackend:
    """Every port in memory, for one process; always connected until ``close()``.

    Args:
        prefix: subject prefix of the log (default ``jetloom``).
    """

    def __init__(self, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._log = MemoryLog(prefix=prefix)
        self._runs = LogRunIndex(self._log)
        self._snapshots = MemorySnapshots()
        self._registry = MemoryRegistry()
        self._sessions = MemorySessionStore()
        self._closed: asyncio.Future[Exception] | None = None
        self._open = True

    @property
    def log(self) -> MemoryLog:
        return self._log

    @property
    def runs(self) -> LogRunIndex:
        return self._runs

    async def snapshots(self) -> MemorySnapshots:
        return self._snapshots

    async def registry(self) -> MemoryRegistry:
        return self._registry

    async def sessions(self) -> MemorySessionStore:
        return self._sessions

    @property
    def is_connected(self) -> bool:
        return self._open

    def check_connected(self) -> None:
        """Raises ``MemoryBackendClosed`` after ``close()``."""
        if not self._open:
            raise MemoryBackendClosed("the memory backend is closed")

    def closed(self) -> asyncio.Future[Exception]:
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
            if not self._open:
                self._closed.set_result(MemoryBackendClosed("the memory backend is closed"))
        return self._closed

    async def ready(self, timeout: float) -> Readiness:
        if not self._open:
            return Readiness(ready=False, reason="the memory backend is closed", stream="memory")
        return Readiness(ready=True, stream="memory")

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        await self._log.close()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(MemoryBackendClosed("the memory backend is closed"))
