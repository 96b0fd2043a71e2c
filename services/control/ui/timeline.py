"""A run's records projected into the rows of the run page's timeline: a pure function of the log,
like the fold (``engine.state.fold``), with no clock of its own (times are the log's, the server's
timestamps; ``now_ns`` is given by the caller for bars still open).

One ``Execution`` per step execution: a step on one trigger, one attempt, in one rollback epoch.
The log records when an execution ends (``StepCompleted`` or the event of a one-message commit,
``StepFailed``, ``StepRetrying``) and when it suspends (``StepSuspended``), not when a worker took
it: an execution's ``queued_ns`` is when it became runnable (its trigger event was appended, or
the ``Resume`` of its retry or rerun), and ``ran_ms`` the wall time its code ran as the worker
recorded it (``duration_ms``; absent from suspensions and one-message commits). The page says so
rather than invent a start time.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from engine.model.records import (
    RawRecord,
    Record,
    Resume,
    RolledBack,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunForked,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepRetrying,
    StepSuspended,
    is_one_message_commit,
)
from engine.wire.codec import decode_record
from engine.wire.headers import H_WORKER

__all__ = ["Execution", "Marker", "StepRow", "Timeline", "WaitRow", "build_timeline"]

#: ``Execution.outcome`` values: ended ones, then the open ones.
OUTCOMES = ("completed", "failed", "retrying", "cancelled", "suspended", "running", "unfinished")


class WaitRow(msgspec.Struct, kw_only=True):
    """One wait of an execution (``ctx.wait_for_event``, ``ctx.sleep``, ``ctx.run_workflow``).

    Attributes:
        wait: the wait's id within the execution (``w1``, ``w2``... or the ``waiter_id``).
        kind: ``event``, ``timer`` or ``child``.
        seq / since_ns: sequence and time of its ``StepSuspended`` record.
        event_type: the awaited event's name (event waits), else ``None``.
        requirements: field values the awaited event must have (event waits).
        event_schema: JSON schema of the awaited event's fields (event waits).
        fire_at_ns: when the timer fires or the wait times out, ns since the epoch (``None``: never).
        child_workflow / child_run: the child run a ``child`` wait awaits.
        resolved_ns / resolved_seq: time and sequence of the ``Resume`` that ended the wait
            (``None`` while open).
        resolution: the ``Resume``'s reason (``event``, ``timer``, ``timeout``, ``child``), or
            ``cancelled`` / ``rolled back`` when the run's end or a rollback closed it.
        event_seq: the sequence of the event that answered an event wait.
    """

    wait: str
    kind: str
    seq: int
    since_ns: int
    event_type: str | None = None
    requirements: dict[str, object] = {}
    event_schema: dict[str, object] = {}
    fire_at_ns: int | None = None
    child_workflow: str | None = None
    child_run: str | None = None
    resolved_ns: int | None = None
    resolved_seq: int | None = None
    resolution: str | None = None
    event_seq: int | None = None

    @property
    def open(self) -> bool:
        """Whether nothing has ended the wait yet."""
        return self.resolution is None


class Execution(msgspec.Struct, kw_only=True):
    """One execution of a step: a trigger, an attempt, a rollback epoch.

    Attributes:
        step / trigger / attempt: which (``attempt`` is 1-based).
        epoch: rollbacks of the run before it began (0 before any).
        queued_seq / queued_ns: the record that made it runnable (its trigger, or the ``Resume`` of
            a retry, retry-from-failure or rollback) and that record's time.
        queued_by: ``trigger``, ``retry``, ``manual`` (retry from failure) or ``rollback``.
        end_seq / ended_ns: the record that ended it (``None`` while open).
        outcome: one of ``OUTCOMES``: ``completed``, ``failed``, ``retrying`` (this attempt failed
            and another is scheduled), ``cancelled`` (the run was cancelled while it was open),
            ``suspended`` (an open wait), ``running`` (runnable, nothing recorded yet),
            ``unfinished`` (the run ended otherwise while it was open).
        worker: ``host:pid`` that recorded its end ("" when not recorded).
        ran_ms: wall time its code ran, as recorded with its end (``None`` when not recorded).
        error_type / message: why it failed or is retried.
        retry_at_ns / retry_delay_ms: when the next attempt is due (``retrying``).
        handled_by: the error handler step a failure went to.
        emitted: the events it emitted (``completed``).
        waits: its waits, in order.
        rolled_back: a rollback undid what it recorded (the records stay in the log).
    """

    step: str
    trigger: int
    attempt: int
    epoch: int
    queued_seq: int
    queued_ns: int
    queued_by: str = "trigger"
    end_seq: int | None = None
    ended_ns: int | None = None
    outcome: str = "running"
    worker: str = ""
    ran_ms: float | None = None
    error_type: str | None = None
    message: str | None = None
    retry_at_ns: int | None = None
    retry_delay_ms: float | None = None
    handled_by: str | None = None
    emitted: list[str] = []
    waits: list[WaitRow] = []
    rolled_back: bool = False

    @property
    def open(self) -> bool:
        """Whether no record has ended it."""
        return self.end_seq is None and self.outcome in ("running", "suspended")


class Marker(msgspec.Struct, kw_only=True):
    """A run-level point of the timeline.

    Attributes:
        kind: ``started``, ``completed``, ``failed``, ``cancelled``, ``rollback``, ``forked``
            (the copied prefix of a fork ends), ``timeout`` (the run's timeout is due).
        seq: its record's sequence (``None`` for a due time, which has no record).
        time_ns: when it happened, or is due.
        label: a short description.
        rolled_back: a later rollback undid it.
    """

    kind: str
    time_ns: int
    label: str
    seq: int | None = None
    rolled_back: bool = False


class StepRow(msgspec.Struct, kw_only=True):
    """The executions of one step, in the order they became runnable."""

    step: str
    executions: list[Execution]


class Timeline(msgspec.Struct, kw_only=True):
    """A run's timeline.

    Attributes:
        workflow / run_id: the run.
        start_ns: time of its first record (0 for a run with no records).
        end_ns: time of its last record, or ``now_ns`` while the run has open executions or has
            not ended, whichever is later.
        ended: whether the run has ended (a rollback may reopen it).
        rows: one per step, in the order steps first ran.
        markers: run-level points, in sequence order.
        last_seq: the last sequence projected (0 for none).
    """

    workflow: str
    run_id: str
    start_ns: int
    end_ns: int
    ended: bool
    rows: list[StepRow]
    markers: list[Marker]
    last_seq: int

    @property
    def executions(self) -> list[Execution]:
        """Every execution, in the order they became runnable."""
        return sorted((e for r in self.rows for e in r.executions), key=lambda e: (e.queued_seq, e.step))

    def position(self, ns: int | None) -> float:
        """Where time ``ns`` falls on the timeline, as a percentage of its span (0 to 100;
        ``None`` and a zero span give 100)."""
        span = self.end_ns - self.start_ns
        if ns is None or span <= 0:
            return 100.0
        return min(100.0, max(0.0, (ns - self.start_ns) * 100.0 / span))


class _Builder:
    def __init__(self, workflow: str, run_id: str) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.times: dict[int, int] = {}
        self.rows: dict[str, list[Execution]] = {}
        self.current: dict[tuple[str, int], Execution] = {}
        self.markers: list[Marker] = []
        self.epoch = 0
        self.ended: Marker | None = None
        self.last_seq = 0
        self.first_ns = 0
        self.last_ns = 0

    # ---- executions -------------------------------------------------------------------------------

    def _new(self, step: str, trigger: int, attempt: int, seq: int, ns: int, by: str) -> Execution:
        ex = Execution(
            step=step,
            trigger=trigger,
            attempt=max(1, attempt),
            epoch=self.epoch,
            queued_seq=seq,
            queued_ns=ns,
            queued_by=by,
        )
        self.rows.setdefault(step, []).append(ex)
        self.current[(step, trigger)] = ex
        return ex

    def _execution(self, step: str, trigger: int, attempt: int | None) -> Execution:
        """The execution a record of ``step`` on ``trigger`` (at ``attempt`` when known) belongs
        to: the open one, else a new one queued at its trigger's time."""
        ex = self.current.get((step, trigger))
        if ex is not None and ex.epoch == self.epoch and ex.end_seq is None:
            if attempt is None or ex.attempt == attempt:
                return ex
        if attempt is None:
            attempt = ex.attempt + 1 if ex is not None and ex.outcome == "retrying" else 1
        by = "trigger" if ex is None else ("retry" if ex.outcome == "retrying" else "rollback")
        queued = self.times.get(trigger)
        seq, ns = (trigger, queued) if queued is not None and ex is None else (self.last_seq, self.last_ns)
        return self._new(step, trigger, attempt, seq, ns, by)

    def _end(self, ex: Execution, outcome: str, seq: int, ns: int, worker: str = "") -> None:
        ex.outcome = outcome
        ex.end_seq = seq
        ex.ended_ns = ns
        if worker:
            ex.worker = worker

    # ---- records ----------------------------------------------------------------------------------

    def add(self, raw: RawRecord) -> None:
        rec = decode_record(raw, typed=False)
        seq, ns = raw.seq, raw.time_ns
        self.times[seq] = ns
        self.last_seq = seq
        self.last_ns = ns
        if not self.first_ns:
            self.first_ns = ns
        body = rec.body
        if rec.kind == "cmd" and isinstance(body, Resume):
            self._resume(body, seq, ns)
        elif rec.kind == "sys":
            self._sys(rec, body, seq, ns, raw)
        elif rec.step is not None and rec.trigger is not None and is_one_message_commit(
            rec.kind, rec.type, rec.commit, rec.step
        ):
            self._completed(rec.step, rec.trigger, None, seq, ns, raw.headers.get(H_WORKER, ""), None, [rec.type])

    def _completed(
        self,
        step: str,
        trigger: int,
        attempt: int | None,
        seq: int,
        ns: int,
        worker: str,
        ran_ms: float | None,
        emitted: list[str],
    ) -> None:
        ex = self.current.get((step, trigger))
        if ex is not None and ex.outcome == "completed" and ex.epoch == self.epoch:
            return  # a repeat of a commit already in the log (the fold drops it too)
        ex = self._execution(step, trigger, attempt)
        ex.ran_ms = ran_ms
        ex.emitted = emitted
        self._end(ex, "completed", seq, ns, worker)

    def _sys(self, rec: Record, body: object, seq: int, ns: int, raw: RawRecord) -> None:
        if isinstance(body, RunStarted):
            label = f"started ({body.start_event})"
            if body.forked_from:
                label += f", a fork of {body.forked_from} at seq {body.forked_at}"
            self.markers.append(Marker(kind="started", seq=seq, time_ns=ns, label=label))
            if body.timeout_at_ns:
                self.markers.append(Marker(kind="timeout", time_ns=body.timeout_at_ns, label="run timeout due"))
        elif isinstance(body, StepCompleted):
            kinds = [m.type for m in body.messages if m.kind == "sys"]
            emitted = body.emitted + kinds
            self._completed(body.step, body.trigger, body.attempt, seq, ns, body.worker, body.duration_ms, emitted)
        elif isinstance(body, StepRetrying):
            ex = self._execution(body.step, body.trigger, body.attempt)
            ex.ran_ms = body.duration_ms
            ex.error_type, ex.message = body.error_type, body.message
            ex.retry_at_ns = body.retry_at_ns or None
            ex.retry_delay_ms = body.delay_ms
            self._end(ex, "retrying", seq, ns, body.worker)
        elif isinstance(body, StepFailed):
            ex = self._execution(body.step, body.trigger, body.attempt)
            ex.ran_ms = body.duration_ms
            ex.error_type, ex.message = body.error_type, body.message
            ex.handled_by = body.handled_by or None
            self._end(ex, "failed", seq, ns, body.worker)
            if not body.handled_by:
                self._run_end("failed", f"failed: step {body.step} raised {body.error_type}", seq, ns)
        elif isinstance(body, StepSuspended):
            ex = self._execution(body.step, body.trigger, body.attempt)
            ex.outcome = "suspended"
            ex.waits.append(
                WaitRow(
                    wait=body.wait,
                    kind=body.kind,
                    seq=seq,
                    since_ns=ns,
                    event_type=body.event_type,
                    requirements=dict(body.requirements),
                    event_schema=dict(body.event_schema),
                    fire_at_ns=body.fire_at_ns or None,
                    child_workflow=body.child_workflow,
                    child_run=body.child_run,
                )
            )
        elif isinstance(body, RunCompleted):
            self._run_end("completed", f"completed ({body.event_type})", seq, ns)
        elif isinstance(body, RunFailed):
            self._run_end("failed", f"failed: {body.error_type}: {body.message}", seq, ns)
        elif isinstance(body, RunCancelled):
            self._run_end("cancelled", "cancelled" + (f": {body.reason}" if body.reason else ""), seq, ns)
        elif isinstance(body, RolledBack):
            self._rollback(body, seq, ns)
        elif isinstance(body, RunForked):
            label = f"fork copied {body.records} records of {body.from_run} up to seq {body.at_seq}"
            self.markers.append(Marker(kind="forked", seq=seq, time_ns=ns, label=label))

    def _resume(self, body: Resume, seq: int, ns: int) -> None:
        if body.reason in ("retry", "manual", "rollback"):
            if body.reason == "manual" and self.ended is not None and self.ended.kind == "failed":
                self.ended = None  # retry-from-failure reopens the run (its end marker stays)
            prev = self.current.get((body.step, body.trigger))
            attempt = body.attempt or (prev.attempt if prev is not None and body.reason == "rollback" else 1)
            if prev is not None and prev.open and prev.epoch == self.epoch and prev.attempt == attempt:
                return  # already open (a repeated command)
            self._new(body.step, body.trigger, attempt, seq, ns, body.reason)
            return
        ex = self.current.get((body.step, body.trigger))
        if ex is None:
            return
        for w in ex.waits:
            if w.wait == body.wait and w.open:
                w.resolved_ns, w.resolved_seq, w.resolution = ns, seq, body.reason
                w.event_seq = body.event.seq if body.event is not None else None
                break
        if ex.outcome == "suspended" and not any(w.open for w in ex.waits):
            ex.outcome = "running"

    def _run_end(self, kind: str, label: str, seq: int, ns: int) -> None:
        if self.ended is not None:
            return  # the first record that ends a run wins
        self.ended = Marker(kind=kind, seq=seq, time_ns=ns, label=label)
        self.markers.append(self.ended)
        for ex in self.current.values():
            if ex.open:
                closing = "cancelled" if kind == "cancelled" else "unfinished"
                for w in ex.waits:
                    if w.open:
                        w.resolved_ns, w.resolved_seq, w.resolution = ns, seq, closing
                self._end(ex, closing, seq, ns)

    def _rollback(self, body: RolledBack, seq: int, ns: int) -> None:
        undone = range(body.to_seq + 1, seq)
        for executions in self.rows.values():
            for ex in executions:
                if ex.end_seq in undone or (ex.open and ex.epoch == self.epoch):
                    ex.rolled_back = True
                    if ex.open:
                        for w in ex.waits:
                            if w.open:
                                w.resolved_ns, w.resolved_seq, w.resolution = ns, seq, "rolled back"
                        self._end(ex, "unfinished", seq, ns)
        for m in self.markers:
            if m.seq is not None and m.seq in undone:
                m.rolled_back = True
        if self.ended is not None and self.ended.seq in undone:
            self.ended = None  # the rollback reopens the run
        self.epoch = body.epoch
        label = f"rolled back to seq {body.to_seq}" + (f": {body.reason}" if body.reason else "")
        self.markers.append(Marker(kind="rollback", seq=seq, time_ns=ns, label=label))

    def build(self, now_ns: int | None) -> Timeline:
        ended = self.ended is not None
        end = self.last_ns
        if not ended and now_ns is not None:
            end = max(end, now_ns)
        markers = sorted(self.markers, key=lambda m: (m.seq is None, m.seq or 0, m.time_ns))
        if ended:  # a timeout due after the run ended is no point of it
            markers = [m for m in markers if not (m.kind == "timeout" and m.time_ns > end)]
        rows = [StepRow(step=step, executions=exs) for step, exs in self.rows.items()]
        return Timeline(
            workflow=self.workflow,
            run_id=self.run_id,
            start_ns=self.first_ns,
            end_ns=end,
            ended=ended,
            rows=rows,
            markers=markers,
            last_seq=self.last_seq,
        )


def build_timeline(
    workflow: str, run_id: str, records: Iterable[RawRecord], *, now_ns: int | None = None
) -> Timeline:
    """Project a run's records (``EventLog.read``, in sequence order) into its timeline.

    Args:
        workflow: the run's workflow name.
        run_id: the run's id.
        records: every record of the run, oldest first.
        now_ns: the current time (ns since the epoch), to which the bars of a run that has not
            ended extend; ``None`` ends the timeline at the last record.

    Returns:
        The ``Timeline``; records that do not decode are skipped, as the fold skips them.
    """
    b = _Builder(workflow, run_id)
    for raw in records:
        b.add(raw)
    return b.build(now_ns)
