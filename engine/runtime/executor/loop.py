"""``Executor``: runs a workflow's steps as consumers of the log (its loop: consume, dispatch,
admit; ``engine.runtime.executor.step`` runs a step, ``engine.runtime.executor.outcome``
commits what it did).

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
from collections.abc import Callable, Iterable
from datetime import timedelta

from engine.model.errors import (
    CommitTooLargeError,
    LastSeqMismatchError,
    LogError,
    WorkflowVersionError,
)
from engine.model.events import Event
from engine.model.records import DeadLetterRef, OutMessage, RawRecord, Record, Resume, RunFailed
from engine.ports.log import Delivery, EventLog, event_consumers
from engine.ports.snapshots import SnapshotStore
from engine.runtime import children, endings, tracing
from engine.runtime.affinity import RunAffinity
from engine.runtime.executor.outcome import Outcomes
from engine.runtime.executor.stats import ExecutorStats
from engine.runtime.executor.step import StepRunner
from engine.runtime.failures import Failed, attempt_key, run_of
from engine.runtime.recovery import end_run_timeout
from engine.runtime.replay import check as check_version
from engine.runtime.runs import CachedRun, RunCache
from engine.runtime.spec import StepSpec, WorkflowDefinition
from engine.runtime.telemetry import (
    CANCELLED,
    COMPLETED,
    FAILED,
    SUSPENDED,
    ExecutorObserver,
    commit_ends_run,
)
from engine.runtime.waits import Suspend
from engine.state.ending import ENDING_TYPES
from engine.state.fold import HistoryNeeded
from engine.state.snapshots import DEFAULT_SNAPSHOT_EVERY
from engine.wire.codec import decode_record, sys_message
from engine.wire.headers import H_LENGTH, H_RUN, H_STEP, H_TRIGGER, H_TYPE

__all__ = ["Executor"]

logger = logging.getLogger("jetloom.executor")

RETRY_DELAY = timedelta(seconds=1)  # nak delay after an infrastructure error (log unreachable)
FORK_DELAY = timedelta(milliseconds=100)  # nak delay while a fork's prefix is still being copied
MAX_CANCELLED = 4096  # ended run ids remembered per executor (older ones: the fold decides)
# The terminal records that come from outside this process's steps (a cancel, a run timeout, a
# dead letter, a version mismatch): seeing one stops the run's steps in flight here.
_ENDS_FROM_OUTSIDE = ("RunCancelled", "RunFailed")


def _length(headers: dict[str, str]) -> int | None:
    """The run's log length an event's ``Jl-Length`` header gives, if it has a valid one."""
    value = headers.get(H_LENGTH)
    return int(value) if value is not None and value.isdigit() else None


DEAD_LETTER_ATTEMPTS = 5  # checked appends of a dead letter's RunFailed before an unchecked one


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
        observer: told of step executions, commits and run ends (``engine.runtime.telemetry``;
            default: none, and no calls are made).
        affinity: run affinity (``engine.runtime.affinity``): each step's consumers get its
            router, so the first delivery of a run another process owns is handed over to it
            (default: none, every delivery is handled where it lands).
    """

    def __init__(
        self,
        workflow: WorkflowDefinition,
        log: EventLog,
        *,
        steps: Iterable[str] | None = None,
        max_cached_runs: int = 1024,
        worker_id: str | None = None,
        num_workers: int | None = None,
        snapshots: SnapshotStore | None = None,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        observer: ExecutorObserver | None = None,
        affinity: RunAffinity | None = None,
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
        self.observer = observer
        self.affinity = affinity
        self._loops: list[asyncio.Task[None]] = []
        # task -> (its run id, its delivery)
        self._inflight: dict[asyncio.Task[None], tuple[str | None, Delivery]] = {}
        self._settling: set[asyncio.Task[None]] = set()  # acks of tasks cancelled before they ran
        self._hosted: dict[str, Executor] = {}  # child workflows run in this process
        # runs known ended from outside -> the sequence of the record that ended it (oldest first, bounded)
        self._cancelled: dict[str, int] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}  # per step: executions at once here
        # (decided once: with no tracer provider, the steps run with no span and no trace headers)
        self.tracer = tracing.tracer()
        self.runner = StepRunner(
            workflow, log, worker_id=self.worker_id, stats=self.stats, traced=self.tracer is not None
        )
        self.outcomes = Outcomes(
            workflow,
            log,
            self.runs,
            worker_id=self.worker_id,
            stats=self.stats,
            ended=self._cancelled,
            host=self._host,
        )

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
                    router=self.affinity.router(spec.name) if self.affinity is not None else None,
                )
                async with contextlib.aclosing(deliveries):  # type: ignore[type-var]  # the log's consume iterator has aclose, not declared by the port
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
            asyncio.current_task().uncancel()  # type: ignore[union-attr]  # always inside a task here
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
        msg = sys_message(self.log.prefix, self.name, run_id, "RunFailed", failed, {H_RUN: run_id, H_STEP: spec.name, H_TRIGGER: str(raw.seq)})
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
        await self.outcomes.report_end(run_id)

    async def _process(self, spec: StepSpec, delivery: Delivery) -> None:
        raw = delivery.record
        if delivery.attempt > 1:
            self.stats.redelivered += 1
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
                await self.outcomes.complete(rec.run_id, key)
            # a crash may have come between a child's end and its report, or its timeout's removal
            await endings.notify_parent(self.log, st)
            if st.terminal:
                await end_run_timeout(self.log, st)
            self.stats.skipped += 1
            await delivery.ack()
            return
        pending = st.retrying.get((raw.seq, spec.name))
        if pending is not None:  # redelivered while the next attempt waits: make sure it is set
            await self.outcomes.schedule_retry(rec.run_id, pending, st.epoch)
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
                    msg = sys_message(self.log.prefix, self.name, rec.run_id, "RunFailed", failed, {H_RUN: rec.run_id})
                    await self.log.append([msg], idempotency_key=f"{rec.run_id}:version")
                    self.runs.forget(rec.run_id)
                    await self.outcomes.report_end(rec.run_id)
                self.stats.skipped += 1
                await delivery.ack()
                return False
        return True

    async def _execute(
        self, spec: StepSpec, delivery: Delivery, run: CachedRun, run_id: str, seq: int, event: Event
    ) -> None:
        """Run the step on trigger ``seq`` and commit what it did (or record that it waits, or
        that it fails and will be tried again), in its span when tracing is on
        (``engine.runtime.tracing``; and the run's span when its commit ends the run)."""
        if self.tracer is None:
            await self._step(spec, delivery, run, run_id, seq, event)
            return
        attempt = run.state.attempt_of(seq, spec.name)
        headers = delivery.record.headers
        with tracing.step_span(self.tracer, self.name, spec.name, run_id, seq, attempt, self.worker_id, headers):
            started_ns = run.state.started_ns
            messages = await self._step(spec, delivery, run, run_id, seq, event)
            ended = commit_ends_run(messages or ())
            if ended is not None:
                failed = ended != COMPLETED
                tracing.record_run(
                    self.tracer, self.name, run_id, started_ns=started_ns, failed=failed, worker=self.worker_id
                )

    async def _step(
        self, spec: StepSpec, delivery: Delivery, run: CachedRun, run_id: str, seq: int, event: Event
    ) -> list[OutMessage] | None:
        """``_execute``; returns the messages committed (``None`` when none were)."""
        epoch = run.state.epoch
        attempt = run.state.attempt_of(seq, spec.name)
        key = attempt_key(run_id, seq, spec.name, attempt, epoch)
        outcome: list[OutMessage] | Suspend | Failed | None = None
        ended_at = self._cancelled.get(run_id)
        if ended_at is not None and not run.state.terminal and run.state.rollbacks and run.state.rollbacks[-1][1] > ended_at:
            del self._cancelled[run_id]  # rolled back to before its end since: it runs again
        obs = self.observer
        if run_id not in self._cancelled:
            if obs is None:
                outcome = await self.runner.run(spec, run, run_id, seq, event, attempt, epoch)
            else:
                outcome = await self._observed_run(obs, spec, run, run_id, seq, event, attempt, epoch)
        if run_id in self._cancelled:  # cancelled meanwhile: nothing of the run commits
            self.stats.cancelled += 1
            await delivery.ack()
            return None
        if isinstance(outcome, Suspend):
            await self.outcomes.suspend(spec, run_id, seq, outcome, epoch)
            await delivery.ack()
            return None
        if isinstance(outcome, Failed):
            outcome = await self.outcomes.failed(spec, run, run_id, seq, event, attempt, outcome)
            if outcome is None:  # another attempt is scheduled
                if obs is not None:
                    obs.step_retrying(self.name, spec.name)
                await delivery.ack()
                return None
        assert outcome is not None
        messages = outcome
        done = time.perf_counter()
        try:
            result = await self.outcomes.commit(run, messages, key)
        except CommitTooLargeError as exc:
            self.stats.failed += 1
            failed = self.outcomes.failure(spec, run_id, seq, attempt, exc, time.perf_counter())
            messages = [failed]
            result = await self.log.append(messages, idempotency_key=key)
        if result is None:  # the run ended while the step ran: nothing of it commits
            self.stats.cancelled += 1
            await delivery.ack()
            return None
        if obs is not None:
            self._observe_commit(obs, spec, run, messages, done, result.duplicate)
        if result.duplicate:
            # Another execution's completion stands; make sure its commit is whole.
            self.stats.duplicates += 1
            await self.outcomes.complete(run_id, key)
        elif messages and run.state.waits:
            await self.outcomes.resolve_if_awaited(run, run_id, messages)
        st = run.state
        if (st.parent is not None or st.timeout_at_ns or endings.awaited_children(st)) and any(
            m.headers.get(H_TYPE) in ENDING_TYPES for m in messages  # (may end it: report_end looks)
        ):
            await self.outcomes.report_end(run_id)
        await delivery.ack()
        return None if result.duplicate else messages

    async def _observed_run(
        self,
        obs: ExecutorObserver,
        spec: StepSpec,
        run: CachedRun,
        run_id: str,
        seq: int,
        event: Event,
        attempt: int,
        epoch: int,
    ) -> list[OutMessage] | Suspend | Failed:
        """``runner.run``, reported to the observer (start, then end with its outcome and time)."""
        obs.step_started(self.name, spec.name)
        t0 = time.perf_counter()
        outcome = CANCELLED
        try:
            result = await self.runner.run(spec, run, run_id, seq, event, attempt, epoch)
            outcome = SUSPENDED if isinstance(result, Suspend) else FAILED if isinstance(result, Failed) else COMPLETED
            return result
        finally:
            obs.step_ended(self.name, spec.name, outcome, time.perf_counter() - t0)

    def _observe_commit(
        self, obs: ExecutorObserver, spec: StepSpec, run: CachedRun, messages: list[OutMessage], done: float, duplicate: bool
    ) -> None:
        """Report a commit's latency (``done``: when the step returned) and, unless another
        execution's commit stood instead, the end of the run it made."""
        obs.committed(self.name, spec.name, time.perf_counter() - done)
        status = None if duplicate else commit_ends_run(messages)
        if status is not None:
            started = run.state.started_ns
            obs.run_ended(self.name, status, (time.time_ns() - started) / 1e9 if started else None)

    async def _host(self, cls: type[WorkflowDefinition]) -> None:
        """Serve the child workflow ``cls`` in this process too (once), on the same log."""
        name = cls.workflow_name
        if name == self.name or name in self._hosted:
            return
        hosted = self._hosted[name] = Executor(cls(), self.log, worker_id=self.worker_id, observer=self.observer)
        await hosted.start()

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
