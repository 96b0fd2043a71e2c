"""``MemoryRegistry``: the ``Registry`` port in dicts, for one process (tests, ``MemoryBackend``).

A service entry expires ``ttl`` seconds after its last put, as on JetStream: a timer of the event
loop removes it unless a newer put re-arms it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from engine.ports.registry import ServiceEntry, WorkflowInfo, same_membership

__all__ = ["MemoryRegistry"]


class MemoryRegistry:
    """The service registry and workflow catalog in memory; ``view()`` reads its dicts as they
    are, always current.

    Attributes:
        services_by_key: ``{key: ServiceEntry}`` of live processes.
        workflows_by_name: ``{name: WorkflowInfo}`` of the catalog.
        generation: bumped on every membership change (``RegistryView.generation``).
    """

    def __init__(self) -> None:
        self.generation = 0
        self.services_by_key: dict[str, ServiceEntry] = {}
        self.workflows_by_name: dict[str, WorkflowInfo] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}

    async def put_service(self, entry: ServiceEntry, *, retry_for: timedelta | float | None = None) -> None:
        entry.heartbeat_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        key = entry.key
        if not same_membership(self.services_by_key.get(key), entry):
            self.generation += 1
        self.services_by_key[key] = entry
        old = self._expiry.pop(key, None)
        if old is not None:
            old.cancel()
        self._expiry[key] = asyncio.get_running_loop().call_later(entry.ttl, self._expire, key)

    def _expire(self, key: str) -> None:
        self._expiry.pop(key, None)
        if self.services_by_key.pop(key, None) is not None:
            self.generation += 1

    async def remove_service(self, entry: ServiceEntry) -> None:
        handle = self._expiry.pop(entry.key, None)
        if handle is not None:
            handle.cancel()
        if self.services_by_key.pop(entry.key, None) is not None:
            self.generation += 1

    async def put_workflow(self, info: WorkflowInfo) -> None:
        self.workflows_by_name[info.name] = info

    async def services(self) -> list[ServiceEntry]:
        return sorted(self.services_by_key.values(), key=lambda e: (e.service, e.instance))

    async def workflows(self) -> list[WorkflowInfo]:
        return sorted(self.workflows_by_name.values(), key=lambda w: w.name)

    async def workflow(self, name: str) -> WorkflowInfo | None:
        return self.workflows_by_name.get(name)

    async def view(self) -> MemoryRegistryView:
        return MemoryRegistryView(self)


class MemoryRegistryView:
    """The ``RegistryView`` of a ``MemoryRegistry``: its dicts, read as they are (nothing to
    copy or watch in one process)."""

    def __init__(self, registry: MemoryRegistry) -> None:
        self.registry = registry
        self.services = registry.services_by_key
        self.workflows = registry.workflows_by_name

    @property
    def generation(self) -> int:
        return self.registry.generation

    def serving(self, workflow: str) -> list[ServiceEntry]:
        return [e for e in self.services.values() if any(w.name == workflow for w in e.workflows)]

    async def workflow(self, name: str) -> WorkflowInfo | None:
        return self.workflows.get(name)

    async def stop(self) -> None:
        pass
