"""A worker's registration: its heartbeat in the service registry (``engine.ports.registry``).

The registry itself (two KV buckets on NATS, ``engine.jetstream.registry``; dicts in memory,
``engine.memory.registry``) is the backend's; this module is the process side: the entry a
process writes about itself, refreshed every third of its TTL until the process stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

from engine.ports.registry import DEFAULT_TTL, Registry, ServiceEntry, WorkflowInfo

__all__ = ["DEFAULT_TTL", "Heartbeat", "jetloom_version"]

logger = logging.getLogger("jetloom.registry")


@functools.cache  # (a walk over the installed distributions, asked by every GET /health; docs/benchmarks.md "HTTP path")
def jetloom_version() -> str:
    try:
        return version("jetloom")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Heartbeat:
    """Registers a process and keeps its entry alive until ``stop()``.

    Args:
        registry: the registry (``Backend.registry()``).
        service: service name.
        workflows: what this process serves (also written to the workflow catalog).
        ttl: seconds the entry outlives its last refresh (default 10); refreshed every ``ttl/3``.
        stats: called at each heartbeat for the counters to report (default: none).

    Raises:
        ValueError: ``ttl`` is below 1 s.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        service: str,
        workflows: list[WorkflowInfo],
        ttl: float = DEFAULT_TTL,
        stats: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        if ttl < 1:
            raise ValueError(f"registry ttl must be at least 1 s, got {ttl}")
        self.registry = registry
        self.entry = ServiceEntry(
            service=service,
            instance=uuid.uuid4().hex[:12],
            host=socket.gethostname(),
            pid=os.getpid(),
            version=jetloom_version(),
            workflows=workflows,
            started_at=_now(),
            ttl=ttl,
        )
        self._stats = stats
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for info in self.entry.workflows:
            await self.registry.put_workflow(info)
        await self._beat()
        self._task = asyncio.create_task(self._loop(), name="jetloom:heartbeat")

    async def _beat(self, *, retry_for: float | None = None) -> None:
        if self._stats is not None:
            self.entry.stats = self._stats()
        await self.registry.put_service(self.entry, retry_for=retry_for)

    async def _loop(self) -> None:
        interval = self.entry.ttl / 3
        while True:
            await asyncio.sleep(interval)
            try:
                # (retried until the next beat is due, not beyond: the next one carries on)
                await self._beat(retry_for=interval)
            except Exception as exc:  # a missed beat is retried; the TTL absorbs two of them
                logger.warning("heartbeat failed (%s); retrying in %.1fs", exc, interval)

    async def stop(self) -> None:
        """Stop heartbeating and delete the entry."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.registry.remove_service(self.entry)
