"""``Executor``: runs a workflow's steps as consumers of the log.

For each step, one loop takes deliveries from the step's durable consumer (shared by every process
that runs the step) and handles up to ``num_workers`` at once. Handling a trigger is:

1. decode it (a message that does not decode goes to the dead-letter subject, and the loop goes on);
2. bring the run's fold up to date from the log; if the log already holds this step's completion
   for the trigger (a redelivery after a crash), complete that commit if a crash interrupted it,
   ack and stop; skip the trigger if the run has ended;
3. call the step with a ``Context`` showing the run as of the trigger's sequence;
4. append its completion record and its effects, sent at once, as one ordered idempotent commit
   (key ``<run_id>:<trigger_seq>:<step>``, protocol in ``engine.wire.commit``), and only then ack the
   trigger.

A crash anywhere before the ack redelivers the trigger. If the completion record had been stored,
the redelivery finds it and appends whatever part of that commit is missing from the copy the
record carries; if another execution's completion got there first, this one's commit does not
count: whatever of it was stored is an orphan the fold leaves out. So the run holds each step's
completion once, with exactly the messages of one execution.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import traceback as tb
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from engine.model.errors import (
    CommitTooLargeError,
    LastSeqMismatchError,
    LogError,
    WorkflowVersionError,
)
from engine.model.events import (
    Event,
    StopEvent,
    class_path,
    encode_checked,
    encode_event,
    event_fields,
    event_name,
)
from engine.model.records import (
    H_CLASS,
    H_LENGTH,
    H_RUN,
    H_STEP,
    H_TARGET,
    H_TRIGGER,
    H_TYPE,
    DeadLetterRef,
    OutMessage,
    RawRecord,
    Record,
    Resume,
    RunCompleted,
    RunFailed,
    StepCompleted,
    StepFailed,
    StepRetrying,
    commit_key,
    run_subject,
)
from engine.model.retry import StepTimeoutError
from engine.ports.log import AppendResult, Delivery, EventLog, event_consumers
from engine.ports.snapshots import SnapshotStore
from engine.runtime import children
from engine.runtime.context import Context
from engine.runtime.failures import Failed, attempt_key, run_of
from engine.runtime.recovery import end_run_timeout
from engine.runtime.replay import check as check_version
from engine.runtime.runs import CachedRun, HistoryNeeded, RunCache
from engine.runtime.waits import Suspend, resolve_waits, resume_message
from engine.state.snapshots import DEFAULT_SNAPSHOT_EVERY
from engine.wire.codec import decode_record, encode
from engine.wire.commit import complete_commit, copy_of, one_message_commit, tag_commit

if TYPE_CHECKING:
    from engine.workflow import StepSpec, Workflow

__all__ = ["Executor", "ExecutorStats", "commit_id"]

logger = logging.getLogger("jetloom.executor")

RETRY_DELAY = timedelta(seconds=1)  # nak delay after an infrastructure error (log unreachable)
FORK_DELAY = timedelta(milliseconds=100)  # nak delay while a fork's prefix is still being copied
MAX_CANCELLED = 4096  # ended run ids remembered per executor (older ones: the fold decides)
# The terminal records that come from outside this process's steps (a cancel, a run timeout, a
# dead letter, a version mismatch): seeing one stops the run's steps in flight here.
_ENDS_FROM_OUTSIDE = ("RunCancelled", "RunFailed")


commit_id = commit_key  # the idempotency key of a step's commit for one trigger

_ENDS_RUN = frozenset({"RunCompleted", "StepFailed"})  # records of a commit that end the run


def _length(headers: dict[str, str]) -> int | None:
    """The run's log length an event's ``Jl-Length`` header gives, if it has a valid one."""
    value = headers.get(H_LENGTH)
    return int(value) if value is not None and value.isdigit() else None


DEAD_LETTER_ATTEMPTS = 5  # checked appends of a dead letter's RunFailed before an unchecked one


@dataclass
class ExecutorStats:
    """Counters of one executor (since it started).

    Attributes:
        handled: triggers whose step ran and committed (completed or failed).
        failed: of those, steps that raised.
        skipped: triggers acked without running (run ended, already handled, other target).
        duplicates: commits the log dropped as duplicates.
        dead_lettered: messages moved to the dead-letter subject.
        retried: deliveries nak'ed after an infrastructure error.
        repaired: messages of interrupted commits appended again from their copy.
        suspended: step executions that stopped to wait (``wait_for_event``, ``sleep``).
        resumed: ``Resume`` commands handled (a wait ended; the step ran again).
        retries: failed attempts recorded as ``StepRetrying`` (another attempt scheduled).
        cancelled: step executions stopped, or commits dropped, because their run had ended
            (cancelled, timed out, or ended by another record meanwhile).
    """

    handled: int = 0
    failed: int = 0
    skipped: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retried: int = 0
    repaired: int = 0
    suspended: int = 0
    resumed: int = 0
    retries: int = 0
    cancelled: int = 0


class Executor:
    """Runs the steps of one workflow instance against an event log.

    Args:
        workflow: the workflow instance whose step methods are called.
        log: the event log (memory or JetStream).
        steps: names of the steps to run here (default: all).
        max_cached_runs: folded runs kept in memory (default 1024).
        worker_id: recorded on every completion (default ``<hostname>:<pid>``).
        num_workers: concurrent triggers per step in this process, overriding each step's
            ``num_workers`` (default: the step's own).
        snapshots: where run snapshots are kept (default: none; ``engine.state.snapshots``).
        snapshot_every: records a run folds between two snapshots (default 1,000).
    """

    def __init__(
        self,
        workflow: Workflow,
        log: EventLog,
        *,
        steps: Iterable[str] | None = None,
        max_cached_runs: int = 1024,
        worker_id: str | None = None,
        num_workers: int | None = None,
        snapshots: SnapshotStore | None = None,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    ) -> None:
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        cls = type(workflow)
        self.num_workers = num_workers
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.workflow = workflow
        self.name = cls.workflow_name
        self.log = log
        self.specs = [cls.steps[s] for s in (steps if steps is not None else cls.steps)]
        self.events = cls.events
        self.runs = RunCache(
            log,
            self.name,
            self.events,
            max_runs=max_cached_runs,
            snapshots=snapshots,
            snapshot_every=snapshot_every,
        )
        self.stats = ExecutorStats()
        self._loops: list[asyncio.Task[None]] = []
        # task -> (its run id, its delivery)
        self._inflight: dict[asyncio.Task[None], tuple[str | None, Delivery]] = {}
        self._settling: set[asyncio.Task[None]] = set()  # acks of tasks cancelled before they ran
        self._hosted: dict[str, Executor] = {}  # child workflows run in this process
        # runs known ended from outside -> the sequence of the record that ended it (oldest first, bounded)
        self._cancelled: dict[str, int] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}  # per step: executions at once here

    async def start(self) -> None:
        """Create the step consumers (idempotent) and start consuming."""
        for spec in self.specs:
            await self.log.ensure_consumer(self.name, spec.name, spec.accepts_names)
        for spec in self.specs:
            # Triggers come through a consumer per accepted event type and resumes through one
            # more; one limit per step in this process keeps the step's executions at
            # num_workers, as when they shared one consumer.
            self._slots[spec.name] = asyncio.Semaphore(self._limit(spec))
            for source, event_type in event_consumers(spec.accepts_names):
                self._loops.append(
                    asyncio.create_task(self._loop(spec, event_type=source), name=f"jetloom:{spec.name}:{event_type}")
                )
            self._loops.append(
                asyncio.create_task(self._loop(spec, commands=True), name=f"jetloom:{spec.name}:commands")
            )
        self._loops.append(asyncio.create_task(self._watch_ends(), name="jetloom:ends"))

    async def stop(self, *, grace: float = 5.0) -> None:
        """Stop taking deliveries; give in-flight steps ``grace`` seconds, then cancel them
        (their triggers are redelivered to another process)."""
        for t in self._loops:
            t.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for hosted in self._hosted.values():
            await hosted.stop(grace=grace)
        self._hosted.clear()

    def _limit(self, spec: StepSpec) -> int:
        return self.num_workers or spec.num_workers

    async def _loop(self, spec: StepSpec, *, commands: bool = False, event_type: str | None = None) -> None:
        while True:
            try:
                deliveries = self.log.consume(
                    self.name,
                    spec.name,
                    max_in_flight=self._limit(spec),
                    commands=commands,
                    event_type=event_type,
                    dispatch=lambda delivery: self._dispatch(spec, delivery),
                )
                async with contextlib.aclosing(deliveries):  # type: ignore[type-var]
                    async for delivery in deliveries:
                        self._dispatch(spec, delivery)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("consumer loop of step %r failed; restarting in 1s", spec.name)
                await asyncio.sleep(1.0)

    def _dispatch(self, spec: StepSpec, delivery: Delivery) -> None:
        task = asyncio.create_task(self._handle(spec, delivery))
        self._inflight[task] = (run_of(delivery.record.subject), delivery)
        task.add_done_callback(self._settled)

    async def _handle(self, spec: StepSpec, delivery: Delivery) -> None:
        async with self._slots[spec.name]:
            await self._handle_one(spec, delivery)

    async def _handle_one(self, spec: StepSpec, delivery: Delivery) -> None:
        try:
            try:
                await self._process(spec, delivery)
            except HistoryNeeded as need:  # loaded from a snapshot that is too recent: whole log
                self.runs.reload_full(need.run_id)
                await self._process(spec, delivery)
        except HistoryNeeded as need:
            self.stats.retried += 1
            logger.warning("step %r: %s; trigger will be redelivered", spec.name, need)
            await delivery.nak(RETRY_DELAY)
        except asyncio.CancelledError:
            if run_of(delivery.record.subject) not in self._cancelled:
                raise
            # the run was cancelled (not this process stopped): settle the trigger, nothing to redo
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            self.stats.cancelled += 1
            await delivery.ack()
        except (LogError, OSError, TimeoutError, ConnectionError) as exc:
            self.stats.retried += 1
            logger.warning("step %r: log error %r; trigger will be redelivered", spec.name, exc)
            await delivery.nak(RETRY_DELAY)
        except Exception:
            self.stats.retried += 1
            logger.exception("step %r: internal error; trigger will be redelivered", spec.name)
            await delivery.nak(RETRY_DELAY)

    async def _dead_letter(self, spec: StepSpec, delivery: Delivery, reason: str, *, fails_run: bool = False) -> None:
        """Move the delivery's message to the dead-letter subject and settle it. With
        ``fails_run`` (a trigger of a run that no step can ever take: it does not decode), the
        run fails with ``DeadLetteredError`` too, rather than waiting for it forever."""
        raw = delivery.record
        await self.log.dead_letter(raw, reason=reason, consumer=spec.name)
        self.stats.dead_lettered += 1
        logger.warning("dead-lettered seq %d (%s) from step %r: %s", raw.seq, raw.subject, spec.name, reason)
        if fails_run:
            await self._fail_dead_lettered(spec, raw, reason)
        await delivery.term()

    async def _fail_dead_lettered(self, spec: StepSpec, raw: RawRecord, reason: str) -> None:
        """Append the ``RunFailed(DeadLetteredError)`` of a run whose trigger ``raw`` was
        dead-lettered, once per message (its idempotency key is the message's run and sequence;
        after the log's duplicate window the fold, which keeps the first terminal record, decides),
        and not to a run that has ended or never started."""
        run_id = run_of(raw.subject)
        if run_id is None:
            return
        ref = DeadLetterRef(subject=raw.subject, seq=raw.seq, step=spec.name, reason=reason)
        failed = RunFailed(
            error_type="DeadLetteredError",
            message=f"trigger {raw.subject} (seq {raw.seq}) of step {spec.name!r} was dead-lettered: {reason}",
            dead_letter=ref,
        )
        msg = self._sys(run_id, "RunFailed", failed, {H_RUN: run_id, H_STEP: spec.name, H_TRIGGER: str(raw.seq)})
        key = f"{run_id}:dead-letter:{raw.seq}"
        # With the run check, so that two dead letters of one run handled at once (in two
        # processes) end it once: the second sees the first's RunFailed and stops.
        for _ in range(DEAD_LETTER_ATTEMPTS):
            run = await self.runs.get(run_id, min_seq=raw.seq, refresh=True)
            if run.state.terminal or run.state.status == "pending":
                return
            try:
                await self.log.append([msg], idempotency_key=key, expected_last_seq=run.last_seq)
                break
            except LastSeqMismatchError:
                continue  # the run moved on meanwhile: look again
        else:  # a run this busy: append unchecked; the fold keeps the first terminal record
            await self.log.append([msg], idempotency_key=key)
        self.runs.forget(run_id)
        await self._report_end(run_id)

    async def _process(self, spec: StepSpec, delivery: Delivery) -> None:
        raw = delivery.record
        rec = decode_record(raw, self.events)
        if rec.error is not None:
            await self._dead_letter(spec, delivery, rec.error, fails_run=rec.kind in ("evt", "cmd"))
            return
        if rec.kind == "cmd" and rec.workflow == self.name and rec.type == spec.name:
            await self._resume(spec, delivery, rec)
            return
        if rec.kind != "evt" or rec.workflow != self.name or rec.type not in spec.accepts_names:
            await self._dead_letter(spec, delivery, f"step {spec.name!r} does not accept {raw.subject}")
            return
        if rec.target is not None and rec.target != spec.name:
            self.stats.skipped += 1
            await delivery.ack()
            return
        run = await self.runs.get(
            rec.run_id,
            min_seq=raw.seq,
            refresh=delivery.attempt > 1,
            trigger=rec,
            length=_length(raw.headers) if delivery.attempt == 1 else None,
            delivered=raw if delivery.attempt == 1 else None,
        )
        st = run.state
        if st.status == "pending":
            await self._dead_letter(spec, delivery, f"run {rec.run_id} has no RunStarted record")
            return
        if raw.seq in st.orphans:  # another execution's output whose commit did not stand
            self.stats.skipped += 1
            await delivery.ack()
            return
        if not await self._admit(spec, delivery, run, rec):
            return
        key = attempt_key(rec.run_id, raw.seq, spec.name, st.attempt_of(raw.seq, spec.name), st.epoch)
        if (raw.seq, spec.name) in st.done or st.terminal:
            if key in st.incomplete:  # (only a completed step has a commit to complete)
                await self._complete(rec.run_id, key)
            # a crash may have come between a child's end and its report, or its timeout's removal
            await children.notify_parent(self.log, st)
            if st.terminal:
                await end_run_timeout(self.log, st)
            self.stats.skipped += 1
            await delivery.ack()
            return
        pending = st.retrying.get((raw.seq, spec.name))
        if pending is not None:  # redelivered while the next attempt waits: make sure it is set
            await self._schedule_retry(rec.run_id, pending, st.epoch)
            self.stats.skipped += 1
            await delivery.ack()
            return
        await self._execute(spec, delivery, run, rec.run_id, raw.seq, rec.body)

    async def _resume(self, spec: StepSpec, delivery: Delivery, rec: Record) -> None:
        """A wait of the step ended (``cmd.<step>``): run the step again on its trigger."""
        body = rec.body
        if not isinstance(body, Resume) or body.step != spec.name:
            await self._dead_letter(spec, delivery, f"not a Resume for step {spec.name!r}", fails_run=True)
            return
        run = await self.runs.get(rec.run_id, min_seq=rec.seq, refresh=True, trigger=rec)
        st = run.state
        if not await self._admit(spec, delivery, run, rec):
            return
        stale = body.attempt and body.attempt != st.attempt_of(body.trigger, spec.name)
        if st.terminal or (body.trigger, spec.name) in st.done or stale:
            self.stats.skipped += 1
            await delivery.ack()
            return
        event = run.event(body.trigger)
        if event is None:
            await self._dead_letter(
                spec, delivery, f"trigger {body.trigger} of {rec.run_id} not in its log", fails_run=True
            )
            return
        self.stats.resumed += 1
        await children.cancel_timed_out_child(self.log, st, body)
        await self._execute(spec, delivery, run, rec.run_id, body.trigger, event)

    async def _admit(self, spec: StepSpec, delivery: Delivery, run: CachedRun, rec: Record) -> bool:
        """Whether the delivery may go on: not while the run is a fork still being copied (nak),
        not for a record a rollback undid (ack), and not when this workflow class does not match
        the run's log (the run fails with ``WorkflowVersionError``; checked on first load)."""
        st = run.state
        if st.forking:
            await delivery.nak(FORK_DELAY)
            return False
        if st.rollbacks and (st.excluded(rec.seq) or (rec.trigger is not None and st.excluded(rec.trigger))):
            self.stats.skipped += 1
            await delivery.ack()
            return False
        if not run.version_checked:
            run.version_checked = True
            try:
                check_version(type(self.workflow), run.records, run_id=rec.run_id)
            except WorkflowVersionError as exc:
                logger.error("%s", exc)
                if not st.terminal:
                    failed = RunFailed(error_type="engine.model.errors.WorkflowVersionError", message=str(exc))
                    msg = self._sys(rec.run_id, "RunFailed", failed, {H_RUN: rec.run_id})
                    await self.log.append([msg], idempotency_key=f"{rec.run_id}:version")
                    self.runs.forget(rec.run_id)
                    await self._report_end(rec.run_id)
                self.stats.skipped += 1
                await delivery.ack()
                return False
        return True

    async def _execute(
        self, spec: StepSpec, delivery: Delivery, run: CachedRun, run_id: str, seq: int, event: Event
    ) -> None:
        """Run the step on trigger ``seq`` and commit what it did (or record that it waits, or
        that it fails and will be tried again)."""
        epoch = run.state.epoch
        attempt = run.state.attempt_of(seq, spec.name)
        key = attempt_key(run_id, seq, spec.name, attempt, epoch)
        outcome: list[OutMessage] | Suspend | Failed | None = None
        ended_at = self._cancelled.get(run_id)
        if ended_at is not None and not run.state.terminal and run.state.rollbacks and run.state.rollbacks[-1][1] > ended_at:
            del self._cancelled[run_id]  # rolled back to before its end since: it runs again
        if run_id not in self._cancelled:
            outcome = await self._run_step(spec, run, run_id, seq, event, attempt, epoch)
        if run_id in self._cancelled:  # cancelled meanwhile: nothing of the run commits
            self.stats.cancelled += 1
            await delivery.ack()
            return
        if isinstance(outcome, Suspend):
            await self._suspend(spec, run_id, seq, outcome, epoch)
            await delivery.ack()
            return
        if isinstance(outcome, Failed):
            outcome = await self._failed(spec, run, run_id, seq, event, attempt, outcome)
            if outcome is None:  # another attempt is scheduled
                await delivery.ack()
                return
        assert outcome is not None
        messages = outcome
        try:
            result = await self._commit(run, messages, key)
        except CommitTooLargeError as exc:
            self.stats.failed += 1
            failed = self._failure(spec, run_id, seq, attempt, exc, time.perf_counter())
            messages = [failed]
            result = await self.log.append(messages, idempotency_key=key)
        if result is None:  # the run ended while the step ran: nothing of it commits
            self.stats.cancelled += 1
            await delivery.ack()
            return
        if result.duplicate:
            # Another execution's completion stands; make sure its commit is whole.
            self.stats.duplicates += 1
            await self._complete(run_id, key)
        elif messages and run.state.waits:
            await self._resolve_if_awaited(run, run_id, messages)
        st = run.state
        if (st.parent is not None or st.timeout_at_ns or children.awaited_children(st)) and any(
            m.headers.get(H_TYPE) in _ENDS_RUN for m in messages
        ):
            await self._report_end(run_id)
        await delivery.ack()

    async def _report_end(self, run_id: str) -> None:
        """A commit ending a child run, a run with children or a run with a timeout was made (or
        a ``RunFailed`` appended here): resume the parent's waiting step; cancel the children
        still awaited; remove the pending timeout schedule, so it appends nothing after the end."""
        run = await self.runs.get(run_id, min_seq=0, refresh=True)
        await children.notify_parent(self.log, run.state)
        if run.state.terminal:
            await children.cancel_children(self.log, run.state, f"parent run {run_id} {run.state.status}")
            await end_run_timeout(self.log, run.state)

    async def _resolve_if_awaited(self, run: CachedRun, run_id: str, messages: list[OutMessage]) -> None:
        awaited = {w.event_type for _, w in run.state.open_event_waits()}
        emitted = {m.headers.get(H_TYPE) for m in messages if ".evt." in m.subject}
        if awaited & emitted:
            await resolve_waits(self.log, self.name, run_id)

    async def _suspend(self, spec: StepSpec, run_id: str, seq: int, susp: Suspend, epoch: int = 0) -> None:
        """Record that the step waits; set its timer; and if the awaited event is already in the
        log, resume it at once."""
        rec = susp.record
        key = f"{commit_id(run_id, seq, spec.name, epoch)}:{rec.wait}"
        base = {H_RUN: run_id, H_STEP: spec.name, H_TRIGGER: str(seq)}
        if susp.waiter_event is not None:
            ev = susp.waiter_event
            name = event_name(type(ev))
            headers = {**base, H_TYPE: name, H_CLASS: class_path(type(ev))}
            out = OutMessage(run_subject(self.log.prefix, self.name, run_id, "out", name), encode_event(ev), headers)
            await self.log.append([out], idempotency_key=f"{key}:out")
        await self.log.append([self._sys(run_id, "StepSuspended", rec, base)], idempotency_key=key)
        if rec.fire_at_ns:
            resume = Resume(
                step=spec.name,
                trigger=seq,
                reason="timer" if rec.kind == "timer" else "timeout",
                wait=rec.wait,
            )
            await self.log.schedule(
                resume_message(self.log.prefix, self.name, run_id, resume),
                at_ns=rec.fire_at_ns,
                name=f"{seq}-{spec.name}-{rec.wait}",
                idempotency_key=f"{key}:timer",
            )
        if isinstance(susp, children.ChildSuspend):
            if susp.host is not None:
                await self._host(susp.host)
            await children.start_child(self.log, self.name, run_id, susp)
        self.runs.forget(run_id)  # appended without the cache: read the run afresh next time
        self.stats.suspended += 1
        if rec.kind == "event":
            await resolve_waits(self.log, self.name, run_id)

    async def _host(self, cls: type[Workflow]) -> None:
        """Serve the child workflow ``cls`` in this process too (once), on the same log."""
        name = cls.workflow_name
        if name == self.name or name in self._hosted:
            return
        hosted = self._hosted[name] = Executor(cls(), self.log, worker_id=self.worker_id)
        await hosted.start()

    async def _commit(self, run: CachedRun, messages: list[OutMessage], key: str) -> AppendResult | None:
        """Append a commit; ``None`` when it was not made because the run has ended.

        While this process is the run's only writer, the commit is made with the check that the
        run ends where the cache does, and the cache then takes the commit from the acks: the next
        step of the run here needs no read. The check is also what keeps a commit from landing
        after the run's terminal record (a run timeout the server fired, a cancel, a parallel
        step's end): refused, the commit reads the run, and stops there if it has ended."""
        run_id = run.state.run_id
        if run_id in self._cancelled:
            return None
        if self.log.atomic or run.contended:
            return await self.log.append(messages, idempotency_key=key)
        expected = run.last_seq
        try:
            result = await self.log.append(messages, idempotency_key=key, expected_last_seq=expected)
        except LastSeqMismatchError:
            # The head was refused, and what was sent with it stored as orphans under this
            # execution's ids. Unless the run has ended meanwhile, send again as another execution.
            fresh = await self.runs.get(run_id, min_seq=0, refresh=True)
            if fresh.state.terminal or run_id in self._cancelled:
                return None
            run.contended = fresh.contended = True
            return await self.log.append(tag_commit(messages, key), idempotency_key=key)
        if not result.duplicate:
            run.advance_own(expected, result.seqs, messages, self.events)
            if run.state.terminal:
                self.runs.ended(run.state.run_id)
        return result

    async def _complete(self, run_id: str, key: str) -> None:
        """Complete commit ``key`` from the copy in its first record, reading the run's log to
        the end first so that only messages still missing are appended."""
        run = await self.runs.get(run_id, min_seq=0, refresh=True)
        repaired = await complete_commit(self.log, run.state, key)
        if repaired:
            self.stats.repaired += repaired
            logger.warning("completed interrupted commit %s: %d message(s) appended", key, repaired)

    async def _run_step(
        self, spec: StepSpec, run: CachedRun, run_id: str, seq: int, event: Event, attempt: int, epoch: int = 0
    ) -> list[OutMessage] | Suspend | Failed:
        ctx = Context(
            run_id=run_id,
            step=spec.name,
            trigger_seq=seq,
            state=run.state_at(seq),
            collector=lambda expected: run.collect(spec.name, expected, seq),
            known_events=self.events,
            run=run.state,
            attempt=attempt,
        )
        kwargs: dict[str, Any] = {spec.event_param: event}
        if spec.ctx_param is not None:
            kwargs[spec.ctx_param] = ctx
        t0 = time.perf_counter()
        try:
            returned = await self._call(spec, kwargs)
            if returned is not None and not isinstance(returned, Event):
                raise TypeError(
                    f"step {spec.name!r} returned {type(returned).__name__}; "
                    "a step returns an Event or None"
                )
            messages = self._success(spec, ctx, run_id, seq, attempt, returned, t0, epoch, run.state.records)
        except asyncio.CancelledError:
            raise
        except Suspend as susp:
            return susp
        except Exception as exc:
            self.stats.failed += 1
            self.stats.handled += 1
            return Failed(exc, t0)
        self.stats.handled += 1
        return messages

    async def _call(self, spec: StepSpec, kwargs: dict[str, Any]) -> Any:
        """Call the step's function, within its ``timeout`` (``StepTimeoutError`` past it)."""
        if spec.timeout is None:  # (no timeout context: it cost ≈ 1.5 % of a worker's CPU)
            if spec.is_async:
                return await spec.fn(self.workflow, **kwargs)
            return await asyncio.to_thread(spec.fn, self.workflow, **kwargs)
        cm = asyncio.timeout(spec.timeout)
        try:
            async with cm:
                if spec.is_async:
                    return await spec.fn(self.workflow, **kwargs)
                return await asyncio.to_thread(spec.fn, self.workflow, **kwargs)
        except TimeoutError as exc:
            if cm.expired():
                raise StepTimeoutError(
                    f"step {spec.name!r} ran longer than its timeout of {spec.timeout}s"
                ) from exc
            raise

    def _success(
        self,
        spec: StepSpec,
        ctx: Context,
        run_id: str,
        seq: int,
        attempt: int,
        returned: Event | None,
        t0: float,
        epoch: int = 0,
        length: int = 0,
    ) -> list[OutMessage]:
        prefix = self.log.prefix
        base = {H_RUN: run_id, H_STEP: spec.name, H_TRIGGER: str(seq)}
        length_now = str(length)
        emitted = list(ctx.emitted)
        if returned is not None:
            if not isinstance(returned, StopEvent) and event_name(type(returned)) not in self.events:
                raise ValueError(f"no step of this workflow accepts {event_name(type(returned))}")
            emitted.append((returned, None))
        out: list[OutMessage] = []
        stop: StopEvent | None = None
        names: list[str] = []
        for ev, target in emitted:
            if isinstance(ev, StopEvent):
                stop = stop or ev
                continue
            name = event_name(type(ev))
            names.append(name)
            headers = {**base, H_TYPE: name, H_LENGTH: length_now}
            if target is not None:
                headers[H_TARGET] = target
            # (checked against its type: a wrong-typed field fails this step, not its consumer)
            out.append(OutMessage(run_subject(prefix, self.name, run_id, "evt", name), encode_checked(ev), headers))
        for ev in ctx.streamed:
            name = event_name(type(ev))
            headers = {**base, H_TYPE: name, H_CLASS: class_path(type(ev))}
            out.append(OutMessage(run_subject(prefix, self.name, run_id, "out", name), encode_checked(ev), headers))
        if stop is not None:
            completed = RunCompleted(
                step=spec.name, trigger=seq, event_type=event_name(type(stop)), event=event_fields(stop)
            )
            out.append(self._sys(run_id, "RunCompleted", completed, base))
        key = attempt_key(run_id, seq, spec.name, attempt, epoch)
        if len(out) == 1 and not ctx.streamed and attempt == 1 and not ctx.store._changes and not ctx.consumed:
            # The common step (one event out, or the run's end, and nothing else): a one-message
            # commit, that record as its own head (engine.wire.commit); the fold reads the completion
            # from it.
            return [one_message_commit(out[0], key, self.worker_id)]
        done = StepCompleted(
            step=spec.name,
            trigger=seq,
            attempt=attempt,
            emitted=names,
            state=ctx.store._changes,
            consumed=ctx.consumed,
            duration_ms=(time.perf_counter() - t0) * 1e3,
            worker=self.worker_id,
            messages=copy_of(out, base) if out and not self.log.atomic else [],
        )
        # The completion record goes first: the state it sets and the events it consumed are then
        # in the prefix every emitted event's handler sees.
        out.insert(0, self._sys(run_id, "StepCompleted", done, base))
        return tag_commit(out, key, pipelined=not self.log.atomic)

    def _failure(
        self, spec: StepSpec, run_id: str, seq: int, attempt: int, exc: BaseException, t0: float
    ) -> OutMessage:
        cls = type(exc)
        failed = StepFailed(
            step=spec.name,
            trigger=seq,
            attempt=attempt,
            error_type=f"{cls.__module__}.{cls.__qualname__}",
            message=str(exc),
            traceback="".join(tb.format_exception(exc)),
            duration_ms=(time.perf_counter() - t0) * 1e3,
            worker=self.worker_id,
        )
        base = {H_RUN: run_id, H_STEP: spec.name, H_TRIGGER: str(seq)}
        return self._sys(run_id, "StepFailed", failed, base)

    # ---- failures: retries, the error handler, cancellation (engine.runtime.failures) ------------------

    async def _failed(
        self, spec: StepSpec, run: CachedRun, run_id: str, seq: int, event: Event, attempt: int, failed: Failed
    ) -> list[OutMessage] | None:
        """A step attempt raised: record it and schedule another attempt if the step's retry
        policy asks for one (``None``), else the commit that ends the step: ``StepFailed``, routed
        to the workflow's error handler if it has one."""
        st = run.state
        delay = failed.next_delay(spec, st, seq, attempt)
        if delay is not None:
            retrying = failed.retrying(spec.name, seq, attempt, delay, self.worker_id)
            base = {H_RUN: run_id, H_STEP: spec.name, H_TRIGGER: str(seq)}
            key = attempt_key(run_id, seq, spec.name, attempt, st.epoch)
            await self.log.append([self._sys(run_id, "StepRetrying", retrying, base)], idempotency_key=key)
            await self._schedule_retry(run_id, retrying, st.epoch)
            self.runs.forget(run_id)
            self.stats.retries += 1
            return None
        handler = self._catch_step(spec)
        record = self._failure(spec, run_id, seq, attempt, failed.error, failed.t0)
        if handler is None:
            return [record]
        return failed.routed(self, spec.name, run_id, seq, attempt, event, record, handler, st.epoch)

    def _catch_step(self, spec: StepSpec) -> str | None:
        if spec.catch_error:
            return None  # a failing error handler fails the run
        for s in type(self.workflow).steps.values():
            if s.catch_error:
                return s.name
        return None

    async def _schedule_retry(self, run_id: str, retrying: StepRetrying, epoch: int) -> None:
        nxt = retrying.attempt + 1
        resume = Resume(step=retrying.step, trigger=retrying.trigger, reason="retry", attempt=nxt)
        key = attempt_key(run_id, retrying.trigger, retrying.step, retrying.attempt, epoch)
        await self.log.schedule(
            resume_message(self.log.prefix, self.name, run_id, resume),
            at_ns=retrying.retry_at_ns,
            name=f"{retrying.trigger}-{retrying.step}-a{nxt}",
            idempotency_key=f"{key}:retry",
        )

    def _settled(self, task: asyncio.Task[None]) -> None:
        entry = self._inflight.pop(task, None)
        if entry is not None and task.cancelled() and entry[0] in self._cancelled:
            # Cancelled before its first step (its handler never ran, so nothing settled the
            # trigger): the run has ended, so settle it here rather than leave it to ack_wait.
            self.stats.cancelled += 1
            ack = asyncio.ensure_future(entry[1].ack())
            self._settling.add(ack)
            ack.add_done_callback(self._settling.discard)

    def cancel_run(self, run_id: str, seq: int = 0) -> int:
        """Stop this process's in-flight steps of an ended run (they see
        ``asyncio.CancelledError``) and commit nothing of the run from now on. Returns how many
        step executions were cancelled. Called when a ``sys.RunCancelled`` or ``sys.RunFailed`` (a
        run timeout among them) is stored (``_watch_ends``); ``seq``: that record's sequence (a
        rollback to before it lets the run's steps run again)."""
        self._cancelled[run_id] = seq
        while len(self._cancelled) > MAX_CANCELLED:
            del self._cancelled[next(iter(self._cancelled))]
        self.runs.forget(run_id)
        # (a scan of this process's in-flight steps, at most num_workers per step: cheaper than
        # an index by run kept up to date for every trigger)
        tasks = [t for t, (rid, _) in self._inflight.items() if rid == run_id and not t.done()]
        for t in tasks:
            t.cancel()
        return len(tasks)

    async def _watch_ends(self) -> None:
        """Follow the terminal records that come from outside the steps (``RunCancelled``,
        ``RunFailed``: a cancel, a run timeout the server's message schedule stores, a dead
        letter) of every run of the workflow, and stop the run's steps in flight here."""

        def ended(raw: RawRecord) -> None:
            rid = run_of(raw.subject)
            if rid is not None and self.cancel_run(rid, raw.seq):
                logger.info("run %s ended (%s): stopped its in-flight steps here", rid, raw.subject.rsplit(".", 1)[-1])

        unfollow: list[Callable[[], None]] = []
        try:
            while True:
                try:
                    for type_name in _ENDS_FROM_OUTSIDE:
                        unfollow.append(await self.log.follow_type(self.name, "sys", type_name, ended))
                    await asyncio.Event().wait()  # (until the executor stops)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("following run ends failed; again in 1s")
                    for stop in unfollow:
                        stop()
                    unfollow.clear()
                    await asyncio.sleep(1.0)
        finally:
            for stop in unfollow:
                stop()

    def _sys(self, run_id: str, name: str, body: msgspec.Struct, base: dict[str, str]) -> OutMessage:
        try:
            data = encode(body)
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(f"{name} record does not encode: {exc}") from exc
        return OutMessage(run_subject(self.log.prefix, self.name, run_id, "sys", name), data, {**base, H_TYPE: name})

