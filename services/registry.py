"""The service registry: who serves which workflow, in two JetStream KV buckets.

- ``<prefix>_services`` (one key per process, ``<service>.<instance>``): a ``ServiceEntry``
  refreshed as a heartbeat. Every put carries a per-message TTL (``Nats-TTL``), so the entry of a
  process that dies is removed by the server within ``ttl`` seconds, and the bucket's subject
  delete markers tell watchers. A clean shutdown deletes the entry at once.
- ``<prefix>_workflows`` (one key per workflow, no expiry): the ``WorkflowInfo`` of every workflow
  ever served, so a run can be started (and queued) while no process serves it.

Both are plain KV buckets: ``nats kv ls jetloom_services`` shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from engine.jetstream.kv import open_bucket
from engine.jetstream.retry import DEFAULT_RETRY_FOR, retrying
from engine.runtime.describe import WorkflowInfo

__all__ = ["DEFAULT_TTL", "Heartbeat", "Registry", "RegistryView", "ServiceEntry", "jetloom_version"]

logger = logging.getLogger("jetloom.registry")

DEFAULT_TTL = 10.0  # seconds an entry outlives its last heartbeat
MARKER_TTL = 60.0  # seconds the server keeps the delete marker of an expired entry


def jetloom_version() -> str:
    try:
        return version("jetloom")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ServiceEntry(msgspec.Struct, kw_only=True):
    """One worker process, as it last reported itself.

    Attributes:
        service: service name (several processes, the replicas, share it).
        instance: this process's unique id.
        host / pid: where it runs.
        version: jetloom's version in that process.
        workflows: what it serves.
        started_at / heartbeat_at: RFC 3339 UTC timestamps.
        ttl: seconds the entry lives after ``heartbeat_at`` unless refreshed.
        stats: the executor's counters at the last heartbeat.
    """

    service: str
    instance: str
    host: str
    pid: int
    version: str
    workflows: list[WorkflowInfo]
    started_at: str
    heartbeat_at: str = ""
    ttl: float = DEFAULT_TTL
    stats: dict[str, int] = msgspec.field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.service}.{self.instance}"


_entry_decoder = msgspec.json.Decoder(ServiceEntry)
_info_decoder = msgspec.json.Decoder(WorkflowInfo)


class Registry:
    """The registry buckets over one NATS connection.

    Create with ``await Registry.open(nc)``.

    Args:
        nc: a connected nats-py client.
        prefix: bucket name prefix (default ``jetloom``).
        storage: ``"file"`` (default) or ``"memory"``.
        replicas: replicas of the buckets when they are created (default 1).
    """

    def __init__(
        self, nc: NATS, *, prefix: str = "jetloom", storage: str = "file", replicas: int = 1
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.services_bucket = f"{prefix}_services"
        self.workflows_bucket = f"{prefix}_workflows"
        self._storage_name = storage
        self._replicas = replicas
        self._services: KeyValue | None = None
        self._workflows: KeyValue | None = None

    @classmethod
    async def open(cls, nc: NATS, **kwargs: Any) -> Registry:
        """Create the buckets if missing and return the registry."""
        reg = cls(nc, **kwargs)
        reg._services = await reg._bucket(reg.services_bucket, marker_ttl=MARKER_TTL)
        reg._workflows = await reg._bucket(reg.workflows_bucket, marker_ttl=None)
        return reg

    async def _bucket(self, name: str, *, marker_ttl: float | None) -> KeyValue:
        return await open_bucket(
            self.nc,
            name,
            storage=self._storage_name,
            replicas=self._replicas,
            limit_marker_ttl=marker_ttl,
        )

    # ---- writes (workers) ------------------------------------------------------------------

    async def put_service(self, entry: ServiceEntry, *, retry_for: float = DEFAULT_RETRY_FOR.total_seconds()) -> None:
        """Write (or refresh) a process's entry; it expires ``entry.ttl`` seconds later unless
        refreshed again. Retried through a leader election for ``retry_for`` seconds (a put
        overwrites itself, so a repeat is harmless).

        Raises:
            engine.jetstream.retry.LogUnavailableError: not stored within ``retry_for``.
        """
        entry.heartbeat_at = _now()
        data = msgspec.json.encode(entry)
        await retrying(
            f"registry heartbeat of {entry.key}",
            lambda: self.js.publish(f"$KV.{self.services_bucket}.{entry.key}", data, msg_ttl=entry.ttl),
            retry_for=retry_for,
        )

    async def remove_service(self, entry: ServiceEntry) -> None:
        """Delete a process's entry (clean shutdown)."""
        assert self._services is not None
        services = self._services
        await retrying(f"registry removal of {entry.key}", lambda: services.delete(entry.key), retry_for=5.0)

    async def put_workflow(self, info: WorkflowInfo) -> None:
        """Record a workflow's description in the catalog (overwrites the previous one); retried
        through a leader election."""
        assert self._workflows is not None
        workflows = self._workflows
        data = msgspec.json.encode(info)
        await retrying(f"catalog entry of {info.name}", lambda: workflows.put(info.name, data))

    # ---- reads (control plane, CLI) --------------------------------------------------------

    async def services(self) -> list[ServiceEntry]:
        """Every live process's entry, sorted by service then instance."""
        assert self._services is not None
        out: list[ServiceEntry] = []
        for value in await _current_values(self._services):
            with contextlib.suppress(msgspec.DecodeError):
                out.append(_entry_decoder.decode(value))
        return sorted(out, key=lambda e: (e.service, e.instance))

    async def workflows(self) -> list[WorkflowInfo]:
        """Every workflow in the catalog, sorted by name."""
        assert self._workflows is not None
        out: list[WorkflowInfo] = []
        for value in await _current_values(self._workflows):
            with contextlib.suppress(msgspec.DecodeError):
                out.append(_info_decoder.decode(value))
        return sorted(out, key=lambda w: w.name)

    async def workflow(self, name: str) -> WorkflowInfo | None:
        """The catalog entry of ``name``, or ``None``."""
        assert self._workflows is not None
        workflows = self._workflows
        try:
            entry = await retrying(f"catalog entry of {name}", lambda: workflows.get(name))
        except (KeyNotFoundError, ValueError):  # ValueError: not a valid key
            return None
        if entry.value is None:
            return None
        try:
            return _info_decoder.decode(entry.value)
        except msgspec.DecodeError:
            return None


async def _current_values(kv: KeyValue) -> list[bytes]:
    """The live values of a bucket, read with one watcher (deleted and expired keys skipped)."""
    watcher = await kv.watchall(ignore_deletes=True)
    out: list[bytes] = []
    try:
        while True:
            entry = await watcher.updates(timeout=5.0)
            if entry is None:
                return out
            if entry.value:
                out.append(entry.value)
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()


class Heartbeat:
    """Registers a process and keeps its entry alive until ``stop()``.

    Args:
        registry: the registry.
        service: service name.
        workflows: what this process serves (also written to the workflow catalog).
        ttl: seconds the entry outlives its last refresh (default 10); refreshed every ``ttl/3``.
        stats: called at each heartbeat for the counters to report (default: none).
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

    async def _beat(self, *, retry_for: float = DEFAULT_RETRY_FOR.total_seconds()) -> None:
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


class RegistryView:
    """A live, in-memory view of both buckets, kept current by two KV watchers (what the control
    plane reads on every request). Derived state only: a new view rebuilds it from the buckets.

    Attributes:
        services: ``{key: ServiceEntry}`` of live processes.
        workflows: ``{name: WorkflowInfo}`` of the catalog.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.services: dict[str, ServiceEntry] = {}
        self.workflows: dict[str, WorkflowInfo] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._watchers: list[Any] = []

    async def start(self) -> None:
        """Start watching; returns once both views hold the buckets' current contents."""
        assert self.registry._services is not None and self.registry._workflows is not None
        ready = [asyncio.Event(), asyncio.Event()]
        self._tasks = [
            asyncio.create_task(
                self._watch(self.registry._services, self.services, _entry_decoder, ready[0]),
                name="jetloom:registry:services",
            ),
            asyncio.create_task(
                self._watch(self.registry._workflows, self.workflows, _info_decoder, ready[1]),
                name="jetloom:registry:workflows",
            ),
        ]
        await asyncio.gather(*(r.wait() for r in ready))

    async def _watch(
        self, kv: KeyValue, into: dict[str, Any], decoder: msgspec.json.Decoder[Any], ready: asyncio.Event
    ) -> None:
        while True:
            try:
                watcher = await kv.watchall()
                self._watchers.append(watcher)
                into.clear()
                async for entry in watcher:
                    if entry is None:
                        ready.set()
                        continue
                    if entry.operation in ("DEL", "PURGE") or not entry.value:
                        into.pop(entry.key, None)
                        continue
                    try:
                        into[entry.key] = decoder.decode(entry.value)
                    except msgspec.DecodeError:
                        logger.warning("registry entry %r does not decode; ignored", entry.key)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("registry watch of %s failed (%s); restarting", kv._name, exc)
                await asyncio.sleep(1.0)

    def serving(self, workflow: str) -> list[ServiceEntry]:
        """Live processes serving ``workflow``."""
        return [e for e in self.services.values() if any(w.name == workflow for w in e.workflows)]

    async def workflow(self, name: str) -> WorkflowInfo | None:
        """The catalog entry of ``name`` (from the view, else straight from the bucket)."""
        info = self.workflows.get(name)
        if info is None:
            info = await self.registry.workflow(name)
        return info

    async def stop(self) -> None:
        for w in self._watchers:
            with contextlib.suppress(Exception):
                await w.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
