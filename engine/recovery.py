"""Commands from outside the workers about how a run fails: its durable timeout, and retrying a
failed run from the step that failed.

- **Run timeout.** ``schedule_run_timeout`` schedules ``sys.RunFailed`` (error type
  ``WorkflowTimeoutError``) on the run's subject at start + timeout, as a JetStream
  message schedule (``EventLog.schedule``): no process keeps a timer, and the timeout survives
  restarts of every process and of the server. The fold keeps the first terminal record, so the
  timeout changes nothing for a run that ended before it fires (the record stays as history).
- **Retry from failure.** ``retry_run`` appends one ``cmd.<step>`` record,
  ``Resume(reason="manual", attempt=n + 1)``, for the step whose ``StepFailed`` ended the run. The
  fold treats it as reopening the run (status back to ``running``, the failed step's trigger no
  longer handled), and the step's consumer delivers it to a worker that runs the step again: with
  the code that worker has now (e.g. after a fix and a restart). It is one record, so there is no
  state in which the run is reopened and nothing would run the step.
"""

from __future__ import annotations

import time

from .codec import decode_record, encode
from .errors import WorkflowRuntimeError, WorkflowTimeoutError
from .fold import FAILED, RunState
from .log.base import AppendResult, EventLog
from .records import H_RUN, H_TYPE, OutMessage, Resume, RunFailed, StepFailed, run_subject
from .waits import resume_message

__all__ = ["RunNotRetryableError", "retry_run", "schedule_run_timeout", "timeout_key"]


class RunNotRetryableError(WorkflowRuntimeError):
    """The run cannot be retried from a failure: it is not failed, or it failed for a reason
    other than a step's exception (a run timeout). ``status`` is the run's status."""

    def __init__(self, message: str, *, run_id: str, status: str) -> None:
        super().__init__(message, run_id=run_id)
        self.status = status


def timeout_key(run_id: str) -> str:
    """The idempotency key of a run's timeout (shared with the in-process handler's timeout)."""
    return f"{run_id}:timeout"


async def schedule_run_timeout(
    log: EventLog, workflow: str, run_id: str, seconds: float, *, now_ns: int | None = None
) -> int:
    """Schedule the run's failure with ``WorkflowTimeoutError`` ``seconds`` after ``now_ns``
    (default: now). Idempotent per run. Returns when it fires, ns since the epoch.

    Raises:
        ValueError: ``seconds`` <= 0.
        AppendError: the log rejected the schedule.
    """
    if seconds <= 0:
        raise ValueError(f"a run timeout must be > 0 seconds, got {seconds}")
    at_ns = (now_ns if now_ns is not None else time.time_ns()) + int(seconds * 1e9)
    body = RunFailed(
        error_type=WorkflowTimeoutError.__name__,  # as the in-process handler's timeout records it
        message=f"run {run_id} did not complete within {seconds}s",
    )
    msg = OutMessage(
        run_subject(log.prefix, workflow, run_id, "sys", "RunFailed"),
        encode(body),
        {H_RUN: run_id, H_TYPE: "RunFailed"},
    )
    await log.schedule(msg, at_ns=at_ns, name="timeout", idempotency_key=timeout_key(run_id))
    return at_ns


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
