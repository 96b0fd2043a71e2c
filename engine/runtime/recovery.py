"""Commands from outside the workers about how a run fails: its durable timeout, and retrying a
failed run from the step that failed.

- **Run timeout.** ``schedule_run_timeout`` schedules ``sys.RunFailed`` (error type
  ``WorkflowTimeoutError``) on the run's subject at start + timeout, as a JetStream
  message schedule (``EventLog.schedule``): no process keeps a timer, and the timeout survives
  restarts of every process and of the server. Its deadline is in the run's ``RunStarted``
  (``timeout_at_ns``), so whoever appends the run's terminal record (the worker's final commit, a
  step failure that fails the run, a dead-lettered trigger, a cancel) knows there is a schedule
  and removes it (``end_run_timeout``: one purge, only for runs that have a timeout): nothing of
  the run is appended after its end. The start is appended before the schedule, so a run may end
  before its schedule is stored; ``schedule_run_timeout`` reads the run after scheduling and
  removes the schedule itself then. A worker that crashes between its final commit and the purge
  has not acked the trigger: the redelivery finds the run ended and purges. Where the removal
  cannot happen (a crash of a control plane or client between a cancel and the purge, a stream
  with ``deny_purge``), the fired ``RunFailed`` lands after the end; the fold keeps the first
  terminal record, so it changes nothing but the log's history.
- **Retry from failure.** ``retry_run`` appends one ``cmd.<step>`` record,
  ``Resume(reason="manual", attempt=n + 1)``, for the step whose ``StepFailed`` ended the run. The
  fold treats it as reopening the run (status back to ``running``, the failed step's trigger no
  longer handled), and the step's consumer delivers it to a worker that runs the step again: with
  the code that worker has now (e.g. after a fix and a restart). It is one record, so there is no
  state in which the run is reopened and nothing would run the step.
"""

from __future__ import annotations

import logging
import time

from engine.model.errors import LogError, WorkflowRuntimeError, WorkflowTimeoutError
from engine.model.records import OutMessage, Resume, RunFailed, StepFailed
from engine.ports.log import AppendResult, EventLog
from engine.runtime.waits import resume_message
from engine.state.ending import FAILED
from engine.state.fold import RunState, fold
from engine.wire.codec import decode_record, encode
from engine.wire.headers import H_RUN, H_TYPE
from engine.wire.subjects import run_subject

__all__ = [
    "TIMEOUT_SCHEDULE",
    "RunNotRetryableError",
    "end_run_timeout",
    "retry_resume",
    "retry_run",
    "run_timeout_at",
    "schedule_run_timeout",
    "timeout_key",
]

logger = logging.getLogger("jetloom.recovery")

TIMEOUT_SCHEDULE = "timeout"  # the name of a run timeout's schedule: ``<run>.sch.timeout``


class RunNotRetryableError(WorkflowRuntimeError):
    """The run cannot be retried from a failure: it is not failed, or it failed for a reason
    other than a step's exception (a run timeout). ``status`` is the run's status."""

    def __init__(self, message: str, *, run_id: str, status: str) -> None:
        super().__init__(message, run_id=run_id)
        self.status = status


def timeout_key(run_id: str) -> str:
    """The idempotency key of a run's timeout (shared with the in-process handler's timeout)."""
    return f"{run_id}:timeout"


def run_timeout_at(seconds: float, *, now_ns: int | None = None) -> int:
    """When a run timeout of ``seconds`` started at ``now_ns`` (default: now) fires, ns since the
    epoch: the ``timeout_at_ns`` of the run's ``RunStarted``.

    Raises:
        ValueError: ``seconds`` <= 0.
    """
    if seconds <= 0:
        raise ValueError(f"a run timeout must be > 0 seconds, got {seconds}")
    return (now_ns if now_ns is not None else time.time_ns()) + int(seconds * 1e9)


async def schedule_run_timeout(
    log: EventLog,
    workflow: str,
    run_id: str,
    seconds: float,
    *,
    now_ns: int | None = None,
    at_ns: int | None = None,
) -> int:
    """Schedule the run's failure with ``WorkflowTimeoutError`` ``seconds`` after ``now_ns``
    (default: now), or at ``at_ns`` (the ``timeout_at_ns`` its start was appended with). Call it
    after the run's start. Idempotent per run. If the run has ended by the time the schedule is
    stored, the schedule is removed again. Returns when it fires, ns since the epoch.

    Raises:
        ValueError: ``seconds`` <= 0.
        AppendError: the log rejected the schedule.
    """
    at = at_ns if at_ns is not None else run_timeout_at(seconds, now_ns=now_ns)
    body = RunFailed(
        error_type=WorkflowTimeoutError.__name__,  # as the in-process handler's timeout records it
        message=f"run {run_id} did not complete within {seconds}s",
    )
    msg = OutMessage(
        run_subject(log.prefix, workflow, run_id, "sys", "RunFailed"),
        encode(body),
        {H_RUN: run_id, H_TYPE: "RunFailed"},
    )
    await log.schedule(msg, at_ns=at, name=TIMEOUT_SCHEDULE, idempotency_key=timeout_key(run_id))
    # A writer that ended the run before the schedule was stored found nothing to remove; its
    # terminal record came before its removal, which came before the schedule: this read sees it.
    state = fold(decode_record(raw) for raw in await log.read(workflow, run_id))
    if state.terminal and state.timeout_at_ns:
        await end_run_timeout(log, state)
    return at


async def end_run_timeout(log: EventLog, state: RunState) -> bool:
    """Remove the pending timeout schedule of a run that has ended (``state``, folded up to its
    terminal record or later), so that its ``RunFailed`` is never appended after the end. Called
    by whoever appends a terminal record. Cheap: nothing for a run started without a timeout (no
    ``timeout_at_ns``); one purge otherwise. Idempotent. A refusal of the log is logged in one
    line and not raised: the fired record would change nothing (the fold keeps the first end).

    Returns:
        whether a removal was asked of the log.
    """
    if not state.timeout_at_ns:
        return False
    try:
        await log.unschedule(state.workflow, state.run_id, TIMEOUT_SCHEDULE)
    except LogError as exc:
        logger.warning("run %s: its timeout schedule stays (%s); the fold ignores it when it fires", state.run_id, exc)
        return False
    return True


def retry_resume(state: RunState) -> Resume:
    """The ``Resume(reason="manual")`` that retries ``state``'s failed step (pure).

    Raises:
        RunNotRetryableError: the run is not failed, or did not fail in a step.
    """
    rid = state.run_id
    if state.status != FAILED:
        raise RunNotRetryableError(
            f"run {rid} is {state.status}, not failed; only a failed run can be retried",
            run_id=rid,
            status=state.status,
        )
    err = state.error
    if not isinstance(err, StepFailed):
        reason = err.error_type if err is not None else "unknown"
        raise RunNotRetryableError(
            f"run {rid} failed with {reason}, not in a step; there is no step to retry",
            run_id=rid,
            status=state.status,
        )
    attempt = state.attempt_of(err.trigger, err.step)
    return Resume(step=err.step, trigger=err.trigger, reason="manual", attempt=attempt)


async def retry_run(log: EventLog, workflow: str, run_id: str) -> tuple[Resume, AppendResult]:
    """Retry a failed run from its failed step (see the module docstring). Idempotent per
    failure: a repeat for the same failed attempt appends nothing new (``duplicate``).

    Raises:
        RunNotRetryableError: the run is not failed, or did not fail in a step.
    """
    state = RunState(workflow, run_id)
    for raw in await log.read(workflow, run_id):
        state.apply(decode_record(raw))
    resume = retry_resume(state)
    key = f"{run_id}:retry:{resume.trigger}:{resume.step}:{resume.attempt}"
    result = await log.append(
        [resume_message(log.prefix, workflow, run_id, resume)], idempotency_key=key
    )
    return resume, result
