"""``NatsBackend``: the ``Backend`` port on NATS JetStream. It owns the connection; the log
(``JetStreamLog``), the run index and the KV stores beside the log (snapshots, registry, sessions)
share it.

A process makes one with ``await NatsBackend.connect(settings, prefix=..., name=...)`` and hands
its ports to the engine and its handlers; nothing above ``engine.jetstream`` touches nats-py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar, cast

import nats
from nats.errors import ConnectionClosedError, ConnectionReconnectingError

from engine.jetstream.connection import NatsSettings, connection_closed, open_connection
from engine.jetstream.log import JetStreamLog
from engine.jetstream.registry import KvRegistry
from engine.jetstream.retry import unavailable_reason
from engine.jetstream.sessions import KvSessionStore
from engine.jetstream.snapshots import KvSnapshots
from engine.ports.backend import Readiness
from engine.ports.runindex import LogRunIndex

__all__ = ["NatsBackend", "stream_leader"]

_S = TypeVar("_S")


class NatsBackend:
    """The log, run index and KV stores over one NATS connection.

    Create with ``await NatsBackend.connect(...)`` (or wrap a set-up ``JetStreamLog`` that owns
    its connection: ``NatsBackend(log)``).

    Args:
        log: the log; the backend's connection is the log's (``log.nc``).
        storage: ``"file"`` (default) or ``"memory"``, for KV buckets created here.
    """

    def __init__(self, log: JetStreamLog, *, storage: str = "file") -> None:
        self._log = log
        self._runs = LogRunIndex(log)
        self._storage = storage
        self._stores: dict[str, Any] = {}
        self._opening = asyncio.Lock()

    @classmethod
    async def connect(
        cls,
        servers: str | NatsSettings,
        *,
        prefix: str = "jetloom",
        name: str | None = None,
        **log_options: Any,
    ) -> NatsBackend:
        """Connect (``connection.open_connection``) and set up the run streams
        (``JetStreamLog.setup``); the connection is closed again when set-up fails.

        Args:
            servers: server URL(s), comma-separated, or ``NatsSettings`` (credentials, the
                replicas of the streams and buckets created, start-up attempts).
            prefix: subject, stream and bucket prefix (default ``jetloom``).
            name: the client's name on the server (e.g. ``jetloom-worker``).
            **log_options: further ``JetStreamLog`` options (``ack_wait``, ``commit`` ...;
                ``replicas`` defaults to the settings').

        Raises:
            engine.jetstream.connection.NatsConnectError: NATS unreachable or it refused the
                credentials.
            engine.jetstream.retry.LogUnavailableError: the streams had no leader within the
                log's retry budget.
        """
        settings = servers if isinstance(servers, NatsSettings) else NatsSettings(url=servers)
        log_options.setdefault("replicas", settings.replicas)
        nc = await open_connection(settings, name=name)
        try:
            log = JetStreamLog(nc, prefix=prefix, owns_connection=True, **log_options)
            await log.setup()
        except BaseException:
            await nc.close()
            raise
        return cls(log)

    # ---- the ports ----------------------------------------------------------------------------

    @property
    def log(self) -> JetStreamLog:
        """The event log (``JetStreamLog``)."""
        return self._log

    @property
    def runs(self) -> LogRunIndex:
        """The run index over the log."""
        return self._runs

    async def snapshots(self) -> KvSnapshots:
        """Snapshots in the KV bucket ``<prefix>_snapshots`` (opened at the first call)."""
        return await self._store("snapshots", self._open_snapshots)

    async def registry(self) -> KvRegistry:
        """The registry buckets ``<prefix>_services`` and ``<prefix>_workflows`` (opened at the
        first call)."""
        return await self._store("registry", self._open_registry)

    async def sessions(self) -> KvSessionStore:
        """Sessions in the KV bucket ``<prefix>_sessions`` (opened at the first call)."""
        return await self._store("sessions", self._open_sessions)

    def _open_snapshots(self) -> Awaitable[KvSnapshots]:
        log = self._log
        return KvSnapshots.open(log.nc, prefix=log.prefix, storage=self._storage, replicas=log.replicas)

    def _open_registry(self) -> Awaitable[KvRegistry]:
        log = self._log
        return KvRegistry.open(log.nc, prefix=log.prefix, storage=self._storage, replicas=log.replicas)

    def _open_sessions(self) -> Awaitable[KvSessionStore]:
        log = self._log
        return KvSessionStore.open(log.nc, prefix=log.prefix, storage=self._storage, replicas=log.replicas)

    async def _store(self, key: str, open_: Callable[[], Awaitable[_S]]) -> _S:
        store: _S | None = self._stores.get(key)
        if store is None:
            async with self._opening:  # (two first requests at once open the bucket once)
                store = self._stores.get(key)
                if store is None:
                    store = self._stores[key] = await open_()
        return store

    # ---- the connection -----------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return bool(self._log.nc.is_connected)

    def check_connected(self) -> None:
        """Raise at once when the connection is not up (503 at once, rather than after a
        request's timeout).

        Raises:
            nats.errors.ConnectionClosedError: closed (its owner is rebuilding it).
            nats.errors.ConnectionReconnectingError: reconnecting.
        """
        nc = self._log.nc
        if nc.is_closed:
            raise ConnectionClosedError
        if not nc.is_connected:
            raise ConnectionReconnectingError

    def closed(self) -> asyncio.Future[Exception]:
        """Resolves with ``NatsConnectionClosed`` when nats-py closes the connection for good (a
        server ``-ERR``, expired credentials), or it is closed here.

        Raises:
            KeyError: the log's connection was not opened by ``connection.open_connection`` (a
                backend made by ``connect`` always is).
        """
        return cast("asyncio.Future[Exception]", connection_closed(self._log.nc))

    async def ready(self, timeout: float) -> Readiness:
        """Connected, and the run stream's info (read within ``timeout`` seconds) names a leader;
        on a server that is not clustered, a stream whose info can be read is led by it."""
        log = self._log
        if not log.nc.is_connected:
            return Readiness(ready=False, reason="NATS is not connected", stream=log.stream)
        try:
            async with asyncio.timeout(timeout):
                info = await log.js.stream_info(log.stream)
        except Exception as exc:  # whatever it is, the stream cannot be used now
            reason = unavailable_reason(exc) or f"stream {log.stream}: {type(exc).__name__}: {exc}"
            return Readiness(ready=False, reason=reason, stream=log.stream)
        cluster = info.cluster
        if cluster is not None and cluster.name is not None and not cluster.leader:
            reason = f"stream {log.stream} has no leader (cluster {cluster.name})"
            return Readiness(ready=False, reason=reason, stream=log.stream)
        return Readiness(ready=True, stream=log.stream, leader=cluster.leader if cluster is not None else None)

    async def close(self, *, drain: bool = True) -> None:
        """Close the log and the connection: drained (pending publishes flushed) by default, or
        closed at once with ``drain=False`` (a connection set up part-way)."""
        if drain:
            await self._log.close()
        else:
            await self._log.nc.close()


async def stream_leader(servers: Collection[str], stream: str, among: Collection[str], *, timeout: float) -> str:
    """The name of the server that leads ``stream`` now, waiting up to ``timeout`` seconds while
    it has none or one not in ``among`` (an election); asked over a connection of its own.

    Raises:
        TimeoutError: no leader among ``among`` within ``timeout``.
    """
    nc = await nats.connect(list(servers), connect_timeout=2, max_reconnect_attempts=2, reconnect_time_wait=0.1)
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    info = await nc.jetstream(timeout=2).stream_info(stream)
                    leader = info.cluster.leader if info.cluster else None
                except Exception:  # (an election: no answer, offline, 503)
                    leader = None
                if leader is not None and leader in among:
                    return leader
                await asyncio.sleep(0.1)  # (polling the server's answer, not waiting blind)
    finally:
        await nc.close()
