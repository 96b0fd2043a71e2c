"""The outcome of a step execution: its commit (checked against the run's end), the completion of
an interrupted commit, a failure (retried later, routed to the error handler, or failing the run;
``engine.runtime.failures``), a suspension (``engine.runtime.waits``, ``engine.runtime.children``),
and what follows a run's end."""

from __future__ import annotations

import logging
import time
import traceback as tb
from collections.abc import Awaitable, Callable

from engine.model.errors import LastSeqMismatchError
from engine.model.events import Event, class_path, encode_event, event_name
from engine.model.records import OutMessage, Resume, StepFailed, StepRetrying
from engine.ports.log import AppendResult, EventLog
from engine.runtime import children, endings
from engine.runtime.executor.stats import ExecutorStats
from engine.runtime.failures import Failed, attempt_key
from engine.runtime.recovery import end_run_timeout
from engine.runtime.repair import complete_commit
from engine.runtime.runs import CachedRun, RunCache
from engine.runtime.spec import StepSpec, WorkflowDefinition
from engine.runtime.waits import Suspend, resolve_waits, resume_message
from engine.wire.codec import sys_message
from engine.wire.commit import tag_commit
from engine.wire.headers import H_CLASS, H_RUN, H_STEP, H_TRIGGER, H_TYPE, commit_key
from engine.wire.subjects import run_subject

__all__ = ["Outcomes", "commit_id"]

logger = logging.getLogger("jetloom.executor")

commit_id = commit_key  # the idempotency key of a step's commit for one trigger


class Outcomes:
    """Commits and records what the step executions of one workflow instance came to.

    Args:
        workflow: the workflow instance (its steps: which one is the error handler).
        log: the event log.
        runs: the executor's run cache (commits advance it; suspensions and retries drop a run).
        worker_id: recorded on failures and retries.
        stats: the executor's counters.
        ended: ``{run id: sequence of the record that ended it}`` of runs known ended from
            outside, shared with the executor: nothing of such a run commits.
        host: serves a child workflow class in this process (the executor's ``host``).
    """

    def __init__(
        self,
        workflow: WorkflowDefinition,
        log: EventLog,
        runs: RunCache,
        *,
        worker_id: str,
        stats: ExecutorStats,
        ended: dict[str, int],
        host: Callable[[type[WorkflowDefinition]], Awaitable[None]],
    ) -> None:
        self.workflow = workflow
        self.log = log
        self.name = type(workflow).workflow_name
        self.events = type(workflow).events
        self.runs = runs
        self.worker_id = worker_id
        self.stats = stats
        self.ended = ended
        self.host = host
    async def commit(self, run: CachedRun, messages: list[OutMessage], key: str) -> AppendResult | None:
        """Append a commit; ``None`` when it was not made because the run has ended.

        While this process is the run's only writer, the commit is made with the check that the
        run ends where the cache does, and the cache then takes the commit from the acks: the next
        step of the run here needs no read. The check is also what keeps a commit from landing
        after the run's terminal record (a run timeout the server fired, a cancel, a parallel
        step's end): refused, the commit reads the run, and stops there if it has ended."""
        run_id = run.state.run_id
        if run_id in self.ended:
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
            if fresh.state.terminal or run_id in self.ended:
                return None
            run.contended = fresh.contended = True
            return await self.log.append(tag_commit(messages, key), idempotency_key=key)
        if not result.duplicate:
            run.advance_own(expected, result.seqs, messages, self.events)
            if run.state.terminal:
                self.runs.ended(run.state.run_id)
        return result

    async def complete(self, run_id: str, key: str) -> None:
        """Complete commit ``key`` from the copy in its first record, reading the run's log to
        the end first so that only messages still missing are appended."""
        run = await self.runs.get(run_id, min_seq=0, refresh=True)
        repaired = await complete_commit(self.log, run.state, key)
        if repaired:
            self.stats.repaired += repaired
            logger.warning("completed interrupted commit %s: %d message(s) appended", key, repaired)

    def failure(
        self, spec: StepSpec, run_id: str, seq: int, attempt: int, exc: BaseException, t0: float
    ) -> OutMessage:
        """The ``StepFailed`` record of attempt ``attempt`` of ``spec`` on trigger ``seq``, which
        raised ``exc`` (``t0``: its ``time.perf_counter()`` start)."""
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
        return sys_message(self.log.prefix, self.name, run_id, "StepFailed", failed, base)

    async def failed(
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
            await self.log.append([sys_message(self.log.prefix, self.name, run_id, "StepRetrying", retrying, base)], idempotency_key=key)
            await self.schedule_retry(run_id, retrying, st.epoch)
            self.runs.forget(run_id)
            self.stats.retries += 1
            return None
        handler = self.catch_step(spec)
        record = self.failure(spec, run_id, seq, attempt, failed.error, failed.t0)
        if handler is None:
            return [record]
        return failed.routed(self.log, self.name, spec.name, run_id, seq, attempt, event, record, handler, st.epoch)

    def catch_step(self, spec: StepSpec) -> str | None:
        """The workflow's ``@catch_error`` step that takes ``spec``'s failures (``None``: none, or
        ``spec`` is that step)."""
        if spec.catch_error:
            return None  # a failing error handler fails the run
        for s in type(self.workflow).steps.values():
            if s.catch_error:
                return s.name
        return None

    async def schedule_retry(self, run_id: str, retrying: StepRetrying, epoch: int) -> None:
        """Schedule the ``Resume`` of the next attempt ``retrying`` announces (idempotent)."""
        nxt = retrying.attempt + 1
        resume = Resume(step=retrying.step, trigger=retrying.trigger, reason="retry", attempt=nxt)
        key = attempt_key(run_id, retrying.trigger, retrying.step, retrying.attempt, epoch)
        await self.log.schedule(
            resume_message(self.log.prefix, self.name, run_id, resume),
            at_ns=retrying.retry_at_ns,
            name=f"{retrying.trigger}-{retrying.step}-a{nxt}",
            idempotency_key=f"{key}:retry",
        )

    async def suspend(self, spec: StepSpec, run_id: str, seq: int, susp: Suspend, epoch: int = 0) -> None:
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
        await self.log.append([sys_message(self.log.prefix, self.name, run_id, "StepSuspended", rec, base)], idempotency_key=key)
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
                await self.host(susp.host)
            await children.start_child(self.log, self.name, run_id, susp)
        self.runs.forget(run_id)  # appended without the cache: read the run afresh next time
        self.stats.suspended += 1
        if rec.kind == "event":
            await resolve_waits(self.log, self.name, run_id)

    async def report_end(self, run_id: str) -> None:
        """A commit ending a child run, a run with children or a run with a timeout was made (or
        a ``RunFailed`` appended here): resume the parent's waiting step; cancel the children
        still awaited; remove the pending timeout schedule, so it appends nothing after the end."""
        run = await self.runs.get(run_id, min_seq=0, refresh=True)
        await endings.notify_parent(self.log, run.state)
        if run.state.terminal:
            await endings.cancel_children(self.log, run.state, f"parent run {run_id} {run.state.status}")
            await end_run_timeout(self.log, run.state)

    async def resolve_if_awaited(self, run: CachedRun, run_id: str, messages: list[OutMessage]) -> None:
        """Resolve the run's event waits if the commit ``messages`` emitted an awaited type."""
        awaited = {w.event_type for _, w in run.state.open_event_waits()}
        emitted = {m.headers.get(H_TYPE) for m in messages if ".evt." in m.subject}
        if awaited & emitted:
            await resolve_waits(self.log, self.name, run_id)
