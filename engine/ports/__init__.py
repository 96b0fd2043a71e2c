"""The storage ports (Protocols) the runtime depends on; ``engine.memory`` and
``engine.jetstream`` implement them."""

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
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
else:  # (imported on first use: engine._lazy)
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "engine.ports.backend": ("Backend", "Readiness"),
            "engine.ports.log": (
                "AppendResult",
                "DeadLetter",
                "Delivery",
                "EventLog",
                "Followers",
                "event_consumers",
                "hand_over",
            ),
            "engine.ports.registry": (
                "DEFAULT_TTL",
                "Edge",
                "Registry",
                "RegistryView",
                "ServiceEntry",
                "StepInfo",
                "WorkflowInfo",
            ),
            "engine.ports.runindex": (
                "RUN_STATUSES",
                "TERMINAL_TYPES",
                "LogRunIndex",
                "RunIndex",
                "RunSummary",
                "SubjectScan",
                "rfc3339",
            ),
            "engine.ports.sessions": (
                "Session",
                "SessionConflictError",
                "SessionNotFoundError",
                "SessionStore",
            ),
            "engine.ports.snapshots": ("SnapshotStore",),
        },
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
