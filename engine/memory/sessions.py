"""``MemorySessionStore``: the ``SessionStore`` port in a dict, for one process."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

from engine.ports.sessions import Session, SessionConflictError, SessionNotFoundError

__all__ = ["MemorySessionStore"]


class MemorySessionStore:
    """Sessions in a dict; the revision is a counter shared by every session (as a KV bucket's
    sequence is), so a deleted and re-created session never repeats a revision."""

    def __init__(self) -> None:
        self._sessions: dict[str, tuple[Session, int]] = {}
        self._revisions = itertools.count(1)

    async def create(self, workflow: str, session_id: str | None = None) -> Session:
        created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        session = Session(id=session_id or uuid.uuid4().hex, workflow=workflow, created_at=created)
        if session.id in self._sessions:
            raise SessionConflictError(f"session {session.id!r} exists already")
        self._sessions[session.id] = (session, next(self._revisions))
        return session

    async def get(self, session_id: str) -> tuple[Session, int]:
        found = self._sessions.get(session_id)
        if found is None:
            raise SessionNotFoundError(f"no session {session_id!r}")
        session, revision = found
        return Session(id=session.id, workflow=session.workflow, runs=list(session.runs), created_at=session.created_at), revision

    async def list(self) -> list[Session]:
        return sorted((s for s, _ in self._sessions.values()), key=lambda s: (s.created_at, s.id))

    async def add_run(self, session: Session, revision: int, run_id: str) -> Session:
        current = self._sessions.get(session.id)
        if current is None or current[1] != revision:
            raise SessionConflictError(f"session {session.id!r} changed meanwhile; retry")
        updated = Session(
            id=session.id, workflow=session.workflow, runs=[*session.runs, run_id], created_at=session.created_at
        )
        self._sessions[session.id] = (updated, next(self._revisions))
        return updated

    async def delete(self, session_id: str) -> None:
        if self._sessions.pop(session_id, None) is None:
            raise SessionNotFoundError(f"no session {session_id!r}")
