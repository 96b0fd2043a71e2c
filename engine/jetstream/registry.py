"""``KvRegistry``: the ``Registry`` port in two JetStream KV buckets.

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
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from engine.jetstream.kv import current_values, open_bucket
from engine.jetstream.retry import DEFAULT_RETRY_FOR, retrying
from engine.ports.registry import ServiceEntry, WorkflowInfo, same_membership

__all__ = ["MARKER_TTL", "KvRegistry", "KvRegistryView"]

logger = logging.getLogger("jetloom.registry")

MARKER_TTL = 60.0  # seconds the server keeps the delete marker of an expired entry

_entry_decoder = msgspec.json.Decoder(ServiceEntry)
_info_decoder = msgspec.json.Decoder(WorkflowInfo)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class KvRegistry:
    """The registry buckets over one NATS connection. Create with ``await KvRegistry.open(nc)``.

    Args:
        nc: the connection (heartbeats are publishes with a per-message TTL).
        services: the ``<prefix>_services`` bucket.
        workflows: the ``<prefix>_workflows`` bucket.
        prefix: the bucket name prefix they were opened with.
    """

    def __init__(self, nc: NATS, services: KeyValue, workflows: KeyValue, *, prefix: str = "jetloom") -> None:
        self._services = services
        self._workflows = workflows
        self._js = nc.jetstream()
        self.services_bucket = f"{prefix}_services"
        self.workflows_bucket = f"{prefix}_workflows"

    @classmethod
    async def open(
        cls, nc: NATS, *, prefix: str = "jetloom", storage: str = "file", replicas: int = 1
    ) -> KvRegistry:
        """Create the buckets if missing and return the registry.

        Args:
            nc: a connected nats-py client.
            prefix: bucket name prefix (default ``jetloom``).
            storage: ``"file"`` (default) or ``"memory"``, for new buckets.
            replicas: replicas of new buckets (default 1).

        Raises:
            engine.jetstream.retry.LogUnavailableError: no leader for a bucket within the budget.
        """
        services = await open_bucket(
            nc, f"{prefix}_services", storage=storage, replicas=replicas, limit_marker_ttl=MARKER_TTL
        )
        workflows = await open_bucket(
            nc, f"{prefix}_workflows", storage=storage, replicas=replicas, limit_marker_ttl=None
        )
        return cls(nc, services, workflows, prefix=prefix)

    # ---- writes (workers) ------------------------------------------------------------------

    async def put_service(self, entry: ServiceEntry, *, retry_for: timedelta | float | None = None) -> None:
        """Write (or refresh) a process's entry; it expires ``entry.ttl`` seconds later unless
        refreshed again (a per-message TTL). Retried through a leader election for ``retry_for``
        (default 20 s; a put overwrites itself, so a repeat is harmless).

        Raises:
            engine.jetstream.retry.LogUnavailableError: not stored within ``retry_for``.
        """
        entry.heartbeat_at = _now()
        data = msgspec.json.encode(entry)
        await retrying(
            f"registry heartbeat of {entry.key}",
            lambda: self._js.publish(f"$KV.{self.services_bucket}.{entry.key}", data, msg_ttl=entry.ttl),
            retry_for=DEFAULT_RETRY_FOR if retry_for is None else retry_for,
        )

    async def remove_service(self, entry: ServiceEntry) -> None:
        services = self._services
        await retrying(f"registry removal of {entry.key}", lambda: services.delete(entry.key), retry_for=5.0)

    async def put_workflow(self, info: WorkflowInfo) -> None:
        workflows = self._workflows
        data = msgspec.json.encode(info)
        await retrying(f"catalog entry of {info.name}", lambda: workflows.put(info.name, data))

    # ---- reads (control plane, CLI) --------------------------------------------------------

    async def services(self) -> list[ServiceEntry]:
        out: list[ServiceEntry] = []
        for value in await current_values(self._services):
            with contextlib.suppress(msgspec.DecodeError):
                out.append(_entry_decoder.decode(value))
        return sorted(out, key=lambda e: (e.service, e.instance))

    async def workflows(self) -> list[WorkflowInfo]:
        out: list[WorkflowInfo] = []
        for value in await current_values(self._workflows):
            with contextlib.suppress(msgspec.DecodeError):
                out.append(_info_decoder.decode(value))
        return sorted(out, key=lambda w: w.name)

    async def workflow(self, name: str) -> WorkflowInfo | None:
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

    async def view(self) -> KvRegistryView:
        """A started ``KvRegistryView`` of both buckets."""
        view = KvRegistryView(self)
        await view.start()
        return view


class KvRegistryView:
    """A live, in-memory view of both buckets, kept current by two KV watchers (what the control
    plane reads on every request). Derived state only: a new view rebuilds it from the buckets.

    Attributes:
        services: ``{key: ServiceEntry}`` of live processes.
        workflows: ``{name: WorkflowInfo}`` of the catalog.
        generation: bumped on every membership change of ``services`` (``RegistryView``).
    """

    def __init__(self, registry: KvRegistry) -> None:
        self.registry = registry
        self.generation = 0
        self.services: dict[str, ServiceEntry] = {}
        self.workflows: dict[str, WorkflowInfo] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._watchers: list[Any] = []

    async def start(self) -> None:
        """Start watching; returns once both views hold the buckets' current contents."""
        ready = [asyncio.Event(), asyncio.Event()]
        self._tasks = [
            asyncio.create_task(
                self._watch(self.registry._services, self.registry.services_bucket, self.services, _entry_decoder, ready[0]),
                name="jetloom:registry:services",
            ),
            asyncio.create_task(
                self._watch(self.registry._workflows, self.registry.workflows_bucket, self.workflows, _info_decoder, ready[1]),
                name="jetloom:registry:workflows",
            ),
        ]
        await asyncio.gather(*(r.wait() for r in ready))

    async def _watch(
        self,
        kv: KeyValue,
        what: str,
        into: dict[str, Any],
        decoder: msgspec.json.Decoder[Any],
        ready: asyncio.Event,
    ) -> None:
        while True:
            try:
                watcher = await kv.watchall()
                self._watchers.append(watcher)
                into.clear()
                self.generation += 1
                async for entry in watcher:
                    if entry is None:
                        ready.set()
                        continue
                    if entry.operation in ("DEL", "PURGE") or not entry.value:
                        if into.pop(entry.key, None) is not None:
                            self.generation += 1
                        continue
                    try:
                        value = decoder.decode(entry.value)
                        old = into.get(entry.key)
                        into[entry.key] = value
                        if isinstance(value, ServiceEntry) and not same_membership(old, value):
                            self.generation += 1
                    except msgspec.DecodeError:
                        logger.warning("registry entry %r does not decode; ignored", entry.key)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("registry watch of %s failed (%s); restarting", what, exc)
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
