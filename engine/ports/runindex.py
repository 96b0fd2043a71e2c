"""The ``RunIndex`` port: the questions about runs the control plane asks across the log (which
runs exist, which workflow a run belongs to, where a run ended), answered from record subjects
without folding every run.

``LogRunIndex`` answers them over any log that can scan subjects (``SubjectScan``): a run is its
``sys.RunStarted`` record; its status comes from the last record of each terminal subject of the
run (``RunCompleted``, ``RunFailed``, ``RunCancelled``, ``StepFailed``) and of its command
subjects. A run not ended is ``waiting`` while one of its ``wait_for_event`` waits is open: a
``sys.StepSuspended`` of kind ``event`` with no ``cmd.<step>`` ``Resume`` of the same
(trigger, step, wait) (the rule of ``RunState.open_event_waits``); only runs whose last records
include a ``sys.StepSuspended`` have theirs read. ``MemoryLog`` and ``JetStreamLog`` both scan
subjects, so one index serves both: the storage-specific part is the scan, which the contract
suite checks on each.

Newest first, the listing pages backward through windows of stream sequences below the cursor
(from the log's last sequence, ``SubjectScan.last_seq``): each window is scanned forward, and the
next, older one is sized from the density of runs seen so far, so a page costs a few scans
whatever the length of the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import orjson

from engine.model.records import RawRecord, Resume, StepSuspended
from engine.state.ending import ENDING_STATUS, FINAL_TYPES
from engine.wire.codec import decode_record
from engine.wire.subjects import SubjectParts, parse_subject

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
RUN_STATUSES = ("running", "waiting", "completed", "failed", "cancelled")


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
        newest_first: bool = False,
    ) -> tuple[list[RunSummary], int | None]:
        """Runs in the order they started (``newest_first``: the reverse), one page.

        Args:
            workflow: only this workflow's runs (default: every workflow).
            status: only runs in this status, one of ``RUN_STATUSES`` (default: any).
            limit: the most runs in the page (default 50).
            cursor: oldest first, runs whose ``RunStarted`` sequence is greater than ``cursor``;
                newest first, runs whose sequence is smaller (0: from the newest).
            newest_first: descending ``RunStarted`` sequence (default ``False``: ascending).

        Returns:
            up to ``limit`` runs, and the cursor of the next page (the ``seq`` of the last run
            returned; ``None`` when there are no more).
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

    async def last_seq(self) -> int:
        """The log's last sequence, of any subject (0 while empty)."""
        ...


SCAN_CHUNK = 512  # records asked for by one scan of a window (newest first)
FIRST_WINDOW = 16  # stream sequences per run the first window of a page assumes, until one is seen
_WAIT_SUBJECT = "StepSuspended"


class LogRunIndex:
    """``RunIndex`` over a log that scans subjects (``MemoryLog``, ``JetStreamLog``).

    Args:
        log: the log.
    """

    def __init__(self, log: SubjectScan) -> None:
        self.log = log
        # stream sequences per run last seen by a newest-first listing, per subject filter: the
        # first window of the next page is sized from it
        self._spacing: dict[str, float] = {}

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
        newest_first: bool = False,
    ) -> tuple[list[RunSummary], int | None]:
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        subject = f"{self.log.prefix}.run.{workflow or '*'}.*.sys.RunStarted"
        if newest_first:
            return await self._newest_first(subject, status, limit, cursor)
        found: list[RunSummary] = []
        page = max(limit, 100) if status else limit
        while True:
            started = await self.log.scan(subject, after_seq=cursor, limit=page)
            for run in await self._summaries(started, status):
                found.append(run)
                if len(found) == limit:
                    return found, run.seq
            if len(started) < page:
                return found, None
            cursor = started[-1].seq

    async def _newest_first(
        self, subject: str, status: str | None, limit: int, cursor: int
    ) -> tuple[list[RunSummary], int | None]:
        """Pages backward: windows ``(low, high]`` of stream sequences below ``cursor``, each
        scanned forward, newest run of each taken first. The first window is sized from the runs
        per sequence the previous listing of ``subject`` saw (``FIRST_WINDOW`` before any), the
        next from those seen so far (four times the last when it held none)."""
        high = cursor - 1 if cursor > 0 else await self.log.last_seq()
        found: list[RunSummary] = []
        seen_runs = seen_span = 0
        window = int(limit * self._spacing.get(subject, FIRST_WINDOW) * 1.25) + 1
        while high > 0:
            low = max(0, high - window)
            started = await self._window(subject, low, high)
            seen_runs += len(started)
            seen_span += high - low
            if seen_runs:
                self._spacing[subject] = seen_span / seen_runs
            started.reverse()
            for i in range(0, len(started), max(limit, 100) if status else limit):
                chunk = started[i : i + (max(limit, 100) if status else limit)]
                for run in await self._summaries(chunk, status):
                    found.append(run)
                    if len(found) == limit:
                        return found, run.seq
            high = low
            # runs per sequence so far (of the status asked for, when filtered) size the next window
            matched = len(found) if status else seen_runs
            if matched:
                window = max(window, int((limit - len(found)) * seen_span / matched * 1.25) + 1)
            else:
                window *= 4
        return found, None

    async def _window(self, subject: str, low: int, high: int) -> list[RawRecord]:
        """The records of ``subject`` with ``low < seq <= high``, in sequence order. A scan
        cannot stop at ``high``: each asks for about as many records as the window should hold
        (from the spacing seen), so that few are read past it."""
        out: list[RawRecord] = []
        after = low
        spacing = self._spacing.get(subject, 1.0)
        while after < high:
            want = min(SCAN_CHUNK, high - after, int((high - after) / spacing * 1.25) + 8)
            got = await self.log.scan(subject, after_seq=after, limit=want)
            for rec in got:
                if rec.seq > high:
                    return out
                out.append(rec)
            if len(got) < want:
                return out
            after = got[-1].seq
        return out

    async def _summaries(self, started: list[RawRecord], status: str | None) -> list[RunSummary]:
        """The runs of ``RunStarted`` records ``started``, in their order, with their status;
        those not in ``status`` left out."""
        runs = [(r, p) for r in started if (p := parse_subject(r.subject)) is not None]
        if not runs:
            return []
        subjects: list[str] = []
        for _, p in runs:
            subjects += self._terminal_subjects(p.workflow, p.run_id)
            subjects.append(f"{self.log.prefix}.run.{p.workflow}.{p.run_id}.sys.{_WAIT_SUBJECT}")
        hits = await self.log.last_per_subject(subjects)
        ends = _status_of(_ends([h for h in hits if not h.subject.endswith(".sys." + _WAIT_SUBJECT)]))
        suspended = {
            p.run_id for h in hits if h.subject.endswith(".sys." + _WAIT_SUBJECT) and (p := parse_subject(h.subject))
        }
        rows: list[tuple[RawRecord, SubjectParts, str, int | None]] = []
        for raw, p in runs:
            st, ended = ends.get(p.run_id, ("running", None))
            if status is None or st == status or (st == "running" and status == "waiting"):
                rows.append((raw, p, st, ended))
        asks = [(i, raw, p) for i, (raw, p, st, _) in enumerate(rows) if st == "running" and p.run_id in suspended]
        if asks:
            # (a run's records follow its RunStarted: its scans start there)
            waits = await asyncio.gather(
                *(self.open_event_waits(p.workflow, p.run_id, after_seq=raw.seq) for _, raw, p in asks)
            )
            for (i, _, _), open_waits in zip(asks, waits, strict=True):
                if open_waits:
                    raw, p, _, ended = rows[i]
                    rows[i] = (raw, p, "waiting", ended)
        return [
            RunSummary(
                run_id=p.run_id,
                workflow=p.workflow,
                status=st,
                started_at=rfc3339(raw.time_ns),
                ended_at=rfc3339(ended),
                seq=raw.seq,
            )
            for raw, p, st, ended in rows
            if status is None or st == status
        ]

    async def open_event_waits(
        self, workflow: str, run_id: str, *, after_seq: int = 0
    ) -> list[tuple[RawRecord, StepSuspended]]:
        """The run's ``wait_for_event`` waits that no ``Resume`` resolved, in the order they were
        recorded: ``(the StepSuspended record, its body)``. From the run's ``sys.StepSuspended``
        and ``cmd.<step>`` records after ``after_seq`` only (the rule of
        ``RunState.open_event_waits``; the run's end is not checked)."""
        base = f"{self.log.prefix}.run.{workflow}.{run_id}."
        suspensions = await self._all(base + "sys." + _WAIT_SUBJECT, after_seq)
        if not suspensions:
            return []
        # (the Resume of a wait is on its step's cmd subject: literal subjects scan cheaply)
        steps = sorted({b.step for r in suspensions if isinstance(b := decode_record(r).body, StepSuspended)})
        commands = [raw for step in steps for raw in await self._all(base + "cmd." + step, after_seq)]
        resolved: set[tuple[int, str, str]] = set()
        for raw in commands:
            body = decode_record(raw).body
            if isinstance(body, Resume) and body.wait is not None:
                resolved.add((body.trigger, body.step, body.wait))
        out: list[tuple[RawRecord, StepSuspended]] = []
        keys: set[tuple[int, str, str]] = set()
        for raw in suspensions:
            body = decode_record(raw).body
            if not isinstance(body, StepSuspended) or body.kind != "event":
                continue
            key = (body.trigger, body.step, body.wait)
            if key not in resolved and key not in keys:
                keys.add(key)
                out.append((raw, body))
        return out

    async def _all(self, subject: str, after_seq: int) -> list[RawRecord]:
        out: list[RawRecord] = []
        while True:
            got = await self.log.scan(subject, after_seq=out[-1].seq if out else after_seq, limit=SCAN_CHUNK)
            out += got
            if len(got) < SCAN_CHUNK:
                return out

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
