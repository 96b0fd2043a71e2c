"""``KvSessionStore``: the ``SessionStore`` port in the JetStream KV bucket ``<prefix>_sessions``
(key = session id, value = the ``Session`` as JSON, revision = the entry's KV revision).

Every KV request rides through a leader election of the bucket (``engine.jetstream.retry.retrying``:
bounded, with backoff) and raises ``LogUnavailableError`` after the budget, which the control
plane answers with 503 and ``Retry-After``. A compare-and-set whose first attempt was stored but
not acknowledged is refused on its retry (the revision moved); it counts as done when the entry
holds exactly what it wrote.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import msgspec
from nats.aio.client import Client as NATS
from nats.js.errors import (
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue

from engine.jetstream.kv import current_values, open_bucket
from engine.jetstream.retry import DEFAULT_RETRY_FOR, retrying
from engine.ports.sessions import Session, SessionConflictError, SessionNotFoundError

__all__ = ["KvSessionStore"]

_decoder = msgspec.json.Decoder(Session)


class KvSessionStore:
    """Sessions in a KV bucket. Create with ``await KvSessionStore.open(nc)``.

    Every method raises ``engine.jetstream.retry.LogUnavailableError`` when the bucket could not serve
    it within the retry budget (no leader, no responders, timeouts).

    Args:
        kv: the bucket.
        retry_for: how long each request is retried through transient failures (``timedelta``
            or seconds; default 20 s, ``engine.jetstream.retry.DEFAULT_RETRY_FOR``).
    """

    def __init__(self, kv: KeyValue, *, retry_for: timedelta | float = DEFAULT_RETRY_FOR) -> None:
        self.kv = kv
        self.retry_for = retry_for

    @classmethod
    async def open(
        cls, nc: NATS, *, prefix: str = "jetloom", storage: str = "file", replicas: int = 1
    ) -> KvSessionStore:
        """The bucket ``<prefix>_sessions``, created if missing with ``replicas`` replicas."""
        kv = await open_bucket(nc, f"{prefix}_sessions", storage=storage, replicas=replicas)
        return cls(kv)

    async def create(self, workflow: str, session_id: str | None = None) -> Session:
        created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        session = Session(id=session_id or uuid.uuid4().hex, workflow=workflow, created_at=created)
        data = msgspec.json.encode(session)
        try:
            await self._cas(f"session create of {session.id}", lambda: self.kv.create(session.id, data), session.id, data)
        except KeyWrongLastSequenceError:
            raise SessionConflictError(f"session {session.id!r} exists already") from None
        return session

    async def get(self, session_id: str) -> tuple[Session, int]:
        try:
            entry = await retrying(
                f"session get of {session_id}", lambda: self.kv.get(session_id), retry_for=self.retry_for
            )
        except (KeyNotFoundError, ValueError):  # ValueError: not a valid key
            raise SessionNotFoundError(f"no session {session_id!r}") from None
        if not entry.value:
            raise SessionNotFoundError(f"no session {session_id!r}")
        return _decoder.decode(entry.value), entry.revision or 0

    async def list(self) -> list[Session]:
        out = []
        for value in await retrying("session list", lambda: current_values(self.kv), retry_for=self.retry_for):
            with contextlib.suppress(msgspec.DecodeError):
                out.append(_decoder.decode(value))
        return sorted(out, key=lambda s: (s.created_at, s.id))

    async def add_run(self, session: Session, revision: int, run_id: str) -> Session:
        updated = Session(
            id=session.id, workflow=session.workflow, runs=[*session.runs, run_id], created_at=session.created_at
        )
        data = msgspec.json.encode(updated)
        try:
            await self._cas(
                f"session update of {session.id}",
                lambda: self.kv.update(session.id, data, last=revision),
                session.id,
                data,
            )
        except KeyWrongLastSequenceError:
            raise SessionConflictError(f"session {session.id!r} changed meanwhile; retry") from None
        return updated

    async def delete(self, session_id: str) -> None:
        await self.get(session_id)
        await retrying(f"session purge of {session_id}", lambda: self.kv.purge(session_id), retry_for=self.retry_for)

    async def _cas(self, what: str, call: Callable[[], Awaitable[object]], key: str, data: bytes) -> None:
        """A compare-and-set ``call`` retried through transient failures; a refusal on a retry
        (``KeyWrongLastSequenceError``) is a success when the entry holds ``data``: an earlier
        attempt was stored and only its acknowledgement was lost."""
        attempts = 0

        async def attempt() -> object:
            nonlocal attempts
            attempts += 1
            try:
                return await call()
            except KeyWrongLastSequenceError:
                if attempts == 1:
                    raise
                with contextlib.suppress(KeyNotFoundError):
                    if (await self.kv.get(key)).value == data:
                        return None
                raise

        await retrying(what, attempt, retry_for=self.retry_for)
