"""The ``SessionStore`` port: sessions, runs of one workflow that carry their state from one run to
the next.

A session holds its workflow, the ids of its runs in order, and when it was created. Every change
is a compare-and-set on the session's revision, so two writers adding a run to one session at
once cannot both succeed. Implementations: ``engine.memory.sessions.MemorySessionStore`` and
``engine.jetstream.sessions.KvSessionStore`` (the KV bucket ``<prefix>_sessions``).
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from engine.model.errors import JetloomError

__all__ = ["Session", "SessionConflictError", "SessionNotFoundError", "SessionStore"]


class Session(msgspec.Struct, kw_only=True):
    """One session.

    Attributes:
        id: the session id (32 hex digits unless given).
        workflow: the workflow every run of the session runs.
        runs: the ids of its runs, oldest first.
        created_at: RFC 3339 UTC.
    """

    id: str
    workflow: str
    runs: list[str] = []
    created_at: str = ""


class SessionNotFoundError(JetloomError):
    """No session with that id."""


class SessionConflictError(JetloomError):
    """Another writer changed the session meanwhile (a concurrent run in the same session)."""


class SessionStore(Protocol):
    """Sessions, each under its id, changed by compare-and-set on a revision.

    Every method may raise ``engine.jetstream.retry.LogUnavailableError`` when the storage could
    not serve it within its retry budget (no leader, no responders, timeouts).
    """

    async def create(self, workflow: str, session_id: str | None = None) -> Session:
        """A new, empty session of ``workflow`` (id: ``session_id``, default 32 random hex digits).

        Raises:
            SessionConflictError: ``session_id`` exists already.
        """
        ...

    async def get(self, session_id: str) -> tuple[Session, int]:
        """The session and its revision (a number that grows with every change).

        Raises:
            SessionNotFoundError: no such session (or it was deleted).
        """
        ...

    async def list(self) -> list[Session]:
        """Every session, oldest first (by ``created_at``, then id)."""
        ...

    async def add_run(self, session: Session, revision: int, run_id: str) -> Session:
        """Append ``run_id`` to the session read at ``revision``; returns the updated session.

        Raises:
            SessionConflictError: the session changed since ``revision``.
        """
        ...

    async def delete(self, session_id: str) -> None:
        """Forget the session (its runs stay in the log).

        Raises:
            SessionNotFoundError: no such session.
        """
        ...
