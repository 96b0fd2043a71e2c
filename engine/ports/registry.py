"""The ``Registry`` port: who serves which workflow.

Two collections:

- live services, one ``ServiceEntry`` per worker process (key ``<service>.<instance>``), each
  refreshed by its process's heartbeat and gone ``ttl`` seconds after the last one (or at once
  on a clean shutdown);
- the workflow catalog, one ``WorkflowInfo`` per workflow ever served (no expiry), so a run can
  be started, and queued, while no process serves it.

Implementations: ``engine.memory.registry.MemoryRegistry`` and ``engine.jetstream.registry.KvRegistry``
(two KV buckets, ``<prefix>_services`` and ``<prefix>_workflows``). The value types live here, so
the workers that write them, the control plane that reads them and both implementations share
them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

import msgspec

__all__ = [
    "DEFAULT_TTL",
    "Edge",
    "Registry",
    "RegistryView",
    "ServiceEntry",
    "StepInfo",
    "WorkflowInfo",
    "same_membership",
]

DEFAULT_TTL = 10.0  # seconds an entry outlives its last heartbeat


class StepInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One step: the event types it accepts and may emit, and its per-process concurrency."""

    name: str
    accepts: list[str]
    emits: list[str]
    num_workers: int


class Edge(msgspec.Struct, frozen=True, kw_only=True):
    """``source`` emits ``event``, which ``target`` accepts. ``_start`` is where the start event
    comes from, ``_stop`` where a StopEvent goes."""

    source: str
    target: str
    event: str


class WorkflowInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a client needs to drive a workflow without importing it.

    Attributes:
        name: the workflow name (a subject token).
        class_path: ``module:QualName`` of the workflow class.
        start_event: name of its StartEvent class.
        stop_events: names of the StopEvent classes its steps return.
        steps: one ``StepInfo`` per step, in definition order.
        events: ``{event name: JSON schema of its fields}`` (Draft 2020-12, from msgspec; the
            ``$type`` tag is left out, the caller names the type).
        graph: the step graph as edges.
    """

    name: str
    class_path: str
    start_event: str
    stop_events: list[str]
    steps: list[StepInfo]
    events: dict[str, dict[str, Any]]
    graph: list[Edge]

    def accepted_events(self) -> set[str]:
        """Names of the events some step accepts (what may be sent to a run)."""
        return {e for s in self.steps for e in s.accepts}


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
        metrics_port: the port of its Prometheus metrics (``http://<host>:<port>/metrics``;
            ``jetloom worker --metrics-port``), 0 when it serves none.
        handoff_steps: the steps whose first deliveries this process takes as hand-offs from
            other processes (run affinity, ``engine.runtime.affinity``); empty (the default, and
            what an entry written before run affinity decodes to): none, and no run is routed
            to it.
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
    metrics_port: int = 0
    handoff_steps: list[str] = msgspec.field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.service}.{self.instance}"


def same_membership(old: ServiceEntry | None, new: ServiceEntry | None) -> bool:
    """Whether replacing entry ``old`` with ``new`` (``None``: absent) leaves a registry view's
    membership as it was (``RegistryView.generation``): both absent, or the same workflows and
    hand-off steps."""
    if old is None or new is None:
        return old is new
    return old.handoff_steps == new.handoff_steps and [w.name for w in old.workflows] == [
        w.name for w in new.workflows
    ]


class RegistryView(Protocol):
    """A live, in-memory copy of the registry, kept current by the implementation (what the
    control plane reads on every request). Derived state only: a new view rebuilds it.

    Attributes:
        services: ``{key: ServiceEntry}`` of live processes.
        workflows: ``{name: WorkflowInfo}`` of the catalog.
        generation: bumped on every membership change of ``services`` (an entry added or
            removed, or its ``workflows`` or ``handoff_steps`` changed), not on a heartbeat
            that changes nothing else; what is derived from the members is recomputed only
            when it moves (``engine.runtime.affinity.RunAffinity``).
    """

    services: dict[str, ServiceEntry]
    workflows: dict[str, WorkflowInfo]
    generation: int

    def serving(self, workflow: str) -> list[ServiceEntry]:
        """Live processes serving ``workflow``."""
        ...

    async def workflow(self, name: str) -> WorkflowInfo | None:
        """The catalog entry of ``name`` (from the view, else from the registry), or ``None``."""
        ...

    async def stop(self) -> None:
        """Stop keeping the view current."""
        ...


class Registry(Protocol):
    """The service registry and the workflow catalog.

    Writes ride through a leader election of the storage for a bounded time and raise
    ``engine.jetstream.retry.LogUnavailableError`` after it (HTTP answers 503).
    """

    async def put_service(self, entry: ServiceEntry, *, retry_for: timedelta | float | None = None) -> None:
        """Write (or refresh) a process's entry, stamping ``entry.heartbeat_at`` with now; it
        expires ``entry.ttl`` seconds later unless refreshed again. ``retry_for``: how long a
        transient failure is retried (default: the implementation's budget, 20 s on NATS)."""
        ...

    async def remove_service(self, entry: ServiceEntry) -> None:
        """Delete a process's entry (clean shutdown)."""
        ...

    async def put_workflow(self, info: WorkflowInfo) -> None:
        """Record a workflow's description in the catalog (overwrites the previous one)."""
        ...

    async def services(self) -> list[ServiceEntry]:
        """Every live process's entry, sorted by service then instance."""
        ...

    async def workflows(self) -> list[WorkflowInfo]:
        """Every workflow in the catalog, sorted by name."""
        ...

    async def workflow(self, name: str) -> WorkflowInfo | None:
        """The catalog entry of ``name``, or ``None``."""
        ...

    async def view(self) -> RegistryView:
        """A started live view of the registry: it holds the current contents when returned."""
        ...
