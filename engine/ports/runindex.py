"""The ``RunIndex`` port: the questions about runs the control plane asks across the log (which
runs exist, which workflow a run belongs to, where a run ended), answered from record subjects
without folding every run.

``LogRunIndex`` answers them over any log that can scan subjects (``SubjectScan``): a run is its
``sys.RunStarted`` record; its status comes from the last record of each terminal subject of the
run (``RunCompleted``, ``RunFailed``, ``RunCancelled``, ``StepFailed``) and of its command
subjects. ``MemoryLog`` and ``JetStreamLog`` both scan subjects, so one index serves both: the
storage-specific part is the scan, which the contract suite checks on each.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import orjson

from engine.model.records import RawRecord
from engine.state.ending import ENDING_STATUS, FINAL_TYPES
from engine.wire.subjects import parse_subject

__all__ = [
    "RUN_STATUSES",
    "TERMINAL_TYPES",
    "LogRunIndex",
    "RunIndex",
    "RunSummary",
    "SubjectScan",
    "rfc3339",
]

TERMINAL_TYPES = FINAL_TYPES  # (a StepFailed ends a run unless handled or retried: see _ends)
RUN_STATUSES = ("running", "completed", "failed", "cancelled")


def rfc3339(ns: int | None) -> str | None:
    """Nanoseconds since the epoch → ``2026-11-21T10:00:00.123456Z`` (``None`` stays ``None``)."""
    if ns is None:
        return None
    dt = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


class RunSummary(msgspec.Struct, kw_only=True):
    """One run in a listing (``GET /runs``).

    Attributes:
        run_id / workflow: the run.
        status: one of ``RUN_STATUSES``.
        started_at / ended_at: RFC 3339 UTC (``ended_at`` ``None`` while running).
        seq: log sequence of the run's ``RunStarted`` (the listing's cursor).
    """

    run_id: str
    workflow: str
    status: str
    started_at: str | None
    ended_at: str | None = None
    seq: int = 0


class RunIndex(Protocol):
    """Run listings and look-ups across the log."""

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: int = 0,
    ) -> tuple[list[RunSummary], int | None]:
        """Runs in the order they started, after log sequence ``cursor``.

        Returns:
            up to ``limit`` runs (filtered by ``workflow`` and ``status``, one of
            ``RUN_STATUSES``), and the cursor of the next page (``None`` when there are no more).
        """
        ...

    async def find_workflow(self, run_id: str) -> str | None:
        """The workflow of run ``run_id``, or ``None`` if no such run was ever started."""
        ...

    async def terminal_seq(self, workflow: str, run_id: str) -> int | None:
        """Sequence of the record that ended the run (the earliest terminal one), or ``None``
        while it runs. Terminal records that the run's last ``sys.RolledBack`` undid do not count."""
        ...


class SubjectScan(Protocol):
    """What ``LogRunIndex`` needs of a log: records found by subject."""

    prefix: str

    async def scan(self, subject_filter: str, *, after_seq: int = 0, limit: int = 1000) -> list[RawRecord]:
        """Up to ``limit`` records matching ``subject_filter`` (NATS wildcards ``*`` and ``>``)
        with ``seq > after_seq``, in sequence order."""
        ...

    async def last_per_subject(self, subject_filters: Sequence[str]) -> list[RawRecord]:
        """The last record of every subject matching any of ``subject_filters``, in sequence
        order."""
        ...


class LogRunIndex:
    """``RunIndex`` over a log that scans subjects (``MemoryLog``, ``JetStreamLog``).

    Args:
        log: the log.
    """

    def __init__(self, log: SubjectScan) -> None:
        self.log = log

    def _terminal_subjects(self, workflow: str, run_id: str) -> list[str]:
        base = f"{self.log.prefix}.run.{workflow}.{run_id}."
        # cmd.*: a retry-from-failure after a StepFailed reopens the run (engine.runtime.recovery)
        return [base + "sys." + t for t in (*TERMINAL_TYPES, "StepFailed")] + [base + "cmd.*"]

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: int = 0,
    ) -> tuple[list[RunSummary], int | None]:
        subject = f"{self.log.prefix}.run.{workflow or '*'}.*.sys.RunStarted"
        found: list[RunSummary] = []
        page = max(limit, 100) if status else limit
        while True:
            started = await self.log.scan(subject, after_seq=cursor, limit=page)
            runs = [(r, p) for r in started if (p := parse_subject(r.subject)) is not None]
            ends = _status_of(
                _ends(
                    await self.log.last_per_subject(
                        [s for _, p in runs for s in self._terminal_subjects(p.workflow, p.run_id)]
                    )
                )
            )
            for raw, p in runs:
                cursor = raw.seq
                st, ended = ends.get(p.run_id, ("running", None))
                if status is not None and st != status:
                    continue
                found.append(
                    RunSummary(
                        run_id=p.run_id,
                        workflow=p.workflow,
                        status=st,
                        started_at=rfc3339(raw.time_ns),
                        ended_at=rfc3339(ended),
                        seq=raw.seq,
                    )
                )
                if len(found) == limit:
                    return found, cursor
            if len(started) < page:
                return found, None

    async def find_workflow(self, run_id: str) -> str | None:
        hits = await self.log.scan(f"{self.log.prefix}.run.*.{run_id}.sys.RunStarted", limit=1)
        if not hits:
            return None
        parts = parse_subject(hits[0].subject)
        return parts.workflow if parts is not None else None

    async def terminal_seq(self, workflow: str, run_id: str) -> int | None:
        marker_subject = f"{self.log.prefix}.run.{workflow}.{run_id}.sys.RolledBack"
        hits = await self.log.last_per_subject([*self._terminal_subjects(workflow, run_id), marker_subject])
        marker = next((h for h in reversed(hits) if h.subject == marker_subject), None)
        ends = _ends([h for h in hits if h.subject != marker_subject])
        if marker is not None:
            to_seq = msgspec.json.decode(marker.data).get("to_seq", 0)
            ends = [h for h in ends if h.seq > marker.seq or h.seq <= to_seq]
        return ends[0].seq if ends else None


def _json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}  # (an undecodable body is an end, as a body without ``handled_by``)


def _ends(hits: list[RawRecord]) -> list[RawRecord]:
    """The terminal records among ``hits`` (last records per terminal and command subject, in
    sequence order): a ``StepFailed`` handled by a ``@catch_error`` step, or followed by a retry of
    its step, ends nothing."""
    out: list[RawRecord] = []
    for i, h in enumerate(hits):
        parts = parse_subject(h.subject)
        if parts is None or parts.kind == "cmd":
            continue
        if parts.type == "StepFailed":
            body = _json(h.data)
            step = body.get("step") if isinstance(body, dict) else None
            if not isinstance(body, dict) or body.get("handled_by"):
                continue
            if any(_reopens(later, parts.run_id, step) for later in hits[i + 1 :]):
                continue
        out.append(h)
    return out


def _reopens(raw: RawRecord, run_id: str, step: str | None) -> bool:
    parts = parse_subject(raw.subject)
    if parts is None or parts.kind != "cmd" or parts.run_id != run_id or parts.type != step:
        return False
    body = _json(raw.data)
    return isinstance(body, dict) and body.get("reason") in ("manual", "retry")


def _status_of(records: list[RawRecord]) -> dict[str, tuple[str, int]]:
    """``{run_id: (status, time_ns)}`` from the last terminal records per subject (the earliest
    of a run's terminal records decides, as in the fold)."""
    out: dict[str, tuple[str, int]] = {}
    for raw in records:  # sorted by seq
        parts = parse_subject(raw.subject)
        if parts is None or parts.run_id in out:
            continue
        out[parts.run_id] = (ENDING_STATUS.get(parts.type, "failed"), raw.time_ns)
    return out
