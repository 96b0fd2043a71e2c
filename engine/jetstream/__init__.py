"""The NATS JetStream implementations of the ports: the event log, snapshots in a KV bucket, and
the connection they share. The only package of the engine that imports nats-py."""

from engine.jetstream.connection import (
    DEFAULT_URL,
    NatsConnectError,
    NatsConnectionClosed,
    NatsSettings,
    open_connection,
)
from engine.jetstream.log import JetStreamLog
from engine.jetstream.retry import LogUnavailableError
from engine.jetstream.snapshots import KvSnapshots

__all__ = [
    "DEFAULT_URL",
    "JetStreamLog",
    "KvSnapshots",
    "LogUnavailableError",
    "NatsConnectError",
    "NatsConnectionClosed",
    "NatsSettings",
    "open_connection",
]
