"""The storage ports (Protocols) the runtime depends on; ``engine.memory`` and
``engine.jetstream`` implement them."""

from engine.ports.backend import (
    Backend,
    Readiness,
)
from engine.ports.log import (
    AppendResult,
    DeadLetter,
    Delivery,
    EventLog,
    Followers,
    event_consumers,
    hand_over,
)
from engine.ports.registry import (
    DEFAULT_TTL,
    Edge,
    Registry,
    RegistryView,
    ServiceEntry,
    StepInfo,
    WorkflowInfo,
)
from engine.ports.runindex import (
    RUN_STATUSES,
    TERMINAL_TYPES,
    LogRunIndex,
    RunIndex,
    RunSummary,
    SubjectScan,
    rfc3339,
)
from engine.ports.sessions import (
    Session,
    SessionConflictError,
    SessionNotFoundError,
    SessionStore,
)
from engine.ports.snapshots import (
    SnapshotStore,
)

__all__ = [
    "AppendResult",
    "Backend",
    "DEFAULT_TTL",
    "DeadLetter",
    "Delivery",
    "Edge",
    "EventLog",
    "Followers",
    "LogRunIndex",
    "RUN_STATUSES",
    "Readiness",
    "Registry",
    "RegistryView",
    "RunIndex",
    "RunSummary",
    "ServiceEntry",
    "Session",
    "SessionConflictError",
    "SessionNotFoundError",
    "SessionStore",
    "SnapshotStore",
    "StepInfo",
    "SubjectScan",
    "TERMINAL_TYPES",
    "WorkflowInfo",
    "event_consumers",
    "hand_over",
    "rfc3339",
]
