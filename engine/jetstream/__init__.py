"""The NATS JetStream implementations of the ports: the event log, snapshots, registry and
sessions in KV buckets, and the backend that owns the connection they share. The only package of
the engine that imports nats-py."""

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.jetstream.backend import NatsBackend
    from engine.jetstream.connection import (
        DEFAULT_URL,
        NatsConnectError,
        NatsConnectionClosed,
        NatsSettings,
        open_connection,
    )
    from engine.jetstream.log import JetStreamLog
    from engine.jetstream.registry import KvRegistry
    from engine.jetstream.retry import LogUnavailableError
    from engine.jetstream.sessions import KvSessionStore
    from engine.jetstream.snapshots import KvSnapshots
else:  # (imported on first use: engine._lazy)
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "engine.jetstream.backend": ("NatsBackend",),
            "engine.jetstream.connection": (
                "DEFAULT_URL",
                "NatsConnectError",
                "NatsConnectionClosed",
                "NatsSettings",
                "open_connection",
            ),
            "engine.jetstream.log": ("JetStreamLog",),
            "engine.jetstream.registry": ("KvRegistry",),
            "engine.jetstream.retry": ("LogUnavailableError",),
            "engine.jetstream.sessions": ("KvSessionStore",),
            "engine.jetstream.snapshots": ("KvSnapshots",),
        },
    )

__all__ = [
    "DEFAULT_URL",
    "JetStreamLog",
    "KvRegistry",
    "KvSessionStore",
    "KvSnapshots",
    "LogUnavailableError",
    "NatsBackend",
    "NatsConnectError",
    "NatsConnectionClosed",
    "NatsSettings",
    "open_connection",
]
